"""Stage 3 — thinking-mode fusion: one model that thinks under /think (or no flag) and answers directly under
/no_think, with a thinking budget that can cut thinking short.

    make stage3                                   # nano default: configs/stage3_fusion/nano.yaml, from stage 2
    python -m stages.thinking_fusion --config configs/stage3_fusion/nano.yaml rejection.samples_per_query=8

Phases: config -> fused dataset (data_recipes/fusion.py: thinking samples rejection-sampled from the stage-2
model and checked by the verifier and stage 1's filters; non-thinking samples from rule-checked recipes; flags
in user or system messages; multi-turn dialogs as one sample per turn) saved with its manifest and card, reused by
a rerun -> continued SFT (stage 1's trainer) -> evaluate: accuracy per mode, ThinkFollow, accuracy vs thinking
budget (table + PNG) -> ``stage.json`` last.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_recipes.filters import FilterSettings
from data_recipes.fusion import (
    FlagSettings,
    MultiTurnSettings,
    card_markdown,
    dataset_card,
    multi_turn,
    rejection_sample,
    single_turn,
)
from stages.common import (
    ModelSettings,
    RecipeSpec,
    barrier,
    begin_stage,
    build_data,
    finish_stage,
    is_main_process,
    load_model,
    load_saved_rows,
    load_tokenizer,
    lora_config,
    require_finished_input,
    save_rows,
    train_metrics,
    trainer_defaults,
    whole_weights,
)
from stages.config import build_trainer_args, run_cli, to_dict
from stages.evaluate import (
    EvalSettings,
    FollowSettings,
    budget_curve,
    evaluate,
    evaluate_input,
    format_budget_table,
    format_follow,
    format_table,
    plot_budget_curve,
    think_follow,
)
from stages.generation import SamplingSettings, generate
from stages.moe import MoESettings
from stages.sft import count_over_length, filter_rows, train_sft

STAGE = "thinking_fusion"
DATA_DIR = "fused_data"


@dataclass
class RejectionSettings:
    """Thinking samples from the input (stage-2) model. Sampling as Qwen3 recommends for thinking."""

    queries: list[RecipeSpec] = field(default_factory=list)  # rows with ``prompt`` + the verifier's columns
    samples_per_query: int = 4
    max_per_query: int = 2
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(do_sample=True))
    batch_size: int = 128
    filters: FilterSettings = field(default_factory=FilterSettings)  # stage 1's response filters, verifier first


@dataclass
class FusionStageConfig:
    output_dir: str
    model: ModelSettings  # the stage-2 output
    rejection: RejectionSettings = field(default_factory=RejectionSettings)
    non_thinking: list[RecipeSpec] = field(default_factory=list)  # replies with an empty think block
    thinking: list[RecipeSpec] = field(default_factory=list)  # more thinking rows (e.g. instruction tasks)
    flags: FlagSettings = field(default_factory=FlagSettings)
    multi_turn: MultiTurnSettings = field(default_factory=MultiTurnSettings)
    trainer: dict[str, Any] = field(default_factory=dict)  # TRL SFTConfig settings, passed through unchanged
    eval: EvalSettings = field(default_factory=EvalSettings)
    follow: FollowSettings = field(default_factory=FollowSettings)
    budgets: list[int | None] = field(default_factory=lambda: [0, 16, 32, 64, 128, None])  # None = unlimited
    eval_before: bool = True
    mode_loss_weight: float = 0.0  # weight of the binary thinking-mode decision loss (stages/mode_loss.py); 0 = off
    moe: MoESettings = field(default_factory=MoESettings)  # MoE load balancing (stages/moe.py)
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if not self.rejection.queries and not self.thinking:
            raise ValueError("rejection.queries / thinking: give at least one source of thinking samples")
        if not self.non_thinking:
            raise ValueError("non_thinking: give at least one recipe of non-thinking samples")
        if self.mode_loss_weight < 0:
            raise ValueError(f"mode_loss_weight: must be >= 0 (0 = plain SFT), got {self.mode_loss_weight}")
        bad = [b for b in self.budgets if b is not None and b < 0]
        if bad:
            raise ValueError(f"budgets: a thinking budget must be >= 0 tokens (or null = unlimited), got {bad[0]}")


def main(cfg: FusionStageConfig) -> Path:
    from trl import SFTConfig

    out = begin_stage(cfg.output_dir, cfg.threads, "fusion")
    if out is None:
        return Path(cfg.output_dir)
    t_start = time.time()
    require_finished_input(cfg.model.name_or_path, "model.name_or_path")
    args = build_trainer_args(SFTConfig, trainer_defaults(cfg.trainer), "", output_dir=str(out / "checkpoints"),
                              seed=cfg.seed, max_length=cfg.model.max_length)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_model(cfg.model)
    if cfg.model.lora:
        lora_config(cfg.model.lora, model)  # a LoRA target that matches nothing fails now, before anything is written

    # Under a launcher every process trains; one evaluates, samples and saves the fused data, and writes the stage.
    before = train = None
    with whole_weights(model):  # generation needs whole weights: a no-op unless ZeRO-3 sharded them
        if is_main_process():
            if cfg.eval_before:
                before = evaluate_input(model, tokenizer, cfg.model, cfg.eval, cfg.seed)
                print(format_table(before, f"[fusion] before: {cfg.model.name_or_path}"), flush=True)
            train, card = fused_dataset(cfg, model, tokenizer, out)
    barrier()  # the others wait here (not in the trainer's first collective, which times out sooner) ...
    if train is None:
        train, card = fused_dataset(cfg, model, tokenizer, out)  # ... and load what it saved (same manifest key)
    # Only the rejection samples pass the over_length filter: count the rows TRL will truncate (other recipes').
    over_length = {"max_length": cfg.model.max_length,
                   "dropped": card["rejection_sampling"].get("dropped_by_filter", {}).get("over_length", 0),
                   "truncated": count_over_length(train, tokenizer, cfg.model.max_length, "fusion")}

    model, trainer, log, train_seconds = train_sft(model, tokenizer, train, args, cfg.model, out, "fusion",
                                                      cfg.moe, cfg.mode_loss_weight)
    if not is_main_process():  # wait for the main process to evaluate and write the stage (its barrier below)
        barrier()
        return out
    after = evaluate(model, tokenizer, cfg.eval, cfg.seed)
    print(format_table(after, f"[fusion] after: {out}"), flush=True)
    follow = think_follow(model, tokenizer, cfg.follow, cfg.seed)
    print(f"[fusion] {format_follow(follow)}", flush=True)
    budgets = budget_curve(model, tokenizer, cfg.eval, cfg.budgets, cfg.seed)
    plot_budget_curve(budgets, out / "thinking_budget.png", "stage 3: accuracy vs thinking budget")
    print(format_budget_table(budgets), flush=True)

    finish_stage(out, {
        "stage": STAGE,
        "input_model": cfg.model.name_or_path,
        "config": to_dict(cfg),
        "data": {"rows": len(train), "dir": DATA_DIR, "card": card, "over_length": over_length},
        "metrics": {
            "train": train_metrics(trainer, log, train_seconds),
            "eval": after,
            **({"eval_before": before} if before else {}),
            "think_follow": follow,
            "thinking_budget": budgets,
            **({"moe": trainer.moe_summary} if trainer.moe_summary else {}),
        },
        "wall_seconds": round(time.time() - t_start, 1),
    })
    print(f"[fusion] done: {out} ({time.time() - t_start:.0f} s)", flush=True)
    barrier()
    return out


def data_key(cfg: FusionStageConfig) -> str:
    """What the fused data depends on: its settings and the exact input model (its stage.json)."""
    stage = Path(cfg.model.name_or_path) / "stage.json"
    model_id = stage.read_text() if stage.is_file() else cfg.model.name_or_path
    spec = data_config(cfg) | {"seed": cfg.seed, "model": hashlib.sha256(model_id.encode()).hexdigest()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def data_config(cfg: FusionStageConfig) -> dict:
    whole = to_dict(cfg)
    return {k: whole[k] for k in ("rejection", "non_thinking", "thinking", "flags", "multi_turn")}


def first_tokens(tokenizer):
    """``truncate(text, n)``: the text of the first ``n`` tokens (broken history replies are measured in tokens,
    as a reply that ran to ``max_new_tokens`` is)."""
    def truncate(text: str, n: int) -> str:
        return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:n])
    return truncate


def fused_dataset(cfg: FusionStageConfig, model, tokenizer, out: Path):
    """Build the fused dataset, or reuse the saved one when its manifest matches (a rerun after a crash)."""
    data_dir, key = out / DATA_DIR, data_key(cfg)
    saved = load_saved_rows(data_dir, key)
    if saved:
        print(f"[fusion] reusing the fused dataset in {data_dir} ({saved[1]['rows']} rows)", flush=True)
        return saved

    t0 = time.time()
    rng = random.Random(f"fusion/{cfg.seed}")
    think_rows, rejection = [], None
    if cfg.rejection.queries:
        think_rows, rejection = rejection_rows(cfg, model, tokenizer)
        print(f"[fusion] rejection sampling: kept {rejection['kept']} thinking samples for "
              f"{rejection['queries_with_a_kept_sample']}/{rejection['queries']} queries "
              f"(acceptance {rejection['acceptance_rate']:.2f}; dropped {rejection['dropped_by_filter']})", flush=True)
    sources = [("rejection_sampling", think_rows)]
    for key_name, specs in (("thinking", cfg.thinking), ("non_thinking", cfg.non_thinking)):
        for i, spec in enumerate(specs):
            ds = build_data([spec], cfg.seed, key=f"{key_name}.{i}")
            sources.append((f"{key_name}/{spec.name}", [{"messages": m} for m in ds["messages"]]))
    rows = []
    for name, part in sources:
        rows += single_turn(part, name, cfg.flags, rng)
    pools = {mode: [r for r in rows if r["mode"] == mode and r["turns"] == 1] for mode in ("think", "no_think")}
    rows += multi_turn(pools, cfg.multi_turn, cfg.flags, rng, truncate=first_tokens(tokenizer))
    rng.shuffle(rows)
    card = dataset_card(rows, rejection)
    card["seconds"] = round(time.time() - t0, 1)

    train = save_rows(data_dir, rows, card, card_markdown(card, "Stage-3 fused dataset (thinking + non-thinking)"),
                      key, config=data_config(cfg))
    print(f"[fusion] fused dataset: {card['rows']} rows {card['per_mode']} -> {data_dir} "
          f"({card['seconds']:.0f} s)", flush=True)
    return train, card


def rejection_rows(cfg: FusionStageConfig, model, tokenizer) -> tuple[list[dict], dict]:
    """Thinking samples from the input model that the verifier and stage 1's response filters accept."""
    settings = cfg.rejection
    queries = build_data(settings.queries, cfg.seed, key="rejection.queries")
    if "prompt" not in queries.column_names:
        raise ValueError(f"rejection.queries: rows need a 'prompt' column; columns: {queries.column_names}")
    def sample(prompts):
        return generate(model, tokenizer, prompts, enable_thinking=True, sampling=settings.sampling,
                        batch_size=settings.batch_size)

    def response_filter(candidates):
        import datasets

        ds = datasets.Dataset.from_list(candidates).add_column("_row", list(range(len(candidates))))
        kept, report = filter_rows(ds, settings.filters, cfg.eval.data, tokenizer, cfg.model.max_length, cfg.seed)
        return list(kept["_row"]), report["dropped"]

    rows, stats = rejection_sample(list(queries), sample, settings.samples_per_query, settings.max_per_query,
                                   response_filter)
    return [{"messages": r["messages"]} for r in rows], stats


if __name__ == "__main__":
    run_cli(main, FusionStageConfig, __doc__)
