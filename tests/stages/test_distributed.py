"""Stages under a launcher, on the CPU: 2-process DDP over gloo (stages 1 and 2) and single-process DeepSpeed ZeRO-2 /
ZeRO-3 (stage 1), each through `accelerate launch --config_file configs/accelerate/<name>.yaml` and the stage's real
entry point on a tiny model. Run: pytest tests/stages/test_distributed.py   (the DeepSpeed ones: -m slow)

Each launched process records (tests/stages/ddp_probe.py) the batches it trained on, its weights before and after,
and which writing / evaluating steps it ran.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages.common import STAGE_FILE
from tests.stages.test_thinking_fusion import TINY_ARGS as FUSION_TINY_ARGS

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"
SFT_ARGS = ["threads=1", "data.0.kwargs.n=48", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=12",
            "eval.batch_size=4", "trainer.max_steps=3", "trainer.logging_steps=1", "trainer.learning_rate=1e-2",
            "trainer.save_steps=100"]
RL_ARGS = ["threads=1", "data.0.kwargs={n: 32, seed: 1, difficulty: 1}", "eval.data.kwargs.n=4",
           "eval.sampling.max_new_tokens=8", "eval.batch_size=4", "trainer.max_steps=2",
           "trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=8",
           "trainer.save_steps=100", "trainer.learning_rate=1e-2", "dynamic_sampling.max_refill_rounds=1",
           "rewards=[{name: tests.stages.test_reasoning_rl:always_varied}]"]

FUSION_ARGS = [*FUSION_TINY_ARGS, "trainer.per_device_train_batch_size=1", "trainer.save_steps=100",
               "model.max_length=160"]


def free_port() -> int:
    with socket.socket() as s:  # another run on the machine may hold accelerate's default 29500
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launch_config: str, probe_dir: Path, stage: str, config: str, *overrides: str,
           num_processes: int | None = None) -> dict[int, dict]:
    """`accelerate launch` the stage with probes; returns each process's record by rank."""
    cmd = [str(ACCELERATE), "launch", "--config_file", str(REPO / "configs" / "accelerate" / f"{launch_config}.yaml"),
           "--main_process_port", str(free_port()),
           *(["--num_processes", str(num_processes)] if num_processes else []),
           "-m", "tests.stages.ddp_probe", str(probe_dir), stage, "--config", str(REPO / config), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO)}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"launch failed ({run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    return {int(p.stem.removeprefix("rank")): json.loads(p.read_text()) for p in sorted(probe_dir.glob("rank*.json"))}


def assert_one_complete_stage(out: Path, ranks: dict[int, dict], steps: int) -> dict:
    """Rank 0 alone saved, evaluated and wrote stage.json, once; every process returned after it."""
    assert sorted(ranks) == [0, 1]
    assert all(r["returned"] for r in ranks.values())
    assert ranks[0]["calls"]["finish_stage"] == 1 and ranks[0]["calls"]["save_model_dir"] == 1
    assert ranks[0]["calls"]["evaluate"] >= 1
    assert ranks[1]["calls"] == {}, f"rank 1 wrote or evaluated: {ranks[1]['calls']}"
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["metrics"]["train"]["steps"] == steps
    assert set(record["metrics"]["eval"]) == {"think", "no_think"}
    assert record["versions"]["torch"] and record["config"]["output_dir"] == str(out)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
    assert not (out / "checkpoints").exists()
    return record


def assert_ranks_trained_together(ranks: dict[int, dict], steps: int, batches_per_step: int = 1) -> None:
    """Two processes, each its own share of the data, the same weights after every step (DDP averaged the
    gradients: without it, different batches would give different weights), and the weights moved."""
    r0, r1 = ranks[0], ranks[1]
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["global_step"] == r1["global_step"] == steps
    assert len(r0["batches"]) == len(r1["batches"]) == steps * batches_per_step
    assert not set(r0["batches"]) & set(r1["batches"]), "both ranks trained on the same batches"
    assert r0["weights_before"] == r1["weights_before"]
    assert r0["weights_after"] == r1["weights_after"], "the ranks' weights diverged"
    assert r0["weights_after"] != r0["weights_before"], "training did not change the weights"


def saved_weights(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_without_a_launcher_the_process_is_main_and_waiting_is_a_no_op(monkeypatch):
    from stages.common import barrier, broadcast_from_main, is_main_process, whole_weights

    model = torch.nn.Linear(2, 2)
    assert is_main_process()
    barrier()
    assert broadcast_from_main([1, 2]) == [1, 2]
    with whole_weights(model) as inside:
        assert inside is model
    monkeypatch.setenv("RANK", "1")  # a launched process before the trainer sets up torch.distributed
    assert not is_main_process()


def test_stage1_on_two_cpu_processes_keeps_ranks_in_sync_and_writes_the_stage_once(tmp_path, tiny_moe_dir):
    out = tmp_path / "out"
    ranks = launch("cpu-ddp", tmp_path / "probe", "sft", "configs/stage1_sft/nano.yaml", *SFT_ARGS,
                   f"output_dir={out}", f"model.name_or_path={tiny_moe_dir}", "trainer.per_device_train_batch_size=1")
    assert_ranks_trained_together(ranks, steps=3)
    record = assert_one_complete_stage(out, ranks, steps=3)
    assert ranks[0]["calls"]["write_json_atomic"] == 1  # data_report.json
    assert json.loads((out / "data_report.json").read_text())["rows_in"] == 48
    assert record["data"]["rows"] == 48
    assert len([r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]) == 3
    before, after = saved_weights(tiny_moe_dir), saved_weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_stage2_grpo_with_an_sft_anchor_on_two_cpu_processes_keeps_ranks_in_sync_and_writes_the_stage_once(
        tmp_path, tiny_moe_dir):
    out = tmp_path / "out"
    anchor = "anchor={coef: 1.0, batch_size: 2, data: [{name: arithmetic, kwargs: {n: 4, seed: 6, difficulty: 1}}]}"
    ranks = launch("cpu-ddp", tmp_path / "probe", "reasoning_rl", "configs/stage2_grpo/nano.yaml", *RL_ARGS,
                   f"output_dir={out}", f"model.name_or_path={tiny_moe_dir}", anchor)
    assert_ranks_trained_together(ranks, steps=2)
    record = assert_one_complete_stage(out, ranks, steps=2)
    assert ranks[0]["calls"]["evaluate"] == 2  # before and after training
    assert len(record["metrics"]["train"]["reward_curve"]) == 2
    assert "eval_before" in record["metrics"]
    # the anchor's second forward pass per micro-batch runs under DDP too (both ranks' losses are averaged)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len([r for r in log if "anchor/loss" in r]) == 2


def test_stage3_on_two_cpu_processes_samples_once_and_both_train_on_the_saved_fused_data(tmp_path, tiny_moe_dir):
    """Rank 0 alone rejection-samples and saves the fused dataset; rank 1 waits and loads it (a different dataset
    per rank would break the sharding)."""
    stage2 = tmp_path / "stage2"
    shutil.copytree(tiny_moe_dir, stage2)
    (stage2 / STAGE_FILE).write_text('{"stage": "reasoning_rl"}')
    out = tmp_path / "out"
    ranks = launch("cpu-ddp", tmp_path / "probe", "thinking_fusion", "configs/stage3_fusion/nano.yaml", *FUSION_ARGS,
                   f"output_dir={out}", f"model.name_or_path={stage2}")
    assert_ranks_trained_together(ranks, steps=2)
    record = assert_one_complete_stage(out, ranks, steps=2)
    assert ranks[0]["calls"]["rejection_rows"] == 1 and ranks[0]["calls"]["budget_curve"] == 1
    assert record["data"]["rows"] == json.loads((out / "fused_data" / "manifest.json").read_text())["rows"]


deepspeed_missing = importlib.util.find_spec("deepspeed") is None
LORA = "{r: 4, alpha: 8, target_modules: [q_proj, v_proj], target_parameters: [mlp.experts.gate_up_proj]}"


@pytest.mark.slow  # the first DeepSpeed run on a machine JIT-compiles its CPU comm op (~90 s, then cached)
@pytest.mark.skipif(deepspeed_missing, reason="deepspeed is not installed (pip install -e .[deepspeed])")
@pytest.mark.skipif(shutil.which("c++") is None, reason="DeepSpeed JIT-compiles its CPU comm op: needs a C++ compiler")
@pytest.mark.parametrize("zero, lora", [("zero2", None), ("zero3", None), ("zero3", LORA)],
                         ids=["zero2", "zero3", "zero3-lora"])
def test_stage1_under_deepspeed_zero_on_one_cpu_process_matches_the_plain_run(tmp_path, tiny_moe_dir, zero, lora):
    """Same data, seed and steps: ZeRO-2 / ZeRO-3 (through their JSON configs) end with the weights of the plain
    run, saved whole (ZeRO-3 gathers its shards; with LoRA, the adapter, merged into the input model) and
    loadable."""
    from stages import sft
    from stages.config import load_config

    common = [*SFT_ARGS, f"model.name_or_path={tiny_moe_dir}", "trainer.per_device_train_batch_size=2",
              *([f"model.lora={lora}"] if lora else [])]
    launch(zero, tmp_path / "probe", "sft", "configs/stage1_sft/nano.yaml", *common, f"output_dir={tmp_path / zero}",
           num_processes=1)
    record = json.loads((tmp_path / zero / STAGE_FILE).read_text())
    assert record["metrics"]["train"]["steps"] == 3
    plain = sft.main(load_config(sft.SFTStageConfig, REPO / "configs" / "stage1_sft" / "nano.yaml",
                                 [*common, f"output_dir={tmp_path / 'plain'}"]))
    base, expected, got = saved_weights(tiny_moe_dir), saved_weights(plain), saved_weights(tmp_path / zero)
    assert set(got) == set(expected) == set(base)  # a plain model dir (LoRA merged)
    changed = {k for k in base if not torch.equal(base[k], got[k])}
    assert changed
    if lora:
        assert any("experts" in k for k in changed) and not any("k_proj" in k for k in changed)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-5, msg=f"{zero}: {k} differs")


@pytest.mark.slow
@pytest.mark.skipif(deepspeed_missing, reason="deepspeed is not installed (pip install -e .[deepspeed])")
@pytest.mark.skipif(shutil.which("c++") is None, reason="DeepSpeed JIT-compiles its CPU comm op: needs a C++ compiler")
def test_stage2_under_deepspeed_zero3_evaluates_before_training_and_matches_the_plain_run(tmp_path, tiny_moe_dir):
    """Under ZeRO-3 the model loads into shards: the evaluation before training generates with the gathered weights
    (the same results as the plain run), and GRPO ends with the plain run's weights."""
    from stages import reasoning_rl
    from stages.config import load_config

    common = [*RL_ARGS, f"model.name_or_path={tiny_moe_dir}"]
    launch("zero3", tmp_path / "probe", "reasoning_rl", "configs/stage2_grpo/nano.yaml", *common,
           f"output_dir={tmp_path / 'zero3'}", num_processes=1)
    plain = reasoning_rl.main(load_config(reasoning_rl.ReasoningRLConfig,
                                          REPO / "configs" / "stage2_grpo" / "nano.yaml",
                                          [*common, f"output_dir={tmp_path / 'plain'}"]))
    got, expected = (json.loads((d / STAGE_FILE).read_text())["metrics"] for d in (tmp_path / "zero3", plain))
    for when in ("eval_before", "eval"):  # greedy generations: the same texts (their timing aside)
        for mode, result in expected[when].items():
            assert {k: v for k, v in got[when][mode].items() if k != "seconds"} == \
                {k: v for k, v in result.items() if k != "seconds"}, f"{when} {mode}"
    assert got["train"]["steps"] == 2
    base, want, have = saved_weights(tiny_moe_dir), saved_weights(plain), saved_weights(tmp_path / "zero3")
    assert any(not torch.equal(base[k], have[k]) for k in base)
    for k in want:
        torch.testing.assert_close(have[k], want[k], rtol=1e-4, atol=1e-5, msg=f"zero3: {k} differs")
