"""End to end: `make stage1` on the shipped nano base, the whole default config, and its eval numbers.
Slow (~10 min on 2 cores). Run: make test-e2e   (= pytest -m slow)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_stage1_trains_the_nano_default_to_target_accuracy(tmp_path):
    if not (REPO / "checkpoints" / "nano-moe-base" / "base.json").is_file():
        pytest.skip("the shipped nano base is missing (make nano-base)")
    out = tmp_path / "01_sft"
    res = subprocess.run(["make", "stage1", f"ARGS=output_dir={out}"], cwd=REPO, capture_output=True, text=True,
                         timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"[sft] done: {out}" in res.stdout
    record = json.loads((out / "stage.json").read_text())
    think = record["metrics"]["eval"]["think"]
    assert think["accuracy"] >= 0.30, think  # the stage-1 target on held-out multi-step problems
    assert think["well_formed"] >= 0.9, think
    losses = [r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < losses[0]
