"""The whole pipeline on the tiny model, killed with SIGKILL at random points and rerun: it completes, every
finished stage's files stay byte-identical, and no half-written dir is ever taken for finished.
Run: pytest -m slow tests/e2e/test_pipeline_resume.py  (~2 min on 2 cores)"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.common import STAGE_FILE
from tests.pipelines.tiny import REPO, pipeline_yaml

pytestmark = pytest.mark.slow


def snapshot(stage_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(stage_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(stage_dir.rglob("*")) if p.is_file()}


def start(config: Path, log: Path) -> subprocess.Popen:
    # A new session, so the kill takes the stage process the runner started, as a crash or power loss would.
    return subprocess.Popen([sys.executable, "-m", "pipelines.run", "--config", str(config)], cwd=REPO,
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


# Kill points, each "as soon as this is seen, plus a random fraction of a second", one per attempt, in run order.
KILL_POINTS = [  # (where, condition on the run dir and this attempt's log)
    ("stage 1 training", lambda run, out: any((run / "01_sft" / "checkpoints").glob("checkpoint-*"))),
    ("stage 2 training", lambda run, out: any((run / "02_reasoning_rl" / "checkpoints").glob("checkpoint-*"))),
    ("stage 3 data building", lambda run, out: "[fusion] before:" in out),  # next: rejection sampling
    ("stage 3 training", lambda run, out: any((run / "03_fusion" / "checkpoints").glob("checkpoint-*"))),
    ("stage 3 saving / evaluation", lambda run, out: (run / "03_fusion" / "model.safetensors").exists()),
    ("stage 4 training", lambda run, out: any((run / "04_general" / "checkpoints").glob("checkpoint-*"))),
]


def test_pipeline_survives_sigkill_at_random_points_and_never_rewrites_finished_stages(tmp_path, tiny_moe_dir):
    config = pipeline_yaml(tmp_path, tiny_moe_dir)
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    rng = random.Random(int(os.environ.get("KILL_SEED", "7")))
    finished: dict[str, dict] = {}
    kills = []
    for name, seen in KILL_POINTS:
        offset = log.stat().st_size if log.exists() else 0
        proc = start(config, log)
        deadline = time.time() + 300
        while proc.poll() is None and not seen(run_dir, log.read_text()[offset:]) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            assert proc.returncode == 0, log.read_text()[-3000:]  # a resumed run must not fail
            kills.append(f"{name}: missed (the run got past it)")
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(name)
        for d in sorted(run_dir.glob("0*")):
            if (d / STAGE_FILE).exists():
                assert finished.setdefault(d.name, snapshot(d)) == snapshot(d), f"{d.name} changed after a kill"
    proc = start(config, log)
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    for name, files in finished.items():
        assert snapshot(run_dir / name) == files, f"{name} was rewritten by the resumed run"
    for name in ("01_sft", "02_reasoning_rl", "03_fusion", "04_general"):
        assert (run_dir / name / STAGE_FILE).exists() and (run_dir / name / "README.md").exists()
        assert not (run_dir / name / "checkpoints").exists()
    assert "Report card" in (run_dir / "report.md").read_text()
    print(f"kills: {kills}")
    assert sum("missed" not in k for k in kills) >= 5  # the run really was cut, in nearly every place meant
