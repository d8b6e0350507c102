"""Evaluate a model dir on a held-out split, in thinking and non-thinking mode, with the stage-2 checker.

    make eval MODEL=runs/nano/01_sft            # = python -m stages.evaluate --config configs/eval/nano.yaml \\
                                                #       model.name_or_path=runs/nano/01_sft

Per mode: accuracy (``math_accuracy``, the same verifier stage 2 optimises), the share of well-formed outputs
(``think_format``: ``<think>…</think>`` then a non-empty answer) and the mean response length in tokens. The
table is printed; when the model dir is a finished stage, the numbers go into its ``stage.json`` under
``metrics.eval`` (rewritten atomically).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from stages.common import (
    ModelSettings,
    RecipeSpec,
    build_data,
    is_complete,
    load_model,
    load_tokenizer,
    read_stage,
    set_threads,
    write_json_atomic,
)
from stages.config import run_cli
from stages.generation import SamplingSettings, generate

MODES = ("think", "no_think")


@dataclass
class EvalSettings:
    data: RecipeSpec = field(default_factory=lambda: RecipeSpec(
        name="arithmetic", kwargs={"n": 200, "seed": 0, "difficulty": 2, "split": "eval"}))
    modes: list[str] = field(default_factory=lambda: list(MODES))
    verifier: str = "math_accuracy"
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    batch_size: int = 64

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"eval.modes: unknown mode {bad[0]!r}; use {list(MODES)}")


@dataclass
class EvalConfig:
    model: ModelSettings
    eval: EvalSettings = field(default_factory=EvalSettings)
    threads: int = 2
    write: bool = True  # write the numbers into the model dir's stage.json when it has one


def evaluate(model, tokenizer, settings: EvalSettings, seed: int = 0) -> dict:
    """{mode: {accuracy, well_formed, mean_tokens, n, seconds}} on the eval recipe's rows."""
    from rewards import get_reward

    ds = build_data([settings.data], seed, key="eval.data")
    if "solution" not in ds.column_names:
        raise ValueError(f"eval.data ({settings.data.name}): needs a 'solution' column with gold answers")
    prompts = [[m for m in msgs if m["role"] != "assistant"] for msgs in ds["messages"]]
    verify, well_formed = get_reward(settings.verifier), get_reward("think_format", require_think=True)
    results = {}
    for mode in settings.modes:
        t0 = time.time()
        texts = generate(model, tokenizer, prompts, enable_thinking=mode == "think", sampling=settings.sampling,
                         batch_size=settings.batch_size)
        scores = verify(texts, solution=list(ds["solution"]), prompts=prompts)
        forms = well_formed(texts)
        judged = [s for s in scores if s is not None]
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        results[mode] = {
            "accuracy": round(sum(judged) / len(judged), 4) if judged else None,
            "well_formed": round(sum(f for f in forms if f is not None) / len(texts), 4),
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
            "n": len(texts),
            "seconds": round(time.time() - t0, 1),
            "example": texts[0][:600],
        }
    return results


def format_table(results: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'mode':<10}{'accuracy':>10}{'well-formed':>13}{'mean tokens':>13}{'n':>6}")
    for mode, r in results.items():
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        lines.append(f"{mode:<10}{acc:>10}{r['well_formed']:>13.3f}{r['mean_tokens']:>13.1f}{r['n']:>6}")
    return "\n".join(lines)


def main(cfg: EvalConfig) -> dict:
    set_threads(cfg.threads)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_model(cfg.model)
    results = evaluate(model, tokenizer, cfg.eval)
    print(format_table(results, f"evaluation of {cfg.model.name_or_path}"), flush=True)
    path = Path(cfg.model.name_or_path)
    if cfg.write and is_complete(path):
        record = read_stage(path)
        record.setdefault("metrics", {})["eval"] = results
        write_json_atomic(path / "stage.json", record)
        print(f"written to {path / 'stage.json'} (metrics.eval)")
    return results


if __name__ == "__main__":
    run_cli(main, EvalConfig, __doc__)
