"""Evaluate a model dir on a held-out split, in thinking and non-thinking mode, with the stage-2 checker.

    make eval MODEL=runs/nano/01_sft            # = python -m stages.evaluate --config configs/eval/nano.yaml \\
                                                #       model.name_or_path=runs/nano/01_sft

Per mode: accuracy (``math_accuracy``, the same verifier stage 2 optimises), the share of well-formed outputs
(``think_format``: ``<think>…</think>`` then a non-empty answer) and the mean response length in tokens; with
``think_follow=true`` also ThinkFollow (obedience to /think and /no_think, see ``think_follow``). The table is
printed; when the model dir is a finished stage, the numbers go into its ``stage.json`` under ``metrics.eval``
(and ``metrics.think_follow``), rewritten atomically.

    make eval MODEL=runs/nano/03_fusion ARGS=think_follow=true
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from stages.common import (
    STAGE_FILE,
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
from stages.config import run_cli, to_dict
from stages.generation import STOP_THINKING, SamplingSettings, generate

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


# where a stage's config keeps the settings of a metric, when not under the metric's own name
METRIC_SETTINGS = {"think_follow": "follow"}


def measured_by_input(model: ModelSettings, metric: str, settings, seed: int) -> dict | None:
    """What the input stage measured on its own output — ``metrics[metric]`` of its stage.json — when it measured
    it with the same settings, seed and model loading as this stage would; else None.

    Why: every stage evaluates its input before training, and that input is the previous stage's output, which
    that stage evaluated last thing with the same greedy settings; measuring it again cost the nano pipeline
    about three minutes. The reused numbers say where they come from (``reused_from``).
    """
    path = Path(model.name_or_path)
    if not is_complete(path):
        return None
    record = read_stage(path)
    config, metrics = record.get("config") or {}, record.get("metrics") or {}
    found, producer = metrics.get(metric), config.get("model") or {}
    if not found:
        return None
    # numbers rewritten by `make eval` carry their own settings; else the stage measured them with its config's
    section = METRIC_SETTINGS.get(metric, metric)
    measured = metrics.get("measured_with", {}).get(metric) or {"settings": config.get(section),
                                                                  "seed": config.get("seed")}

    def same(a, b) -> bool:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

    loads_alike = (producer.get("dtype") == model.dtype and same(producer.get("rope_scaling"), model.rope_scaling)
                   and not (model.lora and model.lora.quantize))
    if not (loads_alike and measured["seed"] == seed and same(measured["settings"], to_dict(settings))):
        return None
    print(f"[eval] {metric} of {path}: reused from its stage.json (same settings, seed and weights)", flush=True)
    mark = {"reused_from": str(path / STAGE_FILE)}
    if metric == "eval":  # {mode: numbers}
        return {mode: {**numbers, **mark} for mode, numbers in found.items()}
    return {**found, **mark}


def evaluate_input(model, tokenizer, model_settings: ModelSettings, settings: EvalSettings, seed: int) -> dict:
    """``evaluate`` of a stage's input model, unless its own stage measured it the same way (reused then)."""
    return measured_by_input(model_settings, "eval", settings, seed) or evaluate(model, tokenizer, settings, seed)


def eval_rows(settings: EvalSettings, seed: int):
    """The eval recipe's rows (they need gold answers) and their prompts (the messages before the reply)."""
    ds = build_data([settings.data], seed, key="eval.data")
    if "solution" not in ds.column_names:
        raise ValueError(f"eval.data ({settings.data.name}): needs a 'solution' column with gold answers")
    return ds, [[m for m in msgs if m["role"] != "assistant"] for msgs in ds["messages"]]


def evaluate(model, tokenizer, settings: EvalSettings, seed: int = 0) -> dict:
    """{mode: {accuracy, well_formed, mean_tokens, n, seconds}} on the eval recipe's rows."""
    from rewards import get_reward

    ds, prompts = eval_rows(settings, seed)
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


@dataclass
class FollowSettings:
    """ThinkFollow: does the model obey the last /think or /no_think flag? Held-out questions, the model decides
    by itself (no prefilled think block), and in dialogs its own earlier replies are the history."""

    data: list[RecipeSpec] = field(default_factory=lambda: [RecipeSpec(
        name="arithmetic", kwargs={"n": 120, "seed": 0, "difficulty": 2, "split": "eval"})])
    single_turn: int = 150  # prompts, cycling through /think, /no_think and no flag; flags in user or system
    dialogs: int = 40
    max_turns: int = 3  # dialog turns; each user turn carries a random flag or none
    max_new_tokens: int = 512
    batch_size: int = 100


@dataclass
class EvalConfig:
    model: ModelSettings
    eval: EvalSettings = field(default_factory=EvalSettings)
    think_follow: bool = False  # also measure ThinkFollow (``follow``), as stages 3 and 4 do
    follow: FollowSettings = field(default_factory=FollowSettings)
    seed: int = 0
    threads: int = 2
    write: bool = True  # write the numbers into the model dir's stage.json when it has one


def think_follow(model, tokenizer, settings: FollowSettings, seed: int = 0) -> dict:
    """Share of replies whose think block obeys the last flag (empty under /no_think, non-empty otherwise):
    ``think_follow``, as Qwen3 defines it, judges the mode a reply chose (a thinking reply cut off at
    ``max_new_tokens`` still chose to think); ``think_follow_well_formed`` also asks for a closed block and an
    answer after it (the ``mode_compliance`` reward)."""
    import random

    from data_recipes.fusion import FLAGS, expected_mode, prompt_mode, with_flag
    from rewards import get_reward
    from rewards.format import reply_mode

    ds = build_data(settings.data, seed, key="eval.follow.data")
    questions = [next(m["content"] for m in msgs if m["role"] == "user") for msgs in ds["messages"]]
    rng = random.Random(f"think_follow/{seed}")
    complies = get_reward("mode_compliance")
    sampling = SamplingSettings(do_sample=False, max_new_tokens=settings.max_new_tokens)

    def reply(convs: list[list[dict]]) -> list[tuple[float, float]]:
        texts = generate(model, tokenizer, convs, enable_thinking=True, sampling=sampling,
                         batch_size=settings.batch_size)
        modes = [expected_mode(c) for c in convs]
        for conv, text in zip(convs, texts):
            conv.append({"role": "assistant", "content": text})
        obeyed = [float(reply_mode(text) == mode) for text, mode in zip(texts, modes)]
        return list(zip(obeyed, complies(texts, mode=modes)))

    single, kinds = [], []
    for i in range(settings.single_turn):
        flag = (*FLAGS, None)[i % 3]
        q = questions[i % len(questions)]
        if flag and rng.random() < 0.5:
            conv = [{"role": "system", "content": FLAGS[flag]}, {"role": "user", "content": q}]
        else:
            conv = [{"role": "user", "content": with_flag(q, flag)}]
        single.append(conv)
        kinds.append(flag or "none")
    single_scores = reply(single)
    dialogs = [[] for _ in range(settings.dialogs)]
    turn_scores, turn_kinds = [], []
    for _ in range(settings.max_turns):
        for conv in dialogs:
            flag = rng.choice([*FLAGS, None])
            kept = None if flag else prompt_mode(conv)  # no flag of its own: the last one seen holds (or thinking)
            turn_kinds.append(f"own_{flag}" if flag else f"kept_{kept}" if kept else "no_flag_yet")
            conv.append({"role": "user", "content": with_flag(rng.choice(questions), flag)})
        turn_scores += reply(dialogs)

    def share(scores, strict=False):
        return round(sum(s[strict] for s in scores) / len(scores), 4) if scores else None

    by_kind = {k: [s for s, kk in zip(single_scores, kinds) if kk == k] for k in ("think", "no_think", "none")}
    every = single_scores + turn_scores
    return {
        "think_follow": share(every),
        "think_follow_well_formed": share(every, strict=True),
        "single_turn": {k: share(v) for k, v in by_kind.items() if v},
        "multi_turn": share(turn_scores),
        "multi_turn_by_kind": {k: {"share": share(v), "n": len(v)} for k in sorted(set(turn_kinds))
                               for v in [[s for s, kk in zip(turn_scores, turn_kinds) if kk == k]]},
        "turns_judged": len(every),
    }


def format_follow(follow: dict) -> str:
    """One line: ThinkFollow, its well-formed share, per flag and in dialogs."""
    strict = follow.get("think_follow_well_formed")  # absent from runs made before it was measured
    return (f"ThinkFollow {follow['think_follow']} over {follow['turns_judged']} replies"
            + (f" (well-formed too: {strict})" if strict is not None else "")
            + f"; single turn {json.dumps(follow['single_turn'])}; multi-turn {follow['multi_turn']}"
            + (" (" + ", ".join(f"{k} {v['share']} of {v['n']}" for k, v in follow["multi_turn_by_kind"].items())
               + ")" if "multi_turn_by_kind" in follow else ""))


def budget_curve(model, tokenizer, settings: EvalSettings, budgets: list[int | None], seed: int = 0) -> list[dict]:
    """Thinking-mode accuracy when thinking is cut at each budget (None = unlimited), on the eval rows."""
    from rewards import get_reward

    ds, prompts = eval_rows(settings, seed)
    verify = get_reward(settings.verifier)
    rows = []
    for budget in budgets:
        t0 = time.time()
        texts = generate(model, tokenizer, prompts, enable_thinking=True, thinking_budget=budget,
                         sampling=settings.sampling, batch_size=settings.batch_size)
        scores = [s for s in verify(texts, solution=list(ds["solution"]), prompts=prompts) if s is not None]
        # the model's own thinking: the forced stop sentence (with its </think>) is not counted
        thinking = [len(tokenizer(t.split("</think>")[0].replace(STOP_THINKING.split("</think>")[0], ""),
                                  add_special_tokens=False)["input_ids"]) for t in texts]
        rows.append({"budget": budget, "accuracy": round(sum(scores) / max(1, len(scores)), 4),
                     "mean_thinking_tokens": round(sum(thinking) / len(thinking), 1), "n": len(texts),
                     "seconds": round(time.time() - t0, 1)})
    return rows


def plot_budget_curve(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy vs thinking budget as a PNG (unlimited drawn as a dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r for r in rows if r["budget"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([r["budget"] for r in finite], [r["accuracy"] for r in finite], marker="o", label="budget")
    for r in rows:
        if r["budget"] is None:
            ax.axhline(r["accuracy"], linestyle="--", color="grey", label="unlimited")
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def format_budget_table(rows: list[dict]) -> str:
    lines = ["| thinking budget | accuracy | mean thinking tokens |", "|---|---|---|"]
    lines += [f"| {'unlimited' if r['budget'] is None else r['budget']} | {r['accuracy']:.3f} | "
              f"{r['mean_thinking_tokens']} |" for r in rows]
    return "\n".join(lines)


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
    results = {"eval": evaluate(model, tokenizer, cfg.eval, cfg.seed)}
    print(format_table(results["eval"], f"evaluation of {cfg.model.name_or_path}"), flush=True)
    if cfg.think_follow:
        results["think_follow"] = think_follow(model, tokenizer, cfg.follow, cfg.seed)
        print(format_follow(results["think_follow"]), flush=True)
    path = Path(cfg.model.name_or_path)
    if cfg.write and is_complete(path):
        record = read_stage(path)
        metrics = record.setdefault("metrics", {})
        metrics.update(results)
        used = {"eval": cfg.eval, "think_follow": cfg.follow}
        metrics.setdefault("measured_with", {}).update(
            {name: {"settings": to_dict(used[name]), "seed": cfg.seed} for name in results})
        write_json_atomic(path / "stage.json", record)
        print(f"written to {path / 'stage.json'} (metrics: {', '.join(results)})")
    return results


if __name__ == "__main__":
    run_cli(main, EvalConfig, __doc__)
