"""Stage 1 — long-CoT cold start: supervised fine-tuning on verified, filtered chain-of-thought data.

    make stage1                                   # nano default: configs/stage1_sft/nano.yaml
    python -m stages.sft --config configs/stage1_sft/nano.yaml trainer.learning_rate=5e-4 data.0.kwargs.n=2000

Phases: config -> data (recipes, mixed) -> filters (report saved) -> model (+LoRA) -> TRL SFTTrainer
(assistant-only loss, packing, MoE router aux loss) -> save (merged model, tokenizer, chat template) ->
evaluate -> ``stage.json`` last. Rerunning a finished stage does nothing; rerunning an interrupted one resumes
from its last checkpoint in ``<output_dir>/checkpoints``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_recipes.filters import FilterSettings, apply_filters
from stages.common import (
    ModelSettings,
    RecipeSpec,
    barrier,
    begin_stage,
    broadcast_from_main,
    build_data,
    finish_stage,
    is_main_process,
    is_moe,
    load_model,
    load_tokenizer,
    lora_config,
    quantization_config,
    save_and_reload,
    train_metrics,
    train_resumable,
    trainer_defaults,
    whole_weights,
    write_json_atomic,
)
from stages.config import build_trainer_args, run_cli, to_dict
from stages.evaluate import EvalSettings, evaluate, format_table
from stages.generation import generate
from stages.mode_loss import mode_decision, mode_loss_trainer
from stages.moe import MoESettings, finish_metrics, make_trainer
from stages.packing import PackedRowsCollator

STAGE = "sft"


@dataclass
class SFTStageConfig:
    output_dir: str
    model: ModelSettings
    data: list[RecipeSpec]
    trainer: dict[str, Any] = field(default_factory=dict)  # TRL SFTConfig settings, passed through unchanged
    filters: FilterSettings = field(default_factory=FilterSettings)
    drop_too_easy: bool = False  # query filter: drop problems the model solves without thinking (costs a pass)
    eval: EvalSettings = field(default_factory=EvalSettings)
    eval_before: bool = False  # also evaluate the starting model
    moe: MoESettings = field(default_factory=MoESettings)  # MoE load balancing (stages/moe.py)
    seed: int = 0
    threads: int = 2


def main(cfg: SFTStageConfig) -> Path:
    from trl import SFTConfig

    out = begin_stage(cfg.output_dir, cfg.threads, "sft")
    if out is None:
        return Path(cfg.output_dir)
    t_start = time.time()
    args = build_trainer_args(SFTConfig, trainer_defaults(cfg.trainer), "", output_dir=str(out / "checkpoints"),
                              seed=cfg.seed, max_length=cfg.model.max_length)
    quantization_config(cfg.model.lora)  # QLoRA without bitsandbytes or a GPU fails now, not after the filters

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    train, data_report = prepare_data(cfg, tokenizer)
    model = load_model(cfg.model)
    if cfg.model.lora:
        lora_config(cfg.model.lora, model)  # a LoRA target that matches nothing fails now, before anything is written
    if cfg.drop_too_easy:
        with whole_weights(model):  # generation needs whole weights: a no-op unless ZeRO-3 sharded them
            train, data_report["too_easy"] = drop_too_easy(train, model, tokenizer, cfg.eval)
    if len(train) == 0:
        raise ValueError(f"[sft] no training rows left after filtering: {json.dumps(data_report['dropped'])}")
    dropped_long = data_report["dropped"].get("over_length")  # None: the over_length filter is off
    truncated = count_over_length(train, tokenizer, cfg.model.max_length, "sft") if dropped_long is None else 0
    data_report["over_length"] = {"max_length": cfg.model.max_length, "dropped": dropped_long or 0,
                                  "truncated": truncated}
    if is_main_process():  # under a launcher every process builds the same rows; one writes and evaluates
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "data_report.json", data_report)
        print(f"[sft] data: {data_report['rows_kept']} of {data_report['rows_in']} rows kept; dropped "
              f"{data_report['dropped']}", flush=True)

    before = None
    if cfg.eval_before:
        with whole_weights(model):  # generation needs whole weights: a no-op unless ZeRO-3 sharded them
            before = evaluate(model, tokenizer, cfg.eval, cfg.seed) if is_main_process() else None
    if before:
        print(format_table(before, "[sft] before training"), flush=True)
    barrier()  # the others wait here, not in the trainer's first collective (it times out sooner)

    model, trainer, log, train_seconds = train_sft(model, tokenizer, train, args, cfg.model, out, "sft",
                                                      cfg.moe)
    if not is_main_process():  # the main process evaluates and writes the stage; wait for it (its barrier below)
        barrier()
        return out
    after = evaluate(model, tokenizer, cfg.eval, cfg.seed)
    print(format_table(after, f"[sft] evaluation of {out}"), flush=True)

    finish_stage(out, {
        "stage": STAGE,
        "input_model": cfg.model.name_or_path,
        "config": to_dict(cfg),
        "data": {"rows": len(train), "fingerprint": train._fingerprint, "report": "data_report.json",
                 "over_length": data_report["over_length"]},
        "metrics": {
            "train": {**train_metrics(trainer, log, train_seconds), "moe": is_moe(model)},
            **({"moe": trainer.moe_summary} if trainer.moe_summary else {}),
            "eval": after,
            **({"eval_before": before} if before else {}),
        },
        "wall_seconds": round(time.time() - t_start, 1),
    })
    print(f"[sft] done: {out} ({time.time() - t_start:.0f} s)", flush=True)
    barrier()
    return out


def train_sft(model, tokenizer, train, args, settings: ModelSettings, out: Path, tag: str,
              moe: MoESettings | None = None, mode_loss_weight: float = 0.0):
    """TRL's SFTTrainer on the ``messages`` rows (assistant-only loss, packing, the MoE balance loss of ``moe``,
    ``mode_loss_weight`` × the thinking-mode decision loss of mode_loss.py), resumable; the trained model is saved
    to ``out`` and loaded back. Returns (model, trainer, log history, training seconds); ``trainer.moe_summary``
    holds the expert metrics of an MoE model (else None)."""
    from trl import SFTTrainer

    peft_config = lora_config(settings.lora, model) if settings.lora else None
    trainer_cls = SFTTrainer
    if mode_loss_weight:
        trainer_cls = mode_loss_trainer(SFTTrainer, mode_loss_weight, mode_decision(tokenizer))
    trainer = make_trainer(trainer_cls, model, args, moe, divide_by_accumulation=False,
                           train_dataset=train.select_columns(["messages"]), processing_class=tokenizer,
                           peft_config=peft_config)
    if args.packing and settings.attn_implementation != "flash_attention_2":
        # TRL flattens a packed batch into one sequence (right for flash-attention varlen kernels only) and refuses
        # a custom collator in its constructor; the dataloader is built at train(), so swap it here (packing.py).
        trainer.data_collator = PackedRowsCollator(tokenizer.pad_token_id)
    log, seconds = train_resumable(trainer, out, tag)
    trainer.moe_summary = finish_metrics(trainer, out)
    return save_and_reload(trainer, tokenizer, out, settings), trainer, log, seconds


def prepare_data(cfg: SFTStageConfig, tokenizer):
    """Training rows after the filters, and the filter report."""
    train = build_data(cfg.data, cfg.seed)
    return filter_rows(train, cfg.filters, cfg.eval.data, tokenizer, cfg.model.max_length, cfg.seed)


def filter_rows(rows, filters: FilterSettings, eval_data: RecipeSpec, tokenizer, max_length: int, seed: int):
    """Stage 1's filters on ``messages`` rows, decontaminated against the eval recipe's prompts and measured in
    the tokenizer's chat rendering: (kept rows, report). Stage 3 runs its rejection samples through it too."""
    eval_rows = build_data([eval_data], seed, key="eval.data")
    eval_prompts = ["\n".join(m["content"] for m in msgs if m["role"] != "assistant")
                    for msgs in eval_rows["messages"]]

    def count_tokens(messages: list[dict]) -> int:
        return chat_tokens(tokenizer, messages)

    return apply_filters(rows, filters, eval_prompts=eval_prompts, count_tokens=count_tokens, max_tokens=max_length)


def chat_tokens(tokenizer, messages: list[dict]) -> int:
    """Length in tokens of a conversation as the trainer sees it (the chat template's rendering)."""
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def count_over_length(rows, tokenizer, max_length: int, tag: str) -> int:
    """How many ``messages`` rows are longer than ``max_length`` tokens. TRL truncates them (a long-CoT trace
    loses its end, the answer included), so a stage that keeps them says so."""
    n = sum(chat_tokens(tokenizer, messages) > max_length for messages in rows["messages"])
    if n:
        print(f"[{tag}] warning: {n} of {len(rows)} training rows are longer than model.max_length={max_length} "
              f"tokens and will be truncated; raise model.max_length or enable the over_length filter to drop "
              f"them", flush=True)
    return n


def drop_too_easy(train, model, tokenizer, settings: EvalSettings):
    """Qwen3's query filter: drop problems the model already answers correctly without thinking."""
    from rewards import get_reward

    keep = None
    if is_main_process():  # generation may sample: one process decides, so that every process trains on the same rows
        prompts = [[m for m in msgs if m["role"] != "assistant"] for msgs in train["messages"]]
        texts = generate(model, tokenizer, prompts, enable_thinking=False, sampling=settings.sampling,
                         batch_size=settings.batch_size)
        scores = get_reward(settings.verifier)(texts, solution=train["solution"], prompts=prompts)
        keep = [i for i, s in enumerate(scores) if not s]
    keep = broadcast_from_main(keep)
    return train.select(keep), len(train) - len(keep)


if __name__ == "__main__":
    run_cli(main, SFTStageConfig, __doc__)
