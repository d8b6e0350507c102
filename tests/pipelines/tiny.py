"""A pipeline of all four stages shrunk to seconds each, on the tiny test model (for the pipeline tests)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMON = ["threads=1", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=8", "eval.batch_size=4"]
FOLLOW = ["follow.data=[{name: arithmetic, kwargs: {n: 2, seed: 0, difficulty: 1, split: eval}}]",
          "follow.single_turn=3", "follow.dialogs=1", "follow.max_turns=2", "follow.max_new_tokens=8"]
STEPS = [
    ("sft", "configs/stage1_sft/nano.yaml", "01_sft", [
        *COMMON, "data.0.kwargs.n=48", "trainer.max_steps=12", "trainer.save_steps=2",
        "trainer.per_device_train_batch_size=2", "trainer.logging_steps=1"]),
    ("reasoning_rl", "configs/stage2_grpo/nano.yaml", "02_reasoning_rl", [
        *COMMON, "data.0.kwargs={n: 32, seed: 1, difficulty: 1}", "trainer.max_steps=6",
        "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.max_completion_length=8",
        "trainer.save_steps=1", "dynamic_sampling.max_refill_rounds=1"]),
    ("thinking_fusion", "configs/stage3_fusion/nano.yaml", "03_fusion", [
        *COMMON, *FOLLOW, "rejection.queries.0.kwargs.n=4", "rejection.samples_per_query=2",
        "rejection.sampling.max_new_tokens=16", "thinking=[{name: arithmetic, kwargs: {n: 8, seed: 5, difficulty: 1}}]",
        "non_thinking=[{name: instructions, kwargs: {n: 8, seed: 0, tasks: [sort_numbers, count_words]}}]",
        "multi_turn.dialogs=3", "budgets=[0, null]", "trainer.max_steps=8", "trainer.save_steps=2",
        "trainer.per_device_train_batch_size=2", "trainer.logging_steps=1"]),
    ("general_rl", "configs/stage4_general/nano.yaml", "04_general", [
        *COMMON, *FOLLOW, "data=[{name: instructions, kwargs: {n: 8, seed: 0, tasks: [sort_numbers, tool_calc]}}]",
        "task_eval.data=[{name: instructions, kwargs: {n: 2, seed: 0, split: eval, tasks: [sort_numbers, tool_calc]}}]",
        "task_eval.sampling.max_new_tokens=8", "trainer.max_steps=6", "trainer.per_device_train_batch_size=8",
        "trainer.max_completion_length=8", "trainer.save_steps=1", "anchor.data.0.kwargs.n=8",
        "anchor.batch_size=2"]),
]


def pipeline_yaml(tmp_path: Path, model_dir: Path) -> Path:
    """A pipeline config in ``tmp_path`` running the tiny steps from ``model_dir``."""
    import yaml

    cfg = {"run_dir": str(tmp_path / "run"), "start_model": str(model_dir),
           "steps": [{"stage": s, "config": str(REPO / c), "output": o, "args": a} for s, c, o, a in STEPS]}
    path = tmp_path / "pipeline.yaml"
    path.write_text("# tiny pipeline for tests\n" + yaml.safe_dump(cfg))
    return path
