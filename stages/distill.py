"""Strong-to-weak distillation — how Qwen3 trained its small models: a student learns from a stronger teacher
with the same tokenizer, first off-policy, then on-policy.

    make distill TEACHER=runs/nano/03_fusion STUDENT=checkpoints/nano-dense-base    # configs/distill/nano.yaml
    python -m stages.distill --config configs/distill/nano.yaml onpolicy.trainer.max_steps=60

Phases: config -> vocabularies checked (same tokens with the same ids, else a ConfigError naming both models) ->
off-policy data: the teacher answers queries in thinking and in non-thinking mode (``enable_thinking``, so a
non-thinking answer keeps the empty think block), only answers the verifier and stage 1's filters accept and that
obey their mode are kept, flagged ``/think`` / ``/no_think`` as in stage 3; saved with a manifest in
``distill_data/``, reused by a rerun -> off-policy SFT of the student (stage 1's trainer), saved as the finished
model dir ``offpolicy/`` (reused by a rerun) -> on-policy distillation: the student answers flagged prompts itself
and TRL's ``DistillationTrainer`` minimises the divergence between its next-token distribution and the
teacher's on those answers -> teacher, off-policy student and final student evaluated side by side (accuracy per
mode, ThinkFollow) -> ``stage.json`` last. An interrupted on-policy phase resumes from ``<out>/checkpoints``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_recipes.filters import FilterSettings
from data_recipes.fusion import FlagSettings, card_markdown, dataset_card, rejection_sample, single_turn, with_flag
from stages.common import (
    ModelSettings,
    RecipeSpec,
    begin_stage,
    build_data,
    finish_stage,
    is_complete,
    load_model,
    load_saved_rows,
    load_tokenizer,
    lora_config,
    read_stage,
    require_finished_input,
    resolve_model_path,
    save_and_reload,
    save_rows,
    train_metrics,
    train_resumable,
    trainer_defaults,
)
from stages.config import ConfigError, build_trainer_args, run_cli, to_dict
from stages.evaluate import EvalSettings, FollowSettings, evaluate, format_table, think_follow
from stages.generation import SamplingSettings, generate
from stages.sft import filter_rows, train_sft

STAGE = "distill"
DATA_DIR = "distill_data"  # the teacher's verified answers (off-policy data), reused by a rerun
OFFPOLICY_DIR = "offpolicy"  # the student after off-policy SFT: a finished model dir of its own
MODES = ("think", "no_think")


@dataclass
class DistillModels:
    teacher: ModelSettings  # the strong model: a finished stage dir or a hub id (only its outputs and logits are used)
    student: ModelSettings  # the weak model; its ``lora`` applies to both training phases


@dataclass
class OffPolicySettings:
    """SFT on the teacher's answers. Sampling as Qwen3 recommends per mode."""

    queries: list[RecipeSpec] = field(default_factory=list)  # rows with ``prompt`` + the verifier's columns
    think_share: float = 0.5  # queries the teacher answers thinking; the rest without (empty think block)
    samples_per_query: int = 1
    max_per_query: int = 1  # verified answers kept per query
    think_sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(
        do_sample=True, temperature=0.6, top_p=0.95, top_k=20))
    no_think_sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=256))
    batch_size: int = 128
    filters: FilterSettings = field(default_factory=FilterSettings)  # stage 1's response filters, verifier first
    flags: FlagSettings = field(default_factory=FlagSettings)  # where the /think and /no_think flags go
    trainer: dict[str, Any] = field(default_factory=dict)  # TRL SFTConfig settings, passed through unchanged

    def __post_init__(self):
        if not 0 <= self.think_share <= 1:
            raise ValueError(f"offpolicy.think_share must be in [0, 1], got {self.think_share}")


@dataclass
class OnPolicySettings:
    """The student answers, the teacher's logits are the target (TRL's DistillationTrainer)."""

    prompts: list[RecipeSpec] = field(default_factory=list)  # rows with ``prompt``; no answers needed
    think_share: float = 0.5  # prompts flagged /think; the rest /no_think
    # TRL DistillationConfig, passed through unchanged: beta (0 = forward KL, 1 = reverse KL, between = JSD),
    # temperature (of sampling and of both distributions in the loss), max_completion_length, learning_rate, ...
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not 0 <= self.think_share <= 1:
            raise ValueError(f"onpolicy.think_share must be in [0, 1], got {self.think_share}")


@dataclass
class DistillConfig:
    output_dir: str
    model: DistillModels
    offpolicy: OffPolicySettings = field(default_factory=OffPolicySettings)
    onpolicy: OnPolicySettings = field(default_factory=OnPolicySettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    follow: FollowSettings = field(default_factory=FollowSettings)
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if not self.offpolicy.queries:
            raise ValueError("offpolicy.queries: give at least one recipe of queries for the teacher")
        if not self.onpolicy.prompts:
            raise ValueError("onpolicy.prompts: give at least one recipe of prompts for on-policy distillation")


def main(cfg: DistillConfig) -> Path:
    from trl import DistillationConfig, DistillationTrainer, SFTConfig

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # teacher generation and evaluation are not split over ranks
        raise ConfigError("distill runs in a single process: start it with python -m stages.distill (or make "
                          "distill), not under accelerate launch / torchrun")
    out = begin_stage(cfg.output_dir, cfg.threads, "distill")
    if out is None:
        return Path(cfg.output_dir)
    t_start = time.time()
    for key, settings in (("model.teacher", cfg.model.teacher), ("model.student", cfg.model.student)):
        require_finished_input(settings.name_or_path, f"{key}.name_or_path")
    tokenizer = same_vocabulary(cfg.model)
    sft_args = build_trainer_args(SFTConfig, trainer_defaults(cfg.offpolicy.trainer), "", "offpolicy.trainer",
                                  output_dir=str(out / OFFPOLICY_DIR / "checkpoints"), seed=cfg.seed,
                                  max_length=cfg.model.student.max_length)
    kd_args = build_trainer_args(DistillationConfig, trainer_defaults(cfg.onpolicy.trainer), "", "onpolicy.trainer",
                                 output_dir=str(out / "checkpoints"), seed=cfg.seed)
    device = kd_args.device  # generation and evaluation run where training does
    teacher = load_model(cfg.model.teacher, "model.teacher").to(device)

    # Phase 1, off-policy: SFT on the teacher's verified answers in both modes.
    offpolicy = offpolicy_student(cfg, teacher, tokenizer, sft_args, out)

    # Phase 2, on-policy: the student samples, its next-token distribution is pulled to the teacher's.
    student_settings = dataclasses.replace(cfg.model.student, name_or_path=str(out / OFFPOLICY_DIR))
    student = load_model(student_settings, "model.student")
    peft_config = lora_config(cfg.model.student.lora, student, "model.student.lora") if cfg.model.student.lora else None
    prompts = onpolicy_prompts(cfg)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=kd_args, train_dataset=prompts,
                                  processing_class=tokenizer, peft_config=peft_config)
    log, train_seconds = train_resumable(trainer, out, "distill")
    student = save_and_reload(trainer, tokenizer, out, student_settings).to(device)

    # Phase 3: teacher and student side by side.
    scores = {"teacher": judge(teacher, tokenizer, cfg),
              "offpolicy": {k: offpolicy["metrics"][k] for k in ("eval", "think_follow")},
              "student": judge(student, tokenizer, cfg)}
    comparison = {name: headline(s) for name, s in scores.items()}
    table = comparison_table(comparison, cfg.model.teacher.name_or_path)
    (out / "comparison.md").write_text(table + "\n")
    print(table, flush=True)

    finish_stage(out, {
        "stage": STAGE,
        "input_model": cfg.model.student.name_or_path,
        "teacher_model": cfg.model.teacher.name_or_path,
        "config": to_dict(cfg),
        "data": {"offpolicy": offpolicy["data"], "onpolicy": {"prompts": len(prompts), "per_mode": {
            mode: sum(m == mode for m in prompts["mode"]) for mode in MODES}}},
        "metrics": {
            "train": {**train_metrics(trainer, log, train_seconds), "beta": kd_args.beta,
                      "temperature": kd_args.temperature},
            "eval": scores["student"]["eval"],
            "think_follow": scores["student"]["think_follow"],
            "teacher": scores["teacher"],
            "offpolicy": {"train": offpolicy["metrics"]["train"], **scores["offpolicy"]},
            "comparison": comparison,
        },
        "wall_seconds": round(time.time() - t_start, 1),
    })
    print(f"[distill] done: {out} ({time.time() - t_start:.0f} s)", flush=True)
    return out


def same_vocabulary(models: DistillModels):
    """The student's tokenizer, once the teacher's is known to hold the same tokens under the same ids and both
    models to have as many logits: the divergence compares the two next-token distributions id by id."""
    from transformers import AutoConfig

    where = {"teacher": models.teacher.name_or_path, "student": models.student.name_or_path}
    vocab = {k: load_tokenizer(path, f"model.{k}.name_or_path").get_vocab() for k, path in where.items()}
    t, s = vocab["teacher"], vocab["student"]
    differ = sorted((tok for tok in t.keys() | s.keys() if t.get(tok) != s.get(tok)),
                    key=lambda tok: (min(i for i in (t.get(tok), s.get(tok)) if i is not None), tok))
    if differ:
        examples = "; ".join(f"{tok!r}: teacher id {t.get(tok)}, student id {s.get(tok)}" for tok in differ[:3])
        raise ConfigError(
            f"model.teacher ({where['teacher']}, vocabulary of {len(t)}) and model.student ({where['student']}, "
            f"vocabulary of {len(s)}) do not share a tokenizer; tokens that differ: {len(differ)} ({examples}). "
            "This stage matches the two next-token distributions token by token; for a teacher with another "
            "tokenizer use TRL's cross-tokenizer GOLD (trl.experimental.gold: GOLDTrainer with GOLDConfig("
            "teacher_tokenizer_name_or_path=..., use_uld_loss=True)), which this stage does not implement")
    logits = {k: AutoConfig.from_pretrained(resolve_model_path(path, f"model.{k}.name_or_path"))
              .get_text_config().vocab_size for k, path in where.items()}
    if logits["teacher"] != logits["student"]:
        raise ConfigError(f"model.teacher ({where['teacher']}) has vocab_size {logits['teacher']} logits but "
                          f"model.student ({where['student']}) has {logits['student']}, with the same tokenizer; "
                          "resize one model's embeddings so the two distributions line up")
    return load_tokenizer(models.student.name_or_path, "model.student.name_or_path")


def offpolicy_student(cfg: DistillConfig, teacher, tokenizer, args, out: Path) -> dict:
    """The student after SFT on the teacher's verified answers, saved as ``<out>/offpolicy`` with its own
    ``stage.json`` (metrics included); a rerun with the same settings reuses it. Returns that record."""
    sub, key = out / OFFPOLICY_DIR, settings_key(cfg, "offpolicy")
    if is_complete(sub):
        record = read_stage(sub)
        if record.get("key") == key:
            print(f"[distill] reusing the off-policy student in {sub}", flush=True)
            return record
        print(f"[distill] {sub} was made with other settings: training it again", flush=True)
        shutil.rmtree(sub)
    t0 = time.time()
    train, card = teacher_data(cfg, teacher, tokenizer, out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # on-policy checkpoints of an older off-policy student
    student = load_model(cfg.model.student, "model.student")
    student, trainer, log, seconds = train_sft(student, tokenizer, train, args, cfg.model.student, sub, "distill")
    judged = judge(student.to(args.device), tokenizer, cfg)
    print(format_table(judged["eval"], f"[distill] student after off-policy SFT: {sub}"), flush=True)
    finish_stage(sub, {
        "stage": f"{STAGE}/offpolicy", "key": key,
        "input_model": cfg.model.student.name_or_path, "teacher_model": cfg.model.teacher.name_or_path,
        "data": {"rows": len(train), "dir": f"../{DATA_DIR}", "card": card},
        "metrics": {"train": train_metrics(trainer, log, seconds), **judged},
        "wall_seconds": round(time.time() - t0, 1),
    })
    return read_stage(sub)


def settings_key(cfg: DistillConfig, part: str) -> str:
    """What a saved piece depends on: the teacher's exact stage record (or its name), and the settings that make
    the data (``part="data"``), or the data plus the student and its SFT (``part="offpolicy"``)."""
    stage = Path(cfg.model.teacher.name_or_path) / "stage.json"
    teacher = stage.read_text() if stage.is_file() else cfg.model.teacher.name_or_path
    whole = to_dict(cfg)
    offpolicy = {k: v for k, v in whole["offpolicy"].items() if k != "trainer"}
    spec = {"teacher": hashlib.sha256(teacher.encode()).hexdigest(), "offpolicy": offpolicy, "seed": cfg.seed,
            "eval_data": whole["eval"]["data"], "max_length": cfg.model.student.max_length}
    if part == "offpolicy":  # its record carries the off-policy student's evaluation too
        spec |= {k: whole[k] for k in ("eval", "follow")} | {"student": whole["model"]["student"],
                                                             "trainer": whole["offpolicy"]["trainer"]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def teacher_data(cfg: DistillConfig, teacher, tokenizer, out: Path):
    """The off-policy rows (the teacher's verified answers, flagged) and their card; a saved set whose manifest
    matches the settings is reused."""
    data_dir, key = out / DATA_DIR, settings_key(cfg, "data")
    saved = load_saved_rows(data_dir, key)
    if saved:
        print(f"[distill] reusing the teacher's answers in {data_dir} ({saved[1]['rows']} rows)", flush=True)
        return saved

    t0, settings = time.time(), cfg.offpolicy
    queries = build_data(settings.queries, cfg.seed, key="offpolicy.queries")
    if "prompt" not in queries.column_names:
        raise ValueError(f"offpolicy.queries: rows need a 'prompt' column; columns: {queries.column_names}")
    n_think = round(len(queries) * settings.think_share)
    parts = {"think": queries.select(range(n_think)), "no_think": queries.select(range(n_think, len(queries)))}
    rng = random.Random(f"distill/{cfg.seed}")
    rows, stats = [], {}
    for mode, part in parts.items():
        if len(part) == 0:
            continue
        kept, stats[mode] = rejection_sample(list(part), teacher_sampler(teacher, tokenizer, settings, mode),
                                             settings.samples_per_query, settings.max_per_query,
                                             answer_checks(cfg, tokenizer, mode))
        flagged = single_turn(kept, f"teacher/{mode}", settings.flags, rng)
        rows += [{**row, "solution": k.get("solution")} for row, k in zip(flagged, kept)]
        print(f"[distill] teacher, {mode}: kept {stats[mode]['kept']} of {stats[mode]['samples']} answers "
              f"(dropped {stats[mode]['dropped_by_filter']})", flush=True)
    if not rows:
        raise ValueError(f"offpolicy: no answer of the teacher passed the checks ({json.dumps(stats)}); give it "
                         "more or easier queries, or check offpolicy.filters")
    rng.shuffle(rows)
    card = dataset_card(rows, stats)
    card["seconds"] = round(time.time() - t0, 1)

    train = save_rows(data_dir, rows, card,
                      card_markdown(card, "Off-policy distillation data (the teacher's verified answers)"), key,
                      teacher=cfg.model.teacher.name_or_path)
    print(f"[distill] off-policy data: {card['rows']} rows {card['per_mode']} -> {data_dir} "
          f"({card['seconds']:.0f} s)", flush=True)
    return train, card


def teacher_sampler(teacher, tokenizer, settings: OffPolicySettings, mode: str):
    """prompts -> the teacher's replies in ``mode``; non-thinking replies start with the empty think block that
    ``enable_thinking=False`` prefills, as Qwen3's template renders them."""
    sampling = settings.think_sampling if mode == "think" else settings.no_think_sampling

    def sample(prompts: list[list[dict]]) -> list[str]:
        return generate(teacher, tokenizer, prompts, enable_thinking=mode == "think", sampling=sampling,
                        batch_size=settings.batch_size)
    return sample


def answer_checks(cfg: DistillConfig, tokenizer, mode: str):
    """candidate rows -> (indices kept, drop counts): stage 1's filters (the verifier first), then the mode: a
    thinking answer needs a closed, non-empty think block, a non-thinking one an empty block."""
    import datasets

    from rewards import get_reward

    obeys_mode = get_reward("mode_compliance")

    def check(candidates: list[dict]) -> tuple[list[int], dict]:
        ds = datasets.Dataset.from_list(candidates).add_column("_row", list(range(len(candidates))))
        kept, report = filter_rows(ds, cfg.offpolicy.filters, cfg.eval.data, tokenizer, cfg.model.student.max_length,
                                   cfg.seed)
        scores = obeys_mode([m[-1]["content"] for m in kept["messages"]], mode=[mode] * len(kept))
        keep = [row for row, ok in zip(kept["_row"], scores) if ok == 1.0]
        return keep, {**report["dropped"], "wrong_mode": len(kept) - len(keep)}
    return check


def onpolicy_prompts(cfg: DistillConfig):
    """The prompts the student answers on-policy, each flagged /think or /no_think in its last user message."""
    settings = cfg.onpolicy
    ds = build_data(settings.prompts, cfg.seed, key="onpolicy.prompts")
    if "prompt" not in ds.column_names:
        raise ValueError(f"onpolicy.prompts: rows need a 'prompt' column; columns: {ds.column_names}")
    n_think = round(len(ds) * settings.think_share)

    def flag(row, i):
        mode = "think" if i < n_think else "no_think"
        last = max(j for j, m in enumerate(row["prompt"]) if m["role"] == "user")
        prompt = [dict(m, content=with_flag(m["content"], mode)) if j == last else m
                  for j, m in enumerate(row["prompt"])]
        return {"prompt": prompt, "mode": mode}
    return ds.map(flag, with_indices=True, remove_columns=ds.column_names)


def judge(model, tokenizer, cfg: DistillConfig) -> dict:
    """Accuracy per mode (``evaluate``) and obedience to /think and /no_think flags (``think_follow``)."""
    return {"eval": evaluate(model, tokenizer, cfg.eval, cfg.seed),
            "think_follow": think_follow(model, tokenizer, cfg.follow, cfg.seed)}


def headline(scores: dict) -> dict:
    """The numbers of one model that go in the comparison."""
    ev, follow = scores["eval"], scores["think_follow"]
    out = {f"{mode}_accuracy": r["accuracy"] for mode, r in ev.items()}
    out |= {f"{mode}_well_formed": r["well_formed"] for mode, r in ev.items()}
    single = follow["single_turn"]
    return out | {"think_follow": follow["think_follow"],
                  "think_follow_well_formed": follow.get("think_follow_well_formed"),
                  "obeys_/think": single.get("think"), "obeys_/no_think": single.get("no_think"),
                  "thinks_without_flag": single.get("none")}


def comparison_table(comparison: dict, teacher: str) -> str:
    """Teacher, off-policy student and final student side by side (``headline`` numbers), as markdown."""
    names = {"teacher": f"teacher ({teacher})", "offpolicy": "student after off-policy SFT",
             "student": "student after on-policy distillation"}
    columns = list(dict.fromkeys(c for row in comparison.values() for c in row))
    lines = ["| model | " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in comparison.items():
        cells = ["-" if row.get(c) is None else f"{row[c]:.3f}" for c in columns]
        lines.append(f"| {names[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main, DistillConfig, __doc__)
