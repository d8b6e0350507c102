"""The global-batch load-balancing loss and expert metrics (stages/moe.py).

The four checks the issue names: (1) one rank, one micro-batch: global == transformers' micro loss; (2) several
micro-batches: accumulated frequencies == those of the concatenated batch; (3) two processes (gloo): both ranks
use the same, synchronised frequency vector; (4) the accumulator resets at every optimizer step of a real run.
Run: pytest tests/stages/test_moe.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stages import sft
from stages.common import STAGE_FILE
from stages.config import load_config
from stages.moe import ExpertBalance, MoESettings, RouterTap, balance_loss, expert_specialisation

REPO = Path(__file__).resolve().parents[2]


def load(model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # A freshly initialised router is nearly uniform; give it some preference so imbalance is visible.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate.weight"):
                p.normal_(0, 0.5)
    return model.train()


def batch(seed: int, rows: int = 3, length: int = 11, pad: int = 4):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 300, (rows, length), generator=g)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, -pad:] = 0  # one padded row: padding must not count
    return ids, mask


def balance(model, mode="global"):
    return ExpertBalance(model, MoESettings(balance=mode, coef=1.0), 1.0, model.config.num_experts_per_tok,
                         model.config.num_experts)


def test_global_loss_with_one_rank_and_one_micro_batch_equals_transformers_micro_loss(tiny_moe_dir):
    model = load(tiny_moe_dir)
    ids, mask = batch(0)
    b = balance(model)
    with b.tap.window():
        out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
    ours = b.loss(step=0)
    assert ours is not None and ours.requires_grad
    torch.testing.assert_close(ours, out.aux_loss.float(), rtol=1e-6, atol=1e-6)
    # Same scale as the micro loss: top_k at perfect balance, and this router is not balanced.
    assert float(ours.detach()) > model.config.num_experts_per_tok


def test_micro_mode_adds_no_loss_but_records_the_metrics(tiny_moe_dir):
    model = load(tiny_moe_dir)
    b = balance(model, "micro")
    ids, mask = batch(0)
    with b.tap.window():
        model(input_ids=ids, attention_mask=mask)
    assert b.loss(step=0) is None
    summary = b.summary()
    assert summary["tokens_routed"] == float(mask.sum())
    assert len(summary["load_share"]) == model.config.num_hidden_layers
    for share in summary["load_share"]:
        assert sum(share) == pytest.approx(1.0, abs=1e-3)


def test_accumulated_frequencies_equal_those_of_the_concatenated_batch(tiny_moe_dir):
    model = load(tiny_moe_dir)
    b = balance(model)
    parts = [batch(1), batch(2), batch(3)]
    losses = []
    for ids, mask in parts:
        with b.tap.window():
            model(input_ids=ids, attention_mask=mask)
        losses.append(b.loss(step=7))
    assert b.micro_steps == 3

    whole = balance(model)
    ids = torch.cat([p[0] for p in parts])
    mask = torch.cat([p[1] for p in parts])
    with whole.tap.window():
        model(input_ids=ids, attention_mask=mask)
    counts, _, _, rows = whole.tap.take()
    torch.testing.assert_close(b.step_counts, counts)
    assert float(b.step_rows) == float(rows) == float(mask.sum())
    # The last micro-step's loss uses the whole batch's frequencies with its own probabilities.
    ids, mask = parts[-1]
    with whole.tap.window():
        model(input_ids=ids, attention_mask=mask)
    _, prob_sums, _, local_rows = whole.tap.take()
    torch.testing.assert_close(losses[-1], balance_loss(counts, rows, prob_sums, local_rows))


def test_a_new_optimizer_step_resets_the_accumulator(tiny_moe_dir):
    model = load(tiny_moe_dir)
    b = balance(model)
    for step in (0, 0, 1, 2, 2):
        ids, mask = batch(step)
        with b.tap.window():
            model(input_ids=ids, attention_mask=mask)
        b.loss(step=step)
    assert [h["micro_steps"] for h in b.history] == [2, 1]
    assert b.micro_steps == 2 and float(b.step_rows) == 2 * float(batch(2)[1].sum())


def test_global_plus_micro_adds_the_weighted_micro_term(tiny_moe_dir):
    model = load(tiny_moe_dir)
    ids, mask = batch(0)
    results = {}
    for mode in ("global", "global+micro"):
        b = ExpertBalance(model, MoESettings(balance=mode, coef=1.0, micro_weight=0.5), 1.0, 2, 4)
        with b.tap.window():
            model(input_ids=ids, attention_mask=mask)
        results[mode] = float(b.loss(step=0))
        b.tap.remove()
    # One micro-batch: the micro term equals the global one, so global+micro = 1.5 × global.
    assert results["global+micro"] == pytest.approx(1.5 * results["global"], rel=1e-6)


def _rank_main(rank: int, world: int, init_file: str, model_dir: str, out_dir: str):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = load(model_dir)
        b = balance(model)
        for micro in range(2):  # two micro-steps of one optimizer step, different data on each rank
            ids, mask = batch(10 * rank + micro)
            with b.tap.window():
                model(input_ids=ids, attention_mask=mask)
            loss = b.loss(step=0)
            loss.backward()  # gradients flow through the local probabilities
        local = balance(model)
        for micro in range(2):
            ids, mask = batch(10 * rank + micro)
            with local.tap.window():
                model(input_ids=ids, attention_mask=mask)
            counts, _, _, rows = local.tap.take()
            local.step_counts = local.step_counts + counts
            local.step_rows = local.step_rows + rows
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
            "frequencies": b.last_frequencies, "step_counts": b.step_counts.tolist(),
            "step_rows": float(b.step_rows), "local_counts": local.step_counts.tolist(),
            "local_rows": float(local.step_rows)}))
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_use_the_same_synchronised_frequencies(tiny_moe_dir, tmp_path):
    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(tiny_moe_dir), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["local_counts"] != r1["local_counts"]  # the ranks saw different tokens...
    assert r0["frequencies"] == r1["frequencies"]  # ...and use one frequency vector
    both = torch.tensor(r0["local_counts"]) + torch.tensor(r1["local_counts"])
    torch.testing.assert_close(torch.tensor(r0["step_counts"]), both)
    assert r0["step_rows"] == r1["step_rows"] == r0["local_rows"] + r1["local_rows"]


def sft_config(tmp_path, model_dir, *overrides):
    return load_config(sft.SFTStageConfig, REPO / "configs" / "stage1_sft" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={model_dir}", "threads=1",
        "data.0.kwargs.n=48", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=8", "eval.batch_size=4",
        "trainer.max_steps=3", "trainer.logging_steps=1", "trainer.per_device_train_batch_size=1",
        "trainer.gradient_accumulation_steps=2", "trainer.learning_rate=1e-2", *overrides])


def test_stage_one_with_global_balance_resets_every_step_and_reports_the_experts(tmp_path, tiny_moe_dir,
                                                                                 monkeypatch):
    from transformers import AutoConfig

    seen = {}
    real_finish = sft.finish_metrics

    def spy(trainer, out):
        seen["balance"] = trainer.moe_balance
        return real_finish(trainer, out)

    monkeypatch.setattr(sft, "finish_metrics", spy)
    out = sft.main(sft_config(tmp_path, tiny_moe_dir, "moe.balance=global"))
    b = seen["balance"]
    # Three optimizer steps of two micro-batches each: the two finished steps accumulated exactly two.
    assert [h["step"] for h in b.history] == [0, 1] and b.step == 2
    assert [h["micro_steps"] for h in b.history] == [2, 2] and b.micro_steps == 2
    record = json.loads((out / STAGE_FILE).read_text())
    moe = record["metrics"]["moe"]
    assert moe["balance"] == "global" and moe["coef"] == pytest.approx(0.001)
    assert len(moe["load_share"]) == 2 and len(moe["imbalance"]) == 2 and len(moe["router_entropy"]) == 2
    assert (out / "expert_load.png").stat().st_size > 1000
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("moe/global_lbl" in r and "moe/router_entropy" in r for r in log)
    assert not any("aux_loss" in r for r in log)  # TRL's micro loss is off: ours replaces it
    # The saved model keeps its own coefficient (TRL had written 0.0 into the config).
    assert AutoConfig.from_pretrained(out).router_aux_loss_coef == pytest.approx(0.001)


def test_micro_balance_keeps_trls_loss_and_still_reports_the_experts(tmp_path, tiny_moe_dir):
    out = sft.main(sft_config(tmp_path, tiny_moe_dir, "trainer.max_steps=1"))
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["metrics"]["moe"]["balance"] == "micro"
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("aux_loss" in r for r in log) and not any("moe/global_lbl" in r for r in log)


def test_global_balance_trains_with_lora_in_grpo(tmp_path, tiny_moe_dir):
    from stages import reasoning_rl
    from tests.stages.test_reasoning_rl import config

    varied = "rewards=[{name: tests.stages.test_reasoning_rl:always_varied}]"
    out = reasoning_rl.main(config(tmp_path, tiny_moe_dir, varied, "moe.balance=global+micro",
                                   "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}",
                                   "eval_before=false"))
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["metrics"]["moe"]["balance"] == "global+micro"
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("moe/global_lbl" in r for r in log)


def test_unknown_balance_mode_is_a_config_error(tmp_path, tiny_moe_dir):
    from stages.config import ConfigError

    with pytest.raises(ConfigError, match="moe.balance must be one of"):
        sft_config(tmp_path, tiny_moe_dir, "moe.balance=globall")


def test_specialisation_is_zero_for_identical_tasks_and_positive_for_different_ones(tiny_moe_dir):
    from transformers import AutoTokenizer

    model = load(tiny_moe_dir)
    tok = AutoTokenizer.from_pretrained(tiny_moe_dir)
    digits = ["12 + 34 = 46", "7 * 8 = 56", "90 - 45 = 45"] * 2
    words = ["the cat sat on the mat", "a dog ran in the park", "we like to read books"] * 2
    same = expert_specialisation(model, tok, {"a": digits, "b": list(digits)})
    assert same["mean_mutual_information_bits"] == pytest.approx(0.0, abs=1e-6)
    different = expert_specialisation(model, tok, {"digits": digits, "words": words})
    assert different["mean_mutual_information_bits"] > 0.01
    assert model.training  # left as it was


def test_router_tap_ignores_forwards_outside_a_window(tiny_moe_dir):
    model = load(tiny_moe_dir)
    tap = RouterTap(model, 2)
    ids, mask = batch(0)
    model(input_ids=ids, attention_mask=mask)
    assert tap.take() is None
    with tap.window():
        model(input_ids=ids, attention_mask=mask)
    assert tap.take() is not None
    tap.remove()
