"""Where the nano models go wrong on held-out arithmetic: plan errors vs digit errors, per model.

    python benchmarks/arithmetic_errors.py runs/nano/01_sft runs/nano/02_reasoning_rl [--n 200]

Each model answers the evaluation's held-out problems greedily in thinking mode (the gold is a thinking
trace), as `stages/evaluate.py` does (same recipe, seed and checker). Every wrong reply is compared line by line
with the problem's gold trace and classified at the first line where it leaves it
(`data_recipes.arithmetic.error_kind`): a wrong step (another operation or operand than the story's), stopping
early, going on after the last step, a digit of the working, or other. Printed: one row per model, with the mean
number of lines of its replies. Run it alone on the machine (2 cores).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = ("wrong_step", "early_stop", "late_stop", "digit", "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model dirs (stage outputs)")
    parser.add_argument("--n", type=int, default=200, help="held-out problems (the evaluation uses 200)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from data_recipes.arithmetic import error_kind
    from rewards import get_reward
    from stages.common import ModelSettings, RecipeSpec, load_model, load_tokenizer, set_threads
    from stages.evaluate import EvalSettings, eval_rows
    from stages.generation import SamplingSettings, generate

    set_threads(args.threads)
    settings = EvalSettings(
        data=RecipeSpec(name="arithmetic", kwargs={"n": args.n, "seed": 0, "difficulty": 2, "split": "eval"}),
        sampling=SamplingSettings(do_sample=False, max_new_tokens=512))
    ds, prompts = eval_rows(settings, 0)
    gold = [msgs[-1]["content"] for msgs in ds["messages"]]
    verify = get_reward("math_accuracy")
    print(f"{'model':40s} {'accuracy':>8s} " + " ".join(f"{k:>10s}" for k in KINDS) + f" {'lines':>6s}")
    for path in args.models:
        model = load_model(ModelSettings(name_or_path=path))
        replies = generate(model, load_tokenizer(path), prompts, enable_thinking=True,
                           sampling=settings.sampling, batch_size=100)
        scores = verify(replies, solution=list(ds["solution"]))
        kinds = collections.Counter(error_kind(r, g) for r, g, s in zip(replies, gold, scores) if s != 1.0)
        lines = sum(r.count("\n") + 1 for r in replies) / len(replies)
        accuracy = sum(s == 1.0 for s in scores) / len(scores)
        print(f"{path:40s} {accuracy:8.3f} " + " ".join(f"{kinds[k]:10d}" for k in KINDS) + f" {lines:6.1f}")


if __name__ == "__main__":
    main()
