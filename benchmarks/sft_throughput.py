"""Stage-1 trainer throughput vs plain TRL SFTTrainer (no packing), side by side in one run.

    make bench-sft                       # = python benchmarks/sft_throughput.py [--steps 30 --rounds 2]

Same model (the shipped nano base), same data (arithmetic train split), about the same number of sequences
per optimizer step. Useful tokens = non-padding tokens the model trains on (TRL's ``num_tokens``: the attention
mask sum, or the packed length when padding-free). Variants run alternately, ``--rounds`` times each; the
median is reported, with the ratio against the baseline. Run it alone on the machine: anything beside it
distorts the numbers (2 cores).

- ``baseline``  TRL defaults on CPU (use_cpu, fp32), packing off: pads each batch to its longest row;
  TRL's default activation checkpointing on.
- ``no_ckpt``   the baseline without activation checkpointing (shows what packing adds on top).
- ``stage1``    the stage-1 nano config: best-fit-decreasing packing into rows of ``--pack-length`` tokens, our
  PackedRowsCollator (rows stay separate, block-diagonal attention per row), no checkpointing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class CountingCollator:
    """Counts the real (non-padding) tokens of every batch it collates: the "useful tokens" of the benchmark."""

    def __init__(self, inner):
        self.inner, self.tokens = inner, 0

    def __call__(self, examples):
        self.tokens += sum(len(e["input_ids"]) for e in examples)
        return self.inner(examples)


def run_variant(name: str, model_dir: str, dataset, steps: int, seqs_per_step: int, pack_length: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from stages.packing import PackedRowsCollator

    common = dict(output_dir=f"/tmp/bench_sft_{name}", use_cpu=True, bf16=False, max_steps=steps, report_to="none",
                  logging_steps=steps, save_strategy="no", assistant_only_loss=True, max_length=1024,
                  learning_rate=1e-4, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    if name == "baseline":
        args = SFTConfig(**common, per_device_train_batch_size=seqs_per_step)
    elif name == "no_ckpt":
        args = SFTConfig(**common, per_device_train_batch_size=seqs_per_step, activation_checkpointing=False)
    else:  # stage1: packed rows of `pack_length` tokens; an example is ~270 tokens
        common["max_length"] = pack_length
        rows = max(1, round(seqs_per_step * 270 / pack_length))
        args = SFTConfig(**common, packing=True, per_device_train_batch_size=rows, activation_checkpointing=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    t0 = time.time()
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    if name == "stage1":  # what stages/sft.py does with packing on sdpa
        trainer.data_collator = PackedRowsCollator(tok.pad_token_id)
    trainer.data_collator = counter = CountingCollator(trainer.data_collator)
    prep = time.time() - t0
    out = trainer.train()
    runtime = out.metrics["train_runtime"]
    tokens = counter.tokens
    return {"variant": name, "useful_tokens": int(tokens), "train_seconds": round(runtime, 2),
            "prep_seconds": round(prep, 2), "tokens_per_s": round(tokens / runtime),
            "tokens_per_s_with_prep": round(tokens / (runtime + prep))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "checkpoints" / "nano-moe-base"))
    ap.add_argument("--rows", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--seqs-per-step", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pack-length", type=int, default=512, help="packed row length (the stage's max_length)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()

    import torch

    from data_recipes.arithmetic import build

    torch.set_num_threads(a.threads)
    data = build(n=a.rows, seed=0, difficulty=2).select_columns(["messages"])
    results: dict[str, list[dict]] = {"baseline": [], "no_ckpt": [], "stage1": []}
    for r in range(a.rounds):
        for name in results:
            res = run_variant(name, a.model, data, a.steps, a.seqs_per_step, a.pack_length)
            results[name].append(res)
            print(f"round {r + 1} {name:<9} {res['tokens_per_s']:>7} useful tok/s "
                  f"({res['useful_tokens']} tokens in {res['train_seconds']} s; prep {res['prep_seconds']} s)",
                  flush=True)
    base = statistics.median(x["tokens_per_s"] for x in results["baseline"])
    base_prep = statistics.median(x["tokens_per_s_with_prep"] for x in results["baseline"])
    summary = []
    print(f"\n{'variant':<10}{'useful tok/s':>14}{'x baseline':>12}{'incl. prep':>12}{'x baseline':>12}")
    for name, runs in results.items():
        tps = statistics.median(x["tokens_per_s"] for x in runs)
        tpp = statistics.median(x["tokens_per_s_with_prep"] for x in runs)
        summary.append({"variant": name, "tokens_per_s": tps, "ratio": round(tps / base, 2),
                        "tokens_per_s_with_prep": tpp, "ratio_with_prep": round(tpp / base_prep, 2)})
        print(f"{name:<10}{tps:>14.0f}{tps / base:>12.2f}{tpp:>12.0f}{tpp / base_prep:>12.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"runs": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
