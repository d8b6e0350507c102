"""Stage 1 on 2 CPU processes (DDP over gloo) vs 1 process, for the same global batch, side by side.

    python benchmarks/ddp_vs_single.py                 # [--steps 20 --rows 16 --rounds 1 --model DIR]

Each variant is the real entry point (`python -m stages.sft`, or `accelerate launch --config_file
configs/accelerate/cpu-ddp.yaml -m stages.sft`) on the same model (default: the shipped nano base), data, seed and
number of optimizer steps; every optimizer step sees ``--rows`` packed rows in all (DDP: half per process).
Variants run one after the other (``--rounds`` times each; the median is reported):

- ``single-2t``  one process, 2 torch threads (the default stage-1 run: both cores to one process)
- ``single-1t``  one process, 1 thread (what each DDP process gets)
- ``ddp-2x1t``   two processes, 1 thread each, ``--rows / 2`` rows per process

Reported: training seconds (trainer.train(), from stage.json), the whole stage's wall time (data building on every
process, evaluation on the main one only, kept small here) and training time relative to ``single-2t``. Run it
alone on the machine: anything beside it distorts the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_variant(name: str, model: str, steps: int, rows: int, out_root: Path, port: int) -> dict:
    out = out_root / name
    shutil.rmtree(out, ignore_errors=True)
    procs, threads = (2, 1) if name.startswith("ddp") else (1, 2 if name.endswith("2t") else 1)
    overrides = [f"output_dir={out}", f"model.name_or_path={model}", f"threads={threads}",
                 "data.0.kwargs.n=1500", "eval.data.kwargs.n=10", "eval.modes=[think]",
                 "eval.sampling.max_new_tokens=64", f"trainer.max_steps={steps}", "trainer.save_steps=100000",
                 f"trainer.logging_steps={steps}", f"trainer.per_device_train_batch_size={rows // procs}"]
    stage = ["-m", "stages.sft", "--config", "configs/stage1_sft/nano.yaml", *overrides]
    if procs == 1:
        cmd = [sys.executable, *stage]
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--config_file", "configs/accelerate/cpu-ddp.yaml",
               "--main_process_port", str(port), *stage]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if run.returncode:
        raise SystemExit(f"{name} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    record = json.loads((out / "stage.json").read_text())
    train = record["metrics"]["train"]
    assert train["steps"] == steps, train
    return {"variant": name, "processes": procs, "threads_each": threads, "rows_per_step": rows,
            "train_seconds": train["seconds"], "wall_seconds": round(wall, 1), "final_loss": train["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "nano-moe-base"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=16, help="packed rows of 512 tokens per optimizer step, in all")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="/tmp/bench_ddp_vs_single")
    parser.add_argument("--port", type=int, default=29517)
    a = parser.parse_args()
    if a.rows % 2:
        parser.error("--rows must be even (it is split over 2 processes)")
    variants = ["single-2t", "single-1t", "ddp-2x1t"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in variants:
            res = run_variant(v, a.model, a.steps, a.rows, Path(a.out), a.port)
            results[v].append(res)
            print(f"round {r + 1} {v}: train {res['train_seconds']} s, wall {res['wall_seconds']} s, "
                  f"final loss {res['final_loss']}", flush=True)
    base = statistics.median(x["train_seconds"] for x in results["single-2t"])
    print(f"\n{a.steps} optimizer steps x {a.rows} packed rows (512 tokens) each; medians of {a.rounds} round(s)")
    print(f"{'variant':<11}{'processes':>10}{'threads':>9}{'train s':>9}{'s/step':>8}{'wall s':>8}"
          f"{'train vs single-2t':>20}")
    for v in variants:
        train = statistics.median(x["train_seconds"] for x in results[v])
        wall = statistics.median(x["wall_seconds"] for x in results[v])
        first = results[v][0]
        print(f"{v:<11}{first['processes']:>10}{first['threads_each']:>9}{train:>9.1f}{train / a.steps:>8.2f}"
              f"{wall:>8.1f}{train / base:>19.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
