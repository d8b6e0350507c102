"""The whole pipeline on the tiny model, killed with SIGKILL at random points and rerun: it completes, every
finished stage's files stay byte-identical, and no half-written dir is ever taken for finished.
Run: pytest -m slow tests/e2e/test_pipeline_resume.py  (~5 min on 2 cores)"""

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


def test_pipeline_survives_sigkill_at_random_points_and_never_rewrites_finished_stages(tmp_path, tiny_moe_dir):
    config = pipeline_yaml(tmp_path, tiny_moe_dir)
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    rng = random.Random(int(os.environ.get("KILL_SEED", "7")))
    finished: dict[str, dict] = {}
    kills = []
    for _ in range(5):
        proc = start(config, log)
        time.sleep(rng.uniform(4, 30))
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        running = [d.name for d in sorted(run_dir.glob("0*")) if not (d / STAGE_FILE).exists()]
        kills.append(running[0] if running else "between stages")
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
    print(f"kills landed in: {kills}")
    assert len(kills) >= 3  # the run really was interrupted, several times
