"""Build and pretrain the embedded default: a nano Qwen3(-MoE) base model and its tokenizer, offline, on CPU.

    python -m stages.nano_base --config configs/nano/moe-base.yaml        # or: make nano-base

Phases: tokenizer (byte-level BPE, one token per digit, Qwen3's special tokens) -> model (random init from the
architecture in the config) -> pretraining on the synthetic arithmetic corpus (data_recipes.pretrain_corpus)
-> probe (greedy accuracy on single worked operations) -> save. Same seed, same tokenizer and weights.

Why our own loop and not a Trainer: pretraining here is fixed-length packed blocks with no padding, masks or
collation, and the plain loop runs at the raw forward/backward speed of the model; a stopped run resumes from
``<output_dir>.partial/``.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stages.common import check_writable, now, publish_dir, set_threads, versions, write_json_atomic
from stages.config import run_cli, to_dict


@dataclass
class TokenizerSettings:
    vocab_size: int = 1024
    corpus_docs: int = 20000  # documents of the pretraining corpus the BPE is trained on
    problem_docs: int = 2000  # rendered training-split word problems, so their words get tokens too


@dataclass
class PretrainSettings:
    steps: int = 1500
    batch_size: int = 32
    block_size: int = 256
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    router_aux_loss_coef: float = 0.001
    log_every: int = 25
    checkpoint_every: int = 200
    probe_items: int = 200


@dataclass
class NanoBaseConfig:
    output_dir: str
    kind: Literal["moe", "dense"] = "moe"
    seed: int = 0
    threads: int = 2
    architecture: dict[str, Any] = field(default_factory=dict)  # Qwen3MoeConfig / Qwen3Config keyword arguments
    tokenizer: TokenizerSettings = field(default_factory=TokenizerSettings)
    corpus_max_digits: int = 4
    train: PretrainSettings = field(default_factory=PretrainSettings)

    def __post_init__(self):
        # HF configs accept any keyword silently; a typo here would be a silently different model.
        config_cls = _config_class(self.kind)
        known = set(inspect.signature(config_cls.__init__).parameters) | {"head_dim", "num_experts"}
        for k in self.architecture:
            if k not in known:
                raise ValueError(f"architecture.{k}: not a {config_cls.__name__} argument")


def main(cfg: NanoBaseConfig) -> Path:

    set_threads(cfg.threads)
    out = check_writable(cfg.output_dir, "output_dir")
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(cfg.tokenizer, cfg.seed)
    model = build_model(cfg.kind, cfg.architecture, tokenizer, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[nano-base] {cfg.kind} model: {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}", flush=True)

    log = pretrain(model, tokenizer, cfg, partial)
    probe = probe_accuracy(model, tokenizer, cfg.train.probe_items, cfg.seed)
    print(f"[nano-base] probe accuracy on single worked operations: {probe['accuracy']:.3f}", flush=True)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.output_router_logits = False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "training_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    write_json_atomic(tmp / "base.json", {
        "what": f"nano {cfg.kind} base, pretrained by stages/nano_base.py on data_recipes/pretrain_corpus.py",
        "parameters": n_params,
        "config": to_dict(cfg),
        "probe": probe,
        "train_seconds": round(sum(r.get("seconds", 0) for r in log), 1),
        "tokens_seen": log[-1]["tokens"] if log else 0,
        "finished_at": now(),
        "versions": versions(),
    })
    publish_dir(tmp, out)
    shutil.rmtree(partial, ignore_errors=True)
    print(f"[nano-base] saved to {out}", flush=True)
    return out


# ---------------------------------------------------------------- tokenizer

def tokenizer_corpus(settings: TokenizerSettings, seed: int) -> list[str]:
    from data_recipes import arithmetic, pretrain_corpus

    docs = pretrain_corpus.documents(seed=seed)
    texts = [next(docs) for _ in range(settings.corpus_docs)]
    problems = arithmetic.build(n=settings.problem_docs, seed=seed, difficulty=2, split="train")
    texts += [m["content"] for row in problems["messages"] for m in row]
    return texts


def build_tokenizer(settings: TokenizerSettings, seed: int):
    """Byte-level BPE trained on the synthetic corpus; digits always split into single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from data_recipes.chat_template import CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, TAG_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        special_tokens=SPECIAL_TOKENS + TAG_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(settings, seed), trainer=trainer)
    # The trainer reserves the first ids for all these tokens but marks them all special. Think/tool tags are
    # ordinary added tokens in Qwen3 (decoding with skip_special_tokens keeps them): unmark them.
    spec = json.loads(tok.to_str())
    for added in spec["added_tokens"]:
        added["special"] = added["content"] in SPECIAL_TOKENS
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:2]})  # <|im_start|>
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    fast.padding_side = "left"  # generation pads on the left; trainers set their own side
    return fast


# ---------------------------------------------------------------- model

def _config_class(kind: str):
    from transformers import Qwen3Config, Qwen3MoeConfig

    return Qwen3MoeConfig if kind == "moe" else Qwen3Config


def build_model(kind: str, architecture: dict, tokenizer, seed: int):
    """A randomly initialised Qwen3MoeForCausalLM / Qwen3ForCausalLM (deterministic under ``seed``)."""
    import torch
    from transformers import Qwen3ForCausalLM, Qwen3MoeForCausalLM

    model_cls = Qwen3MoeForCausalLM if kind == "moe" else Qwen3ForCausalLM
    config = _config_class(kind)(
        **architecture,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return model_cls(config)


# ---------------------------------------------------------------- pretraining

def packed_blocks(tokenizer, seed: int, block_size: int, batch_size: int, max_digits: int):
    """Endless batches [batch, block_size] of documents joined by <|endoftext|> (no padding anywhere)."""
    import torch

    from data_recipes.pretrain_corpus import documents

    docs = documents(seed=seed, max_digits=max_digits)
    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    buf: list[int] = []
    need = block_size * batch_size
    while True:
        while len(buf) < need:
            batch = [next(docs) for _ in range(256)]
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                buf += ids + [sep]
        chunk, buf = buf[:need], buf[need:]
        yield torch.tensor(chunk).view(batch_size, block_size)


def pretrain(model, tokenizer, cfg: NanoBaseConfig, partial: Path) -> list[dict]:
    import torch

    t = cfg.train
    model.train()
    if hasattr(model.config, "output_router_logits"):
        model.config.output_router_logits = True  # adds the router load-balancing loss to the LM loss
        model.config.router_aux_loss_coef = t.router_aux_loss_coef
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.learning_rate, betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < t.warmup_steps:
            return t.learning_rate * (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return t.learning_rate * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    step, log = 0, []
    ckpt = partial / "last.pt"
    # The data stream is deterministic from (seed, step): on resume it is regenerated and skipped forward.
    batches = packed_blocks(tokenizer, cfg.seed, t.block_size, t.batch_size, cfg.corpus_max_digits)
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, log = state["step"], state["log"]
        for _ in range(step):
            next(batches)
        print(f"[nano-base] resumed from {ckpt} at step {step}", flush=True)

    t0, tokens_since = time.time(), 0
    while step < t.steps:
        x = next(batches)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_since += x.numel()
        if step % t.log_every == 0 or step == t.steps:
            dt = time.time() - t0
            rec = {"step": step, "loss": round(loss.item(), 4), "lr": lr_at(step - 1),
                   "tokens": step * x.numel(), "tokens_per_s": round(tokens_since / dt), "seconds": round(dt, 2)}
            log.append(rec)
            print(f"[nano-base] step {step}/{t.steps} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                  f"{rec['tokens_per_s']} tok/s", flush=True)
            t0, tokens_since = time.time(), 0
        if step % t.checkpoint_every == 0 and step < t.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "log": log}, tmp)
            tmp.replace(ckpt)
    model.eval()
    return log


def probe_accuracy(model, tokenizer, n: int, seed: int) -> dict:
    """Greedy-complete ``Compute a op b.`` on fresh operations; correct when the final line is right."""
    import torch

    from data_recipes.arithmetic import SYMBOL, apply
    from data_recipes.pretrain_corpus import _operation

    rng = random.Random(f"probe/{seed}")
    items = [_operation(rng, 3) for _ in range(n)]
    prompts = [f"Compute {a} {SYMBOL[op]} {b}.\n" for a, op, b in items]
    correct = 0
    model.config.output_router_logits = False
    for i in range(0, n, 50):
        enc = tokenizer(prompts[i:i + 50], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            outs = model.generate(**enc, max_new_tokens=160, do_sample=False,
                                  eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                                  pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(outs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for (a, op, b), text in zip(items[i:i + 50], texts):
            correct += f"{a} {SYMBOL[op]} {b} = {apply(op, a, b)}" in text.split("\n")
    return {"items": n, "correct": correct, "accuracy": correct / n if n else 0.0}


if __name__ == "__main__":
    run_cli(main, NanoBaseConfig, __doc__)
