"""The pipeline runner and the report card: the printed plan chains each stage's output into the next, a dry run
runs nothing, a failing stage stops the run with its exit code, and the report card is built from the stages'
records. The full run and the kill/resume tests are in tests/e2e/test_pipeline_resume.py (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.report import write_report
from pipelines.run import PipelineConfig, main, plan
from stages.common import STAGE_FILE, write_json_atomic
from stages.config import ConfigError, load_config
from tests.pipelines.tiny import REPO, pipeline_yaml


def test_the_plan_feeds_each_stage_the_previous_output_and_a_dry_run_runs_nothing(tmp_path, capsys):
    cfg = load_config(PipelineConfig, REPO / "configs" / "pipelines" / "nano.yaml",
                      [f"run_dir={tmp_path / 'run'}", "dry_run=true"])
    steps = plan(cfg)
    assert [target.name for _, _, target in steps] == ["01_sft", "02_reasoning_rl", "03_fusion", "04_general"]
    assert not any(c.startswith("model.name_or_path=") for c in steps[0][1])  # stage 1: its config's base model
    for (_, _, before), (_, cmd, _) in zip(steps, steps[1:]):
        assert f"model.name_or_path={before}" in cmd
    main(cfg)
    out = capsys.readouterr().out
    assert out.count("python -m stages.") == 4 and "dry run" in out
    assert not (tmp_path / "run").exists()


def test_a_distill_step_takes_the_previous_output_as_its_student_and_keeps_its_teacher(tmp_path):
    cfg = load_config(PipelineConfig, REPO / "configs" / "pipelines" / "nano-dense-distill.yaml",
                      [f"run_dir={tmp_path / 'run'}"])
    (_, sft_cmd, sft_out), (step, cmd, _) = plan(cfg)
    assert "model.name_or_path=checkpoints/nano-dense-base" in sft_cmd
    assert step.stage == "distill" and cmd[1:3] == ["-m", "stages.distill"]
    assert f"model.student.name_or_path={sft_out}" in cmd
    assert not any(c.startswith(("model.name_or_path=", "model.teacher.")) for c in cmd)


def test_a_launcher_runs_every_stage_under_accelerate_and_an_unknown_one_is_named(tmp_path, capsys):
    cfg = load_config(PipelineConfig, REPO / "configs" / "pipelines" / "nano.yaml",
                      [f"run_dir={tmp_path / 'run'}", "dry_run=true", "launch=cpu-ddp", "steps.3.launch=cpu"])
    commands = [cmd for _, cmd, _ in plan(cfg)]
    for cmd, launcher in zip(commands, ["cpu-ddp", "cpu-ddp", "cpu-ddp", "cpu"]):
        assert cmd[0].endswith("accelerate") and cmd[1:4] == ["launch", "--config_file",
                                                              f"configs/accelerate/{launcher}.yaml"]
        assert cmd[4] == "-m" and cmd[5].startswith("stages.")
    main(cfg)
    assert capsys.readouterr().out.count("accelerate launch --config_file configs/accelerate/") == 4
    with pytest.raises(ConfigError, match="launch: unknown launcher config 'zero4'; available: .*'zero3'"):
        load_config(PipelineConfig, REPO / "configs" / "pipelines" / "nano.yaml", ["launch=zero4"])
    with pytest.raises(ConfigError, match="steps.1.launch: unknown launcher config 'gpus'"):
        load_config(PipelineConfig, REPO / "configs" / "pipelines" / "nano.yaml", ["steps.1.launch=gpus"])


def test_a_failing_stage_stops_the_pipeline_with_its_exit_code_and_names_it(tmp_path, tiny_moe_dir):
    path = pipeline_yaml(tmp_path, tiny_moe_dir)
    text = path.read_text()
    assert "trainer.max_steps=" in text
    path.write_text(text.replace("trainer.max_steps=", "trainer.max_stepz=", 1))  # a typo in stage 1's args
    run = subprocess.run([sys.executable, "-m", "pipelines.run", "--config", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "max_stepz" in run.stderr and "sft failed (exit 2)" in run.stderr
    assert not (tmp_path / "run" / "02_reasoning_rl").exists()


def test_the_report_card_collects_curves_evaluations_data_and_versions(tmp_path):
    d = tmp_path / "run" / "03_fusion"
    d.mkdir(parents=True)
    (d / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "aux_loss": 2.0}) + "\n"
                                               for s in range(1, 5)))
    write_json_atomic(d / STAGE_FILE, {
        "stage": "thinking_fusion", "input_model": "runs/x/02", "wall_seconds": 12.5, "peak_memory_mb": 900,
        "versions": {"torch": "2.13.0"}, "git_sha": "abc",
        "data": {"rows": 10, "card": {"rows": 10, "per_source": {"a": 10}, "per_mode": {"think": 6, "no_think": 4},
                                     "per_placement": {"user": 10}, "per_turn_count": {"1": 10},
                                     "rejection_sampling": {"kept": 3, "samples": 8}}},
        "metrics": {"train": {"steps": 4}, "eval": {"think": {"accuracy": 0.5, "well_formed": 1.0,
                                                             "mean_tokens": 20, "n": 4}},
                    "think_follow": {"think_follow": 0.97, "turns_judged": 7, "single_turn": {}, "multi_turn": 1.0},
                    "thinking_budget": [{"budget": 0, "accuracy": 0.1, "mean_thinking_tokens": 2},
                                        {"budget": None, "accuracy": 0.5, "mean_thinking_tokens": 30}],
                    "moe": {"balance": "global", "coef": 0.001, "imbalance": [1.5, 2.0], "router_entropy": [1.9, 2.0],
                            "uniform_entropy": 2.0794, "load_share": [[0.5, 0.5], [0.25, 0.75]]}}})
    (d / "expert_load.png").write_bytes(b"\x89PNG fake")
    path = write_report(tmp_path / "run", [d, tmp_path / "run" / "04_general"])
    text = path.read_text()
    assert "| thinking_fusion |" in text and "| 12.5 | 900 | 4 |" in text
    assert "| thinking_fusion | think | 0.5 | 1.0 | 20 | 4 |" in text
    assert "ThinkFollow: 0.97" in text and "| unlimited | 0.5 | 30 |" in text
    assert "per mode {\"think\": 6, \"no_think\": 4}" in text and "Unfinished stages" in text
    assert (tmp_path / "run" / "report" / "03_fusion_training.png").read_bytes()[:4] == b"\x89PNG"
    assert "MoE (global balance, coefficient 0.001): max/mean expert load per layer [1.5, 2.0]" in text
    assert "(report/03_fusion_expert_load.png)" in text
    assert (tmp_path / "run" / "report" / "03_fusion_expert_load.png").is_file()
