"""Reusing the input stage's own measurements instead of measuring the same weights again: only when the settings,
seed and model loading are the same. Run: pytest tests/stages/test_evaluate.py"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.common import LoraSettings, ModelSettings
from stages.config import to_dict
from stages.evaluate import EvalSettings, FollowSettings, measured_by_input

NUMBERS = {"think": {"accuracy": 0.47, "n": 200}, "no_think": {"accuracy": 0.42, "n": 200}}
FOLLOW = {"think_follow": 0.9, "turns_judged": 270}


def finished_stage(path, settings=None, seed=0, dtype="float32"):
    path.mkdir()
    config = {"eval": to_dict(settings or EvalSettings()), "follow": to_dict(FollowSettings()), "seed": seed,
              "model": {"dtype": dtype, "rope_scaling": None}}
    record = {"stage": "sft", "config": config, "metrics": {"eval": NUMBERS, "think_follow": FOLLOW}}
    (path / "stage.json").write_text(json.dumps(record))
    return path


def test_the_input_stages_numbers_are_reused_when_measured_the_same_way(tmp_path):
    stage = finished_stage(tmp_path / "s1")
    model = ModelSettings(name_or_path=str(stage))
    got = measured_by_input(model, "eval", EvalSettings(), 0)
    assert {mode: r["accuracy"] for mode, r in got.items()} == {"think": 0.47, "no_think": 0.42}
    assert all(r["reused_from"] == str(stage / "stage.json") for r in got.values())
    follow = measured_by_input(model, "think_follow", FollowSettings(), 0)
    assert follow["think_follow"] == 0.9 and follow["reused_from"].endswith("stage.json")


@pytest.mark.parametrize("change", ["settings", "seed", "dtype", "quantized", "unfinished", "not measured"])
def test_anything_different_means_measuring_again(tmp_path, change):
    stage = finished_stage(tmp_path / "s1", dtype="bfloat16" if change == "dtype" else "float32")
    settings, seed = EvalSettings(), 0
    model = ModelSettings(name_or_path=str(stage))
    if change == "settings":
        settings.data.kwargs["n"] = 100
    elif change == "seed":
        seed = 1
    elif change == "quantized":
        model.lora = LoraSettings(quantize="4bit")
    elif change == "unfinished":
        (stage / "stage.json").unlink()
    metric = "thinking_budget" if change == "not measured" else "eval"
    assert measured_by_input(model, metric, settings, seed) is None


def test_make_eval_measures_think_follow_on_request_and_writes_both_into_the_stage(tmp_path, tiny_moe_dir):
    import shutil

    from stages.config import load_config
    from stages.evaluate import EvalConfig, main

    stage = tmp_path / "stage"
    shutil.copytree(tiny_moe_dir, stage)
    config = {"eval": to_dict(EvalSettings()), "seed": 0, "model": {"dtype": "float32", "rope_scaling": None}}
    (stage / "stage.json").write_text(json.dumps({"stage": "sft", "config": config,
                                                  "metrics": {"train": {"steps": 3}}}))
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(EvalConfig, repo / "configs" / "eval" / "nano.yaml", [
        f"model.name_or_path={stage}", "threads=1", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=8",
        "think_follow=true", "follow.single_turn=3", "follow.dialogs=2", "follow.max_turns=2",
        "follow.max_new_tokens=8", "follow.data.0.kwargs.n=4", "follow.data.1.kwargs.n=4"])
    results = main(cfg)
    metrics = json.loads((stage / "stage.json").read_text())["metrics"]
    assert metrics["train"] == {"steps": 3}  # the stage's own numbers stay
    assert metrics["eval"] == results["eval"] and set(results["eval"]) == {"think", "no_think"}
    assert metrics["think_follow"]["turns_judged"] == 3 + 2 * 2
    by_kind = metrics["think_follow"]["multi_turn_by_kind"]  # each dialog turn: its own flag, one kept, or none yet
    assert sum(v["n"] for v in by_kind.values()) == 2 * 2
    assert set(by_kind) <= {"own_think", "own_no_think", "kept_think", "kept_no_think", "no_flag_yet"}
    # the rewritten numbers carry their own settings: a stage reuses them only when measuring the same way
    model = ModelSettings(name_or_path=str(stage))
    assert measured_by_input(model, "eval", cfg.eval, 0)["think"]["n"] == 4
    assert measured_by_input(model, "eval", EvalSettings(), 0) is None  # the stage's n=200: not these
