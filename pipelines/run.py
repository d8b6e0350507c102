"""The whole recipe: stages 1 -> 2 -> 3 -> 4, each stage's output feeding the next, then a report card.

    make pipeline                                            # nano default: configs/pipelines/nano.yaml
    make pipeline PIPELINE=configs/pipelines/qwen3-0.6b-lora.yaml
    python -m pipelines.run --config configs/pipelines/nano.yaml --dry-run    # print the plan, run nothing
    make pipeline LAUNCH=cpu-ddp     # every stage under accelerate launch (configs/accelerate/cpu-ddp.yaml)

Each stage runs as its own process with the command printed first, so any step can be rerun alone. A stage
whose ``stage.json`` exists is skipped; an interrupted one resumes from its last checkpoint (the stages do that
themselves); nothing finished is ever rewritten. A failing stage stops the pipeline with its exit code.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stages.common import is_complete, read_stage
from stages.config import ConfigError, run_cli

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
STAGE_MODULES = {"sft": "stages.sft", "reasoning_rl": "stages.reasoning_rl",
                 "thinking_fusion": "stages.thinking_fusion", "general_rl": "stages.general_rl",
                 "distill": "stages.distill"}
# The config key that takes the previous stage's output: distillation trains a student (its teacher stays as set).
INPUT_KEY = {"distill": "model.student.name_or_path"}


@dataclass
class Step:
    stage: str  # sft | reasoning_rl | thinking_fusion | general_rl | distill
    config: str  # the stage's YAML
    output: str  # dir name under run_dir
    args: list[str] = field(default_factory=list)  # extra key=value overrides for this stage
    launch: str | None = None  # this stage under accelerate launch with configs/accelerate/<launch>.yaml

    def __post_init__(self):
        if self.stage not in STAGE_MODULES:
            raise ValueError(f"stage {self.stage!r} is unknown; known: {list(STAGE_MODULES)}")


@dataclass
class PipelineConfig:
    run_dir: str
    steps: list[Step]
    start_model: str | None = None  # the first stage's input; None = what its own config says
    launch: str | None = None  # every stage under accelerate launch (configs/accelerate/<launch>.yaml)
    report: bool = True
    dry_run: bool = False

    def __post_init__(self):
        if not self.steps:
            raise ValueError("steps: give at least one stage")
        known = sorted(p.stem for p in LAUNCH_DIR.glob("*.yaml"))
        if self.launch is not None and self.launch not in known:
            raise ConfigError(f"launch: unknown launcher config {self.launch!r}; available: {known}")
        for i, step in enumerate(self.steps):
            if not Path(step.config).is_file():
                raise ConfigError(f"steps.{i}.config: {step.config} does not exist")
            if step.launch is not None and step.launch not in known:
                raise ConfigError(f"steps.{i}.launch: unknown launcher config {step.launch!r}; available: {known}")


def plan(cfg: PipelineConfig) -> list[tuple[Step, list[str], Path]]:
    """(step, command, output dir) for each stage, the previous stage's output as the next one's model."""
    run_dir, previous, out = Path(cfg.run_dir), cfg.start_model, []
    for step in cfg.steps:
        target = run_dir / step.output
        key = INPUT_KEY.get(step.stage, "model.name_or_path")
        overrides = [f"output_dir={target}"] + ([f"{key}={previous}"] if previous else []) + step.args
        launch = step.launch or cfg.launch
        runner = [sys.executable] if launch is None else [
            str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
            str((LAUNCH_DIR / f"{launch}.yaml").relative_to(LAUNCH_DIR.parents[1]))]
        out.append((step, [*runner, "-m", STAGE_MODULES[step.stage], "--config", step.config, *overrides], target))
        previous = str(target)
    return out


def main(cfg: PipelineConfig) -> Path:
    run_dir = Path(cfg.run_dir)
    steps = plan(cfg)
    print(f"[pipeline] {len(steps)} stages -> {run_dir}{' (dry run: nothing is run)' if cfg.dry_run else ''}",
          flush=True)
    for i, (step, cmd, target) in enumerate(steps, 1):
        state = "done, skipped" if is_complete(target) else "to run"
        print(f"[pipeline] {i}/{len(steps)} {step.stage} ({state}):\n  {shlex.join(_relative(cmd))}", flush=True)
        if cfg.dry_run or is_complete(target):
            continue
        t0 = time.time()
        code = subprocess.run(cmd).returncode
        if code != 0:
            print(f"[pipeline] {step.stage} failed (exit {code}); fix it and rerun: finished stages are kept",
                  file=sys.stderr, flush=True)
            raise SystemExit(code)
        print(f"[pipeline] {step.stage} finished in {time.time() - t0:.0f} s "
              f"(stage wall {read_stage(target).get('wall_seconds')} s)", flush=True)
    if cfg.report and not cfg.dry_run:
        from pipelines.report import write_report

        path = write_report(run_dir, [target for _, _, target in steps])
        print(f"[pipeline] report card: {path}", flush=True)
    return run_dir


def _relative(cmd: list[str]) -> list[str]:
    """The command as a user would type it from the repo root."""
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return ["python" if c == sys.executable else "accelerate" if c == accelerate else c for c in cmd]


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--dry-run" in argv:
        argv = [a for a in argv if a != "--dry-run"] + ["dry_run=true"]
    run_cli(main, PipelineConfig, __doc__, argv)
