"""Generation with the copy-free KV cache (stages/kv_cache.py) vs transformers' DynamicCache, side by side.

    python benchmarks/generation_speed.py [--model runs/nano/01_sft] [--rows 64] [--rounds 2]

Same model, same prompts (held-out arithmetic problems in the chat template, thinking mode), same decoding:
greedy as the evaluation decodes, and sampled at T 0.8 with a fixed seed as the GRPO rollouts do. Each run
stops at ``<|im_end|>`` or ``--max-new-tokens``. The two caches must produce the same tokens (checked); the
variants run alternately, ``--rounds`` times each, and the median wall time is reported with the ratio.
Run it alone on the machine: anything beside it distorts the numbers (2 cores).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = REPO / "runs/nano/01_sft"
    parser.add_argument("--model", default=str(default_model if default_model.exists()
                                                 else REPO / "checkpoints/nano-moe-base"))
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

    from data_recipes.arithmetic import build
    from stages.kv_cache import GrowingCache

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    model.config.output_router_logits = False
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.padding_side = "left"
    rows = build(n=args.rows, seed=0, difficulty=2, split="eval")
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    capacity = batch["input_ids"].shape[1] + args.max_new_tokens
    caches = {"dynamic": lambda: DynamicCache(config=model.config),
              "growing": lambda: GrowingCache(model.config, capacity)}
    decodings = {"greedy": {"do_sample": False, "temperature": None, "top_p": None, "top_k": None},
                 "sampled": {"do_sample": True, "temperature": 0.8, "top_p": 1.0, "top_k": 0}}

    results = {}
    for decoding, kwargs in decodings.items():
        times, outputs = {name: [] for name in caches}, {}
        for _ in range(args.rounds):
            for name, make in caches.items():
                torch.manual_seed(0)
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = model.generate(**batch, max_new_tokens=args.max_new_tokens, eos_token_id=stop,
                                         pad_token_id=tok.pad_token_id, past_key_values=make(), **kwargs)
                times[name].append(time.perf_counter() - t0)
                outputs[name] = out
        same = torch.equal(outputs["dynamic"], outputs["growing"])
        new = outputs["growing"][:, batch["input_ids"].shape[1]:]
        tokens = int((new != tok.pad_token_id).sum())
        med = {name: statistics.median(t) for name, t in times.items()}
        results[decoding] = {"seconds": {k: round(v, 2) for k, v in med.items()}, "new_tokens": tokens,
                             "decode_steps": new.shape[1], "same_tokens": same,
                             "speedup": round(med["dynamic"] / med["growing"], 2)}
        print(f"{decoding:8s} dynamic {med['dynamic']:6.2f} s  growing {med['growing']:6.2f} s  "
              f"speedup {results[decoding]['speedup']:.2f}x  ({args.rows} rows, {new.shape[1]} steps, "
              f"{tokens} new tokens, same tokens: {same})", flush=True)
        if not same:
            raise SystemExit("the two caches generated different tokens")
    print(json.dumps({"model": args.model, "rows": args.rows, "threads": args.threads, **results}, indent=1))


if __name__ == "__main__":
    main()
