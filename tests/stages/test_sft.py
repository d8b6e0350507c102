"""Stage 1 through its real entry point on a tiny model: trains, saves a loadable model dir, stage.json last,
resumes after an interruption, LoRA on MoE experts. Run: pytest tests/stages/test_sft.py"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stages import sft
from stages.common import STAGE_FILE
from stages.config import load_config

REPO = Path(__file__).resolve().parents[2]


def config(tmp_path, model_dir, *overrides):
    return load_config(sft.SFTStageConfig, REPO / "configs" / "stage1_sft" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={model_dir}", "threads=1",
        "data.0.kwargs.n=48", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=12", "eval.batch_size=4",
        "trainer.max_steps=3", "trainer.logging_steps=1", "trainer.per_device_train_batch_size=2",
        "trainer.learning_rate=1e-2", *overrides])


def weights(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_full_finetune_changes_weights_and_leaves_a_complete_model_dir(tmp_path, tiny_moe_dir, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = sft.main(config(tmp_path, tiny_moe_dir))
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["stage"] == "sft" and record["input_model"] == str(tiny_moe_dir)
    assert record["metrics"]["train"]["steps"] == 3
    assert set(record["metrics"]["eval"]) == {"think", "no_think"}
    assert record["data"]["rows"] > 0 and record["versions"]["trl"]
    assert json.loads((out / "data_report.json").read_text())["rows_in"] == 48
    before, after = weights(tiny_moe_dir), weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.output_router_logits is False  # saved so that generate() with a KV cache works
    tok = AutoTokenizer.from_pretrained(out)
    assert "generation" in tok.chat_template
    assert not (out / "checkpoints").exists()
    # stage.json is the last file written
    newest = max((p for p in out.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == STAGE_FILE
    # a finished stage is never redone
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    sft.main(config(tmp_path, tiny_moe_dir))
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    assert "is complete" in capsys.readouterr().out


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, tiny_moe_dir, monkeypatch, capsys):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill while saving")

    monkeypatch.setattr(sft, "save_and_reload", crash)
    with pytest.raises(KeyboardInterrupt):
        sft.main(config(tmp_path, tiny_moe_dir, "trainer.max_steps=4", "trainer.save_steps=2"))
    out = tmp_path / "out"
    assert not (out / STAGE_FILE).exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    monkeypatch.undo()
    sft.main(config(tmp_path, tiny_moe_dir, "trainer.max_steps=6", "trainer.save_steps=2"))
    assert "resuming from the last checkpoint" in capsys.readouterr().out
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["metrics"]["train"]["steps"] == 6
    steps_logged = [r["step"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())
                    if "loss" in r]
    assert min(steps_logged) == 1 and steps_logged[-1] == 6  # history carried over from the checkpoint


def test_lora_on_moe_experts_trains_and_saves_a_merged_model(tmp_path, tiny_moe_dir):
    out = sft.main(config(tmp_path, tiny_moe_dir, "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj], "
                                                  "target_parameters: [mlp.experts.gate_up_proj]}"))
    files = {p.name for p in out.iterdir()}
    assert "adapter_config.json" not in files  # merged, servable as a plain model
    before, after = weights(tiny_moe_dir), weights(out)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("q_proj" in k for k in changed) and any("experts" in k for k in changed)
    assert not any("k_proj" in k or "o_proj" in k for k in changed)  # untargeted weights stay as they were


def test_lora_target_that_matches_nothing_is_a_config_error(tmp_path, tiny_moe_dir):
    from stages.config import ConfigError

    with pytest.raises(ConfigError, match="'qq_proj' matches no module"):
        sft.main(config(tmp_path, tiny_moe_dir, "model.lora={target_modules: [qq_proj]}"))


def test_dataset_without_messages_column_is_named(tmp_path, tiny_moe_dir):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+3?", "answer": "5"}\n')
    with pytest.raises(ValueError, match="missing required column 'prompt'"):
        sft.main(config(tmp_path, tiny_moe_dir, "data.0.name=local_file", f"data.0.kwargs={{path: {data}}}"))


def test_all_rows_filtered_out_is_a_clear_error(tmp_path, tiny_moe_dir):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "2+3?", "response": "It is \\\\boxed{6}", "gold": "5"}\n')
    with pytest.raises(ValueError, match="no training rows left after filtering"):
        sft.main(config(tmp_path, tiny_moe_dir, "data.0.name=local_file",
                        f"data.0.kwargs={{path: {data}, solution_column: gold}}"))
    assert not (tmp_path / "out" / STAGE_FILE).exists()


@pytest.mark.parametrize("enabled", [["wrong_answer"], ["wrong_answer", "over_length"]])
def test_rows_over_max_length_are_counted_dropped_or_truncated(tmp_path, tiny_moe_dir, capsys, enabled):
    """Long-CoT rows over model.max_length are never cut silently: the over_length filter drops them, and with the
    filter off (TRL truncates them) stage.json counts them and the stage warns."""
    from stages.common import load_tokenizer

    cfg = config(tmp_path, tiny_moe_dir, "model.max_length=300", f"filters.enabled={enabled}")
    tokenizer = load_tokenizer(str(tiny_moe_dir))
    rows, _ = sft.prepare_data(config(tmp_path, tiny_moe_dir, "filters.enabled=[wrong_answer]"), tokenizer)
    lengths = [len(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"])
               for m in rows["messages"]]
    over = sum(n > 300 for n in lengths)
    assert 0 < over < len(lengths)  # the data has rows on both sides of the limit
    out = sft.main(cfg)
    record = json.loads((out / STAGE_FILE).read_text())
    filtered = "over_length" in enabled
    expected = {"max_length": 300, "dropped": over if filtered else 0, "truncated": 0 if filtered else over}
    assert record["data"]["over_length"] == expected
    assert json.loads((out / "data_report.json").read_text())["over_length"] == expected
    assert record["data"]["rows"] == len(lengths) - (over if filtered else 0)
    warned = f"warning: {over} of {len(lengths)} training rows are longer than model.max_length=300"
    assert (warned in capsys.readouterr().out) == (not filtered)


def test_qwen3_lora_config_runs_on_local_stand_ins(tmp_path, tiny_dense_dir):
    """The real-model job (Qwen3-0.6B preset, LoRA on every linear layer, hub dataset with a messages column),
    with a local dense stand-in for the weights and a local folder standing in for the hub dataset."""
    repo = tmp_path / "hub" / "open-r1__stand-in"
    (repo / "data").mkdir(parents=True)
    def row(i):
        reply = f"<think>\n{i} + 2 = {i + 2}\n</think>\n\n\\boxed{{{i + 2}}}"
        return {"messages": [{"role": "user", "content": f"What is {i} + 2?"},
                             {"role": "assistant", "content": reply}], "answer": str(i + 2)}

    rows = [row(i) for i in range(20)]
    (repo / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(sft.SFTStageConfig, REPO / "configs" / "stage1_sft" / "qwen3-0.6b-lora.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={tiny_dense_dir}", "model.dtype=float32",
        "model.max_length=256", "threads=1", f"data.0.kwargs.name={repo}", "data.0.kwargs.config=null",
        "eval.data={name: arithmetic, kwargs: {n: 2, split: eval}}", "eval.sampling={max_new_tokens: 8}",
        "trainer.bf16=false", "trainer.use_cpu=true", "trainer.max_steps=2", "trainer.activation_checkpointing=false"])
    assert cfg.model.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]
    out = sft.main(cfg)
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["data"]["rows"] == 20 and record["config"]["model"]["lora"]["r"] == 32
    before, after = weights(tiny_dense_dir), weights(out)
    assert any("gate_proj" in k and not torch.equal(before[k], after[k]) for k in before)


def test_hub_model_id_while_offline_is_one_clear_error(tmp_path, monkeypatch):
    from stages.common import resolve_model_path
    from stages.config import ConfigError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="hub model 'Qwen/Qwen3-0.6B' is not in the local cache"):
        resolve_model_path("Qwen/Qwen3-0.6B")


def test_a_half_written_checkpoint_is_removed_and_the_last_complete_one_resumed(tmp_path):
    from stages.common import last_valid_checkpoint

    ckpts = tmp_path / "checkpoints"
    for step, state in [(2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, '{"global_st')]:
        (ckpts / f"checkpoint-{step}").mkdir(parents=True)
        (ckpts / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (ckpts / "checkpoint-8").mkdir()  # killed before its trainer state was written
    assert last_valid_checkpoint(ckpts) == ckpts / "checkpoint-4"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert last_valid_checkpoint(tmp_path / "none") is None


def test_mode_loss_adds_the_binary_empty_or_thinking_loss_at_the_decision_token(tmp_path, tiny_moe_dir):
    """The decision is found after <think> (past the newline both kinds share), never in a prompt, and the loss
    is the plain loss + w × (-log p_empty for /no_think, -log(1 - p_empty) for thinking, + the cross-entropy of
    the chosen empty block's </think>) / trained tokens, from the same forward."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from stages.common import load_tokenizer
    from stages.mode_loss import decision_positions, mode_decision, mode_loss_trainer
    from stages.packing import PackedRowsCollator

    tok = load_tokenizer(str(tiny_moe_dir))
    decision = mode_decision(tok)
    assert tok.decode([decision.empty_id]) == "\n" and decision.offset == 1  # "<think>" "\n" | "\n" vs "The"
    rows = datasets.Dataset.from_list([
        {"messages": [{"role": "user", "content": "2+2? /no_think"},
                      {"role": "assistant", "content": "<think>\n\n</think>\n\n4"}]},
        {"messages": [{"role": "system", "content": "/think"}, {"role": "user", "content": "3+4? <think>"},
                      {"role": "assistant", "content": "<think>\nadd\n</think>\n\n7"}]},
    ])
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, assistant_only_loss=True, max_length=256,
                     report_to="none")
    losses = {}
    for weight in (0.0, 3.0):
        model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
        cls = mode_loss_trainer(SFTTrainer, weight, decision) if weight else SFTTrainer
        trainer = cls(model=model, args=args, train_dataset=rows, processing_class=tok)
        batch = PackedRowsCollator(tok.pad_token_id)([trainer.train_dataset[i] for i in range(2)])
        model.train()
        with torch.no_grad():
            losses[weight] = trainer.compute_loss(model, dict(batch)).item()
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits

    row, pos, empty = decision_positions(batch["input_ids"], batch["labels"], decision)
    assert row.tolist() == [0, 1] and empty.tolist() == [True, False]  # the <think> in the user turn is not one
    assert [tok.decode(batch["input_ids"][r, p + 1]) for r, p in zip(row, pos)] == ["\n", "a"]
    p_empty = logits[row, pos].softmax(-1)[:, decision.empty_id]
    binary = -torch.log(p_empty[0]) - torch.log(1 - p_empty[1])
    # and the chosen empty block's </think>, predicted one token after the decision
    assert [tok.decode([t]) for t in decision.close_ids] == ["</think>"]
    assert batch["input_ids"][0, pos[0] + 2] == decision.close_ids[0]
    close = -logits[0, pos[0] + 1].log_softmax(-1)[decision.close_ids[0]]
    trained = (batch["labels"][:, 1:] != -100).sum()
    assert losses[3.0] - losses[0.0] == pytest.approx(3.0 * ((binary + close) / trained).item(), rel=1e-4)


def test_a_negative_mode_loss_weight_is_a_config_error(tmp_path):
    from stages.config import ConfigError
    from stages.thinking_fusion import FusionStageConfig

    with pytest.raises(ConfigError, match="mode_loss_weight"):
        load_config(FusionStageConfig, REPO / "configs" / "stage3_fusion" / "nano.yaml",
                    [f"output_dir={tmp_path}", "mode_loss_weight=-1"])
