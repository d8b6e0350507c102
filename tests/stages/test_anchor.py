"""The SFT anchor of the RL stages (stages/anchor.py): which tokens it trains, the batches it takes, the loss it
adds to the RL loss, and a tiny stage 4 that trains with it.
Run: pytest tests/stages/test_anchor.py"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stages import general_rl
from stages.anchor import AnchorBatches, AnchorSettings, anchored_trainer, collate, reply_loss, tokenize_replies
from stages.common import STAGE_FILE, load_tokenizer, write_json_atomic
from stages.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
DIALOG = [{"role": "user", "content": "first question"},
          {"role": "assistant", "content": "an earlier reply"},
          {"role": "user", "content": "2 + 3?"},
          {"role": "assistant", "content": "<think>\n2 + 3 = 5\n</think>\n\nThe answer is 5."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_dense_dir):
    return load_tokenizer(str(tiny_dense_dir))


@pytest.fixture(scope="module")
def model(tiny_dense_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(tiny_dense_dir), dtype=torch.float32)


def test_the_anchor_trains_only_the_last_reply_and_its_end_of_turn(tokenizer):
    [row] = tokenize_replies(tokenizer, [DIALOG], max_length=1024)
    trained = tokenizer.decode([t for t in row["labels"] if t != -100])
    assert "The answer is 5." in trained and "2 + 3 = 5" in trained  # the reply, its thinking included
    assert trained.rstrip().endswith("<|im_end|>")  # so the model keeps learning where the reply stops
    assert "question" not in trained and "earlier reply" not in trained and "2 + 3?" not in trained
    assert len(row["input_ids"]) == len(row["labels"])


def test_a_row_that_does_not_end_with_a_reply_is_refused_by_its_number(tokenizer):
    with pytest.raises(ConfigError, match=r"anchor.data: row 1 does not end with an assistant reply"):
        tokenize_replies(tokenizer, [DIALOG, DIALOG[:3]], max_length=1024)


def test_a_reply_cut_off_entirely_by_max_length_is_refused(tokenizer):
    with pytest.raises(ConfigError, match=r"row 0: the chat template marks no reply tokens"):
        tokenize_replies(tokenizer, [DIALOG], max_length=8)


def test_anchor_settings_refuse_a_weight_without_data_and_bad_sizes():
    with pytest.raises(ValueError, match="anchor.coef > 0 needs anchor.data"):
        AnchorSettings(coef=1.0)
    with pytest.raises(ValueError, match="anchor.batch_size must be >= 1"):
        AnchorSettings(batch_size=0)
    with pytest.raises(ValueError, match="anchor.coef must be >= 0"):
        AnchorSettings(coef=-0.1)
    assert not AnchorSettings().enabled


def test_anchor_batches_cover_every_row_per_pass_and_repeat_for_the_same_step():
    examples = [{"input_ids": [i, i + 1], "labels": [-100, i + 1]} for i in range(10)]
    batches = AnchorBatches(examples, batch_size=4, pad_token_id=0, seed=3)
    first_pass = torch.cat([batches(k)["input_ids"][:, 0] for k in range(3)])[:10]
    assert sorted(first_pass.tolist()) == list(range(10))
    assert torch.equal(batches(7)["input_ids"], batches(7)["input_ids"])  # a resumed run gets the same batch
    assert not torch.equal(AnchorBatches(examples, 4, 0, seed=4)(0)["input_ids"], batches(0)["input_ids"])


def test_collate_pads_right_and_never_trains_padding():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_reply_loss_is_the_models_own_language_model_loss_on_the_reply(tokenizer, model):
    rows = tokenize_replies(tokenizer, [DIALOG, DIALOG[2:]], max_length=1024)
    batch = collate(rows, tokenizer.pad_token_id)
    expected = model(**batch).loss  # a dense model: no router loss in it
    assert torch.allclose(reply_loss(model, batch), expected, atol=1e-5)


class FakeRL:
    """Stands in for GRPOTrainer: a fixed RL loss, TRL's metric store, 2 accumulation steps, at step 3."""

    current_gradient_accumulation_steps = 2

    def __init__(self):
        self.state = SimpleNamespace(global_step=3)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return torch.tensor(1.5)


def test_the_anchored_trainer_adds_coef_times_the_reply_loss_scaled_for_accumulation(tokenizer, model):
    rows = tokenize_replies(tokenizer, [DIALOG, DIALOG[2:], DIALOG[:2]], max_length=1024)
    batches = AnchorBatches(rows, batch_size=2, pad_token_id=tokenizer.pad_token_id, seed=0, coef=0.5)
    trainer = anchored_trainer(FakeRL, batches)()
    model.train()
    losses = [trainer.compute_loss(model, {}) for _ in range(2)]
    with torch.no_grad():  # at global step 3 with 2 micro-batches per step, the run is at micro-batch 6
        expected = [1.5 + 0.25 * reply_loss(model, batches(k)) for k in (6, 7)]
    assert torch.allclose(torch.stack(losses), torch.stack(expected), atol=1e-5)
    assert losses[0].requires_grad  # the anchor's gradient reaches the weights
    assert trainer._metrics["train"]["anchor/loss"] == pytest.approx([float((e - 1.5) / 0.25) for e in expected],
                                                                      abs=1e-4)
    model.eval()
    assert float(trainer.compute_loss(model, {})) == 1.5  # evaluation: the RL loss alone


def test_stage4_with_an_anchor_trains_and_logs_the_anchor_loss(tmp_path, tiny_moe_dir):
    src = tmp_path / "stage3"
    shutil.copytree(tiny_moe_dir, src)
    write_json_atomic(src / STAGE_FILE, {"stage": "thinking_fusion"})
    tasks = ["sort_numbers", "count_words"]
    cfg = load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={src}", "threads=1", "eval_before=false",
        f"data=[{{name: instructions, kwargs: {{n: 8, seed: 0, tasks: {tasks}}}}}]",
        f"task_eval.data=[{{name: instructions, kwargs: {{n: 2, seed: 0, split: eval, tasks: {tasks}}}}}]",
        "task_eval.sampling.max_new_tokens=8", "eval.data.kwargs.n=2", "eval.sampling.max_new_tokens=8",
        "follow.data=[{name: arithmetic, kwargs: {n: 2, seed: 0, difficulty: 1, split: eval}}]",
        "follow.single_turn=2", "follow.dialogs=1", "follow.max_turns=2", "follow.max_new_tokens=8",
        "trainer.max_steps=2", "trainer.per_device_train_batch_size=8", "trainer.max_completion_length=8",
        "trainer.save_steps=100",
        "anchor={coef: 1.0, batch_size: 2, data: [{name: arithmetic, kwargs: {n: 6, seed: 6, difficulty: 1}}]}"])
    out = general_rl.main(cfg)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    anchor = [r["anchor/loss"] for r in log if "anchor/loss" in r]
    assert len(anchor) == 2 and all(v > 0 for v in anchor)  # one value per step: a random model's loss is high
    assert json.loads((out / STAGE_FILE).read_text())["config"]["anchor"]["coef"] == 1.0
