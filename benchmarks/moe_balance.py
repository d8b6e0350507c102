"""Micro-batch vs global-batch load balancing on the nano MoE, side by side in one run.

    python benchmarks/moe_balance.py [--steps 60 --accumulation 32 --coef 0.01]

Stage 1 (stages/sft.py, the real entry point) from the shipped nano base, twice with the same seed and data:
``moe.balance=micro`` (transformers' per-micro-batch loss) and ``moe.balance=global`` (frequencies accumulated
over the optimizer step's micro-batches). Each micro-batch is ONE unpacked sequence — the setting where the
micro loss is "nearly per sequence" and forces every sequence to spread over all experts. The data mixes four
domains (arithmetic with thinking, arithmetic answered directly, general instructions, code).

Reported per variant: the training loss (mean of the last quarter of logged steps), expert imbalance and router
entropy over training, and expert specialisation on held-out text of each domain — the mutual information
between a token's domain and its expert, per layer, in bits (stages/moe.py: expert_specialisation), for the
trained model and the starting one. Results go to ``<out>/results.json`` and ``<out>/expert_load.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DOMAINS = {  # name -> (recipe, kwargs); the train split, then held-out rows with another seed
    "arithmetic_think": ("arithmetic", {"difficulty": 2}),
    "arithmetic_direct": ("arithmetic", {"difficulty": 2, "answer_style": "direct"}),
    "instructions": ("instructions", {"think": False}),
    "code": ("code_tasks", {"verify": False}),
}


def recipe_yaml(n: int, seed: int) -> str:
    parts = []
    for recipe, kwargs in DOMAINS.values():
        split = {"split": "train"} if recipe in ("arithmetic", "instructions") else {}
        kw = {"n": n, "seed": seed, **kwargs, **split}
        parts.append(json.dumps({"name": recipe, "kwargs": kw}))  # JSON is YAML
    return "[" + ", ".join(parts) + "]"


def held_out_texts(tokenizer, n: int) -> dict[str, list[str]]:
    from data_recipes import get_recipe

    texts = {}
    for name, (recipe, kwargs) in DOMAINS.items():
        split = {"split": "eval"} if recipe in ("arithmetic", "instructions") else {}
        rows = get_recipe(recipe)(n=n, seed=99, **kwargs, **split)
        texts[name] = [tokenizer.apply_chat_template(m, tokenize=False) for m in rows["messages"]]
    return texts


def run(variant: str, args, out_root: Path) -> dict:
    from stages import sft
    from stages.config import load_config

    out = out_root / variant
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(sft.SFTStageConfig, REPO / "configs/stage1_sft/nano.yaml", [
        f"output_dir={out}", f"threads={args.threads}", f"moe.balance={variant}",
        *([f"moe.coef={args.coef}"] if args.coef is not None else []),
        f"data={recipe_yaml(args.rows_per_domain, 0)}",
        "filters.enabled=[wrong_answer, over_length]",  # instruction and code rows have no math answer
        "eval.data.kwargs.n=50", "eval.modes=[think]", "eval.batch_size=50",
        "trainer.packing=false", "trainer.per_device_train_batch_size=1",
        f"trainer.gradient_accumulation_steps={args.accumulation}", f"trainer.max_steps={args.steps}",
        "trainer.learning_rate=1e-3", "trainer.logging_steps=5", "trainer.save_steps=1000",
    ])
    t0 = time.time()
    sft.main(cfg)
    seconds = time.time() - t0
    record = json.loads((out / "stage.json").read_text())
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    tail = losses[-max(1, len(losses) // 4):] or [float("nan")]
    moe = record["metrics"]["moe"]
    return {"seconds": round(seconds, 1), "final_loss_mean": round(sum(tail) / len(tail), 4),
            "loss_curve": losses, "imbalance": moe["imbalance"], "router_entropy": moe["router_entropy"],
            "load_share": moe["load_share"], "accuracy_think": record["metrics"]["eval"]["think"]["accuracy"],
            "model_dir": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--accumulation", type=int, default=32, help="micro-batches (sequences) per optimizer step")
    ap.add_argument("--rows-per-domain", type=int, default=800)
    ap.add_argument("--coef", type=float, default=None, help="balance coefficient (default: the model's own)")
    ap.add_argument("--held-out", type=int, default=64, help="held-out texts per domain for specialisation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench/moe_balance")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stages.common import set_threads
    from stages.moe import expert_specialisation, plot_expert_load

    set_threads(args.threads)
    out_root = REPO / args.out
    out_root.mkdir(parents=True, exist_ok=True)
    base = REPO / "checkpoints/nano-moe-base"
    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = held_out_texts(tokenizer, args.held_out)
    results = {"settings": vars(args),
               "base": {"specialisation": expert_specialisation(
                   AutoModelForCausalLM.from_pretrained(base), tokenizer, texts)}}
    for variant in ("micro", "global"):
        r = run(variant, args, out_root)
        model = AutoModelForCausalLM.from_pretrained(r["model_dir"])
        r["specialisation"] = expert_specialisation(model, tokenizer, texts)
        results[variant] = r
        (out_root / "results.json").write_text(json.dumps(results, indent=1))
        plot_expert_load({"load_share": r["load_share"], "balance": variant}, out_root / f"expert_load_{variant}.png")

    print(f"\n{'':18}{'micro':>12}{'global':>12}")
    for key, label in [("final_loss_mean", "train loss"), ("accuracy_think", "accuracy")]:
        print(f"{label:18}{results['micro'][key]:>12}{results['global'][key]:>12}")
    for key, label in [("imbalance", "max/mean load"), ("router_entropy", "router entropy")]:
        print(f"{label:18}{max(results['micro'][key]):>12}{max(results['global'][key]):>12}")
    mi = {v: results[v]["specialisation"]["mean_mutual_information_bits"] for v in ("base", "micro", "global")}
    print(f"{'MI(domain;expert)':18}{mi['micro']:>12}{mi['global']:>12}   (base {mi['base']} bits)")
    print(f"{'seconds':18}{results['micro']['seconds']:>12}{results['global']['seconds']:>12}")
    print(f"results: {out_root / 'results.json'}")


if __name__ == "__main__":
    main()
