"""Stage 2 through its real entry point on a tiny model: GRPO with dynamic sampling trains and finishes.
Run: pytest tests/stages/test_reasoning_rl.py"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stages import reasoning_rl
from stages.common import STAGE_FILE
from stages.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def config(tmp_path, model_dir, *overrides):
    return load_config(reasoning_rl.ReasoningRLConfig, REPO / "configs" / "stage2_grpo" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={model_dir}", "threads=1",
        "data.0.kwargs={n: 32, seed: 1, difficulty: 1}", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=8",
        "eval.batch_size=4", "trainer.max_steps=2", "trainer.per_device_train_batch_size=8",
        "trainer.num_generations=4", "trainer.max_completion_length=8", "trainer.save_steps=1",
        "dynamic_sampling.max_refill_rounds=1", *overrides])


def always_varied(completions, **kwargs):
    """A reward with variance in every group, so dynamic sampling keeps every group."""
    return [float(i % 2) for i in range(len(completions))]


def test_grpo_with_dynamic_sampling_trains_and_writes_the_stage(tmp_path, tiny_moe_dir):
    from transformers import AutoModelForCausalLM

    varied = "rewards=[{name: tests.stages.test_reasoning_rl:always_varied}]"
    out = reasoning_rl.main(config(tmp_path, tiny_moe_dir, varied, "trainer.learning_rate=1e-2"))
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["stage"] == "reasoning_rl" and record["metrics"]["train"]["steps"] == 2
    assert len(record["metrics"]["train"]["reward_curve"]) == 2
    assert "eval_before" in record["metrics"]
    before = AutoModelForCausalLM.from_pretrained(tiny_moe_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("dynamic_sampling/refill_rounds" in r for r in log)
    # completions cut off at max_completion_length (8 tokens: most of them here) are reported, not silent
    ratios = [r["completions/clipped_ratio"] for r in log if "completions/clipped_ratio" in r]
    clipped = record["metrics"]["train"]["clipped_completions"]
    assert clipped["max_completion_length"] == 8 and clipped["logged_steps"] == len(ratios) == 2
    assert clipped["mean_ratio"] == pytest.approx(sum(ratios) / 2, abs=1e-4) and clipped["mean_ratio"] > 0


def all_but_the_last_group_varied(completions, **kwargs):
    """Variance in every group of a generation call but its last (of 4 completions): that one is dropped."""
    return [float(i % 2) if i < len(completions) - 4 else 0.0 for i in range(len(completions))]


def test_dynamic_sampling_refills_only_what_the_dropped_groups_need(tmp_path, tiny_moe_dir):
    # 4 groups per step, 3 informative: one is missing, and at a share of 3/4 two new prompts are drawn (not 4);
    # of those two groups the last is dropped again, which still leaves the batch full
    reward = "rewards=[{name: tests.stages.test_reasoning_rl:all_but_the_last_group_varied}]"
    out = reasoning_rl.main(config(tmp_path, tiny_moe_dir, reward, "trainer.per_device_train_batch_size=16",
                                   "eval_before=false"))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "dynamic_sampling/generated_groups" in r]
    assert len(steps) == 2
    assert all(r["dynamic_sampling/generated_groups"] == 6 and r["dynamic_sampling/refill_rounds"] == 1
               and r["dynamic_sampling/filled_zero_std"] == 0 for r in steps)


def test_clipped_completions_summarise_trls_logged_clipped_ratio(capsys):
    log = [{"step": 1, "completions/clipped_ratio": 0.5}, {"step": 2, "loss": 0.1},
           {"step": 2, "completions/clipped_ratio": 0.0}, {"step": 3, "completions/clipped_ratio": 0.25}]
    assert reasoning_rl.clipped_completions(log, 64, "rl") == {
        "max_completion_length": 64, "logged_steps": 3, "mean_ratio": 0.25, "last_ratio": 0.25, "max_ratio": 0.5}
    assert "warning: 25.0% of completions (mean of 3 logged steps, at most 50.0%) were cut off at " \
           "max_completion_length=64" in capsys.readouterr().out
    assert reasoning_rl.clipped_completions([{"step": 1, "completions/clipped_ratio": 0.0}], 64, "rl")["max_ratio"] == 0
    assert "warning" not in capsys.readouterr().out
    reasoning_rl.clipped_completions(log, 64, "rl", masked=True)  # already masked: no advice to mask them
    out = capsys.readouterr().out
    assert "left out of the loss (trainer.mask_truncated_completions)" in out and "set trainer" not in out


def test_unknown_loss_type_and_reward_are_config_errors(tmp_path, tiny_moe_dir):
    with pytest.raises(ConfigError, match="trainer.loss_type: unknown loss 'dapoo'"):
        config(tmp_path, tiny_moe_dir, "trainer.loss_type=dapoo")
    with pytest.raises(ConfigError, match="rewards.0: unknown reward 'nope'"):
        reasoning_rl.main(config(tmp_path, tiny_moe_dir, "rewards=[{name: nope}]"))
    assert not (tmp_path / "out").exists()


def test_num_generations_must_divide_the_batch(tmp_path, tiny_moe_dir):
    with pytest.raises(ConfigError, match="num_generations"):
        reasoning_rl.main(config(tmp_path, tiny_moe_dir, "trainer.num_generations=3"))


def test_vllm_requested_without_vllm_or_a_gpu_is_a_clear_config_error(tmp_path, tiny_moe_dir):
    with pytest.raises(ConfigError, match="trainer.use_vllm: vLLM"):
        reasoning_rl.main(config(tmp_path, tiny_moe_dir, "trainer.use_vllm=true"))
    assert not (tmp_path / "out").exists()


def test_grpo_with_lora_trains_the_adapter_and_saves_a_merged_model(tmp_path, tiny_moe_dir):
    from transformers import AutoModelForCausalLM

    varied = "rewards=[{name: tests.stages.test_reasoning_rl:always_varied}]"
    out = reasoning_rl.main(config(tmp_path, tiny_moe_dir, varied, "trainer.learning_rate=1e-1",
                                   "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}"))
    before = AutoModelForCausalLM.from_pretrained(tiny_moe_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert set(after) == set(before)  # merged: no adapter weights left, a plain model dir
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # only the LoRA targets moved
