"""Stage 4 — general RL: GRPO over a mixture of many tasks, each routed to its own reward functions, in both
thinking modes.

    make stage4                                   # nano default: configs/stage4_general/nano.yaml, from stage 3
    python -m stages.general_rl --config configs/stage4_general/nano.yaml trainer.max_steps=60

Phases: config -> data (recipes mixed; a ``task`` column on every row; ``/think`` / ``/no_think`` flags added to
a share of the prompts, with a ``mode`` column) -> rewards (``tasks:`` maps each task to its rewards and weights;
each reward is handed only its tasks' rows, the rest get None; ``all_tasks:`` rewards such as mode compliance
apply everywhere) -> evaluate per task before -> GRPO (stage 2's trainer) -> evaluate per task after, plus
thinking-mode math accuracy and ThinkFollow -> ``stage.json`` last.

Per-task metrics: every reward logs ``rewards/<task>/<reward>`` (the mean over that task's rows in the step);
they land in ``train_log.jsonl`` and, as curves, in ``stage.json``.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_recipes.fusion import FLAGS, with_flag
from stages.anchor import AnchorSettings, build_anchor
from stages.common import (
    ModelSettings,
    RecipeSpec,
    barrier,
    begin_stage,
    build_data,
    finish_stage,
    is_main_process,
    load_model,
    load_tokenizer,
    lora_config,
    require_finished_input,
    whole_weights,
)
from stages.config import ConfigError, run_cli, to_dict
from stages.evaluate import (
    EvalSettings,
    FollowSettings,
    evaluate,
    evaluate_input,
    format_follow,
    format_table,
    measured_by_input,
    think_follow,
)
from stages.generation import SamplingSettings, generate
from stages.moe import MoESettings
from stages.reasoning_rl import DynamicSamplingSettings, RewardSpec, clipped_completions, grpo_args, train_grpo
from stages.tool_env import NO_TOOLS, generate_with_tools, load_environments, parse_tool_calls_in_rollouts, route_rows

STAGE = "general_rl"


@dataclass
class ModeMix:
    """How the prompts ask for a mode: a flag in the user or system message, or none (= thinking)."""

    no_think_share: float = 0.4
    think_flag_share: float = 0.3  # of the thinking prompts, the share that says /think (the rest: no flag)
    system_share: float = 0.3  # of the flagged prompts, the share whose flag is in a system message
    # Prompts that continue a dialog: an earlier exchange (another row's question and reference reply) with a
    # flag, then this row's question, which half the time has none and so keeps the earlier mode.
    dialog_share: float = 0.0

    def __post_init__(self):
        for key in ("no_think_share", "think_flag_share", "system_share", "dialog_share"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"modes.{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass
class TaskEvalSettings:
    data: list[RecipeSpec] = field(default_factory=list)  # held-out rows of every task (eval splits)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    # Replies per prompt (sampled: needs sampling.do_sample). A task's reward is their mean: with 8 prompts per
    # task one greedy reply each is a coarse, loop-prone score (Qwen3 evaluates by sampling, never greedily).
    samples_per_prompt: int = 1
    batch_size: int = 100

    def __post_init__(self):
        if self.samples_per_prompt < 1:
            raise ValueError(f"task_eval.samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if self.samples_per_prompt > 1 and not self.sampling.do_sample:
            raise ValueError("task_eval.samples_per_prompt > 1 needs task_eval.sampling.do_sample: true "
                             "(greedy replies to one prompt are all the same)")


@dataclass
class GeneralRLConfig:
    output_dir: str
    model: ModelSettings  # the stage-3 output
    data: list[RecipeSpec]
    tasks: dict[str, list[RewardSpec]]  # task -> its rewards (built-in names or dotted paths), weights, kwargs
    all_tasks: list[RewardSpec] = field(default_factory=list)  # rewards for every row (format, mode compliance)
    modes: ModeMix = field(default_factory=ModeMix)
    trainer: dict[str, Any] = field(default_factory=dict)  # TRL GRPOConfig settings, passed through unchanged
    dynamic_sampling: DynamicSamplingSettings = field(default_factory=DynamicSamplingSettings)
    task_eval: TaskEvalSettings = field(default_factory=TaskEvalSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)  # thinking-mode math accuracy, as stages 1-3
    follow: FollowSettings = field(default_factory=FollowSettings)
    eval_before: bool = True
    moe: MoESettings = field(default_factory=MoESettings)  # MoE load balancing (stages/moe.py)
    anchor: AnchorSettings = field(default_factory=AnchorSettings)  # SFT loss on reference replies (stages/anchor.py)
    # Tool use with execution: environment name (a row's ``environment``) -> a built-in tool set of
    # data_recipes/toolbox.py or a dotted path to an environment class (stages/tool_env.py). Empty: no tools run.
    environments: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if not self.tasks:
            raise ValueError("tasks: map at least one task to its rewards")
        for task, specs in self.tasks.items():
            if not specs:
                raise ValueError(f"tasks.{task}: give at least one reward")


# ---------------------------------------------------------------- routing

def routed_rewards(tasks: dict[str, list[RewardSpec]], all_tasks: list[RewardSpec]):
    """(reward functions, weights) for GRPOTrainer from the task map.

    One TRL reward per distinct (reward, weight, kwargs), called with only the rows of the tasks that use it —
    rows of other tasks get None, so a reward never judges a row it was not meant for (and TRL's per-reward mean
    ignores them). Each function also logs its mean per task as ``rewards/<task>/<reward>``.
    """
    from rewards import get_reward

    groups: dict[tuple, dict] = {}
    for task, specs in tasks.items():
        for i, spec in enumerate(specs):
            key = (spec.name, spec.weight, json.dumps(spec.kwargs, sort_keys=True))
            groups.setdefault(key, {"spec": spec, "tasks": [], "where": f"tasks.{task}.{i}"})["tasks"].append(task)
    for i, spec in enumerate(all_tasks):
        groups[("*", spec.name, spec.weight, json.dumps(spec.kwargs, sort_keys=True))] = \
            {"spec": spec, "tasks": None, "where": f"all_tasks.{i}"}
    funcs, weights, names = [], [], defaultdict(int)
    for group in groups.values():
        spec = group["spec"]
        try:
            fn = get_reward(spec.name, **spec.kwargs)
        except ValueError as e:
            raise ConfigError(f"{group['where']}: {e}") from None
        label = spec.name.rsplit(":", 1)[-1]
        names[label] += 1
        if names[label] > 1:
            label = f"{label}_{names[label]}"  # the same reward with other weights or kwargs
        funcs.append(route(fn, label, group["tasks"]))
        weights.append(spec.weight)
    return funcs, weights


def route(fn, label: str, tasks: list[str] | None):
    """``fn`` restricted to rows whose ``task`` is in ``tasks`` (None: every row), logging per-task means."""

    def reward(completions, task=None, log_metric=None, **columns):
        n = len(completions)
        row_tasks = list(task) if task is not None else [None] * n
        mine = [i for i in range(n) if tasks is None or row_tasks[i] in tasks]
        scores: list[float | None] = [None] * n
        if mine:
            picked = {k: _pick(v, mine) for k, v in columns.items()}
            for i, s in zip(mine, fn([completions[i] for i in mine], task=[row_tasks[i] for i in mine], **picked)):
                scores[i] = s
        if log_metric is not None:
            per_task = defaultdict(list)
            for i in mine:
                if scores[i] is not None:
                    per_task[row_tasks[i]].append(scores[i])
            for t, values in per_task.items():
                log_metric(f"rewards/{t}/{label}", sum(values) / len(values))
        return scores

    reward.__name__ = label
    return reward


def _pick(value, rows: list[int]):
    """A column restricted to ``rows``; scalars and non-column keyword arguments pass through."""
    if isinstance(value, (list, tuple)):
        return [value[i] for i in rows]
    return value


# ---------------------------------------------------------------- data

def add_mode_flags(ds, mix: ModeMix, seed: int):
    """Flag a share of the prompts /no_think (else /think or no flag), in the user or the system message, and
    record the mode each reply must follow in a ``mode`` column (what mode_compliance checks)."""
    rng = random.Random(f"modes/{seed}")
    history = [(prompt[-1]["content"], messages[-1]["content"])
               for prompt, messages in zip(ds["prompt"], ds["messages"])
               if messages and messages[-1]["role"] == "assistant"] \
        if mix.dialog_share and "messages" in ds.column_names else []

    def flag(row):
        if history and rng.random() < mix.dialog_share:
            return continued_dialog(row)
        mode = "no_think" if rng.random() < mix.no_think_share else "think"
        flagged = mode == "no_think" or rng.random() < mix.think_flag_share
        prompt = [dict(m) for m in row["prompt"]]
        if flagged and rng.random() < mix.system_share:
            prompt.insert(0, {"role": "system", "content": FLAGS[mode]})
        elif flagged:
            last = max(i for i, m in enumerate(prompt) if m["role"] == "user")
            prompt[last]["content"] = with_flag(prompt[last]["content"], mode)
        return {"prompt": prompt, "mode": mode}

    def continued_dialog(row):
        question, reply = rng.choice(history)
        earlier = "no_think" if rng.random() < mix.no_think_share else "think"
        now = rng.choice([None, None, "think", "no_think"])  # half the turns carry no flag: the earlier one holds
        prompt = [{"role": "user", "content": with_flag(question, earlier)},
                  {"role": "assistant", "content": reply},  # history: the template drops its reasoning
                  *[dict(m) for m in row["prompt"][:-1] if m["role"] != "system"],
                  {**row["prompt"][-1], "content": with_flag(row["prompt"][-1]["content"], now)}]
        return {"prompt": prompt, "mode": now or earlier}

    return ds.map(flag, load_from_cache_file=False, desc="mode flags")


# ---------------------------------------------------------------- evaluation

def evaluate_tasks(model, tokenizer, cfg: GeneralRLConfig, funcs, weights, environments: dict | None = None,
                   max_tool_rounds: int = 3) -> dict:
    """Per task on held-out rows: the weighted reward its own rewards give (and each reward's mean). With
    ``environments`` each row's tools run, as in the rollouts (stages/tool_env.py)."""
    import torch

    ds = add_mode_flags(build_data(cfg.task_eval.data, cfg.seed, key="task_eval.data"), cfg.modes, cfg.seed + 1)
    unknown = sorted(set(ds["task"]) - set(cfg.tasks))
    if unknown:
        raise ConfigError(f"task_eval.data: tasks {unknown} have no rewards in tasks:")
    k = cfg.task_eval.samples_per_prompt
    if k > 1:
        ds = ds.select([i for i in range(len(ds)) for _ in range(k)])
    t0 = time.time()
    torch.manual_seed(cfg.seed)  # sampled replies: the same seed before and after training
    options = {"enable_thinking": True, "sampling": cfg.task_eval.sampling, "batch_size": cfg.task_eval.batch_size}
    if environments:
        ds = route_rows(ds, environments, "task_eval.data")
        show_tools = (cfg.trainer.get("chat_template_kwargs") or {}).get("show_tools", True)  # as in the rollouts
        texts = generate_with_tools(model, tokenizer, list(ds["prompt"]), ds["environment"], environments,
                                    max_tool_rounds, show_tools, **options)
    else:
        texts = generate(model, tokenizer, list(ds["prompt"]), **options)
    columns = {c: list(ds[c]) for c in ds.column_names if c != "prompt"}
    per_task: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, list] = defaultdict(list)
    scored = [fn(texts, prompts=list(ds["prompt"]), **columns) for fn in funcs]
    for i, task in enumerate(ds["task"]):
        total = 0.0
        for fn, w, scores in zip(funcs, weights, scored):
            if scores[i] is not None:
                per_task[task][fn.__name__].append(scores[i])
                total += w * scores[i]
        totals[task].append(total)
    return {
        "seconds": round(time.time() - t0, 1),
        "tasks": {t: {"reward": round(sum(v) / len(v), 4), "n": len(v),
                      **{name: round(sum(s) / len(s), 4) for name, s in per_task[t].items()}}
                  for t, v in sorted(totals.items())},
    }


def compare(before: dict, after: dict) -> dict:
    """Tasks whose weighted reward went up / down / stayed, before vs after."""
    up, down, same = [], [], []
    for task, a in after["tasks"].items():
        b = before["tasks"].get(task, {}).get("reward")
        if b is None:
            continue
        (up if a["reward"] > b else down if a["reward"] < b else same).append(task)
    return {"improved": len(up), "worse": len(down), "unchanged": len(same), "tasks": len(up) + len(down) + len(same),
            "improved_tasks": up, "worse_tasks": down}


def format_task_table(before: dict | None, after: dict) -> str:
    lines = [f"{'task':<22}{'before':>9}{'after':>9}{'n':>5}"]
    for task, a in after["tasks"].items():
        b = before["tasks"].get(task, {}).get("reward") if before else None
        lines.append(f"{task:<22}{'-' if b is None else f'{b:.3f}':>9}{a['reward']:>9.3f}{a['n']:>5}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the stage

def main(cfg: GeneralRLConfig) -> Path:
    out = begin_stage(cfg.output_dir, cfg.threads, "general")
    if out is None:
        return Path(cfg.output_dir)
    t_start = time.time()
    require_finished_input(cfg.model.name_or_path, "model.name_or_path")
    funcs, weights = routed_rewards(cfg.tasks, cfg.all_tasks)
    args = grpo_args(cfg.trainer, out, cfg.seed, weights)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    train = build_data(cfg.data, cfg.seed)
    for column in ("prompt", "task"):
        if column not in train.column_names:
            raise ValueError(f"data: general RL needs a {column!r} column; columns: {train.column_names}")
    missing = sorted(set(train["task"]) - set(cfg.tasks))
    if missing:
        raise ConfigError(f"tasks: no rewards for the data's tasks {missing} (every task needs an entry)")
    train = add_mode_flags(train, cfg.modes, cfg.seed)
    environments, tool_rounds = None, args.max_tool_calling_iterations or 3
    if cfg.environments:  # rows naming a tool set are rolled out with it (TRL's tool loop)
        environments = load_environments(cfg.environments)
        train = route_rows(train, environments)
        parse_tool_calls_in_rollouts(tokenizer)
        print(f"[general] tool use: {sum(e != NO_TOOLS for e in train['environment'])} rows run tools "
              f"({sorted(cfg.environments)}), at most {tool_rounds} rounds", flush=True)
    counts = {t: train["task"].count(t) for t in sorted(set(train["task"]))}
    print(f"[general] {len(train)} prompts over {len(counts)} tasks; {len(funcs)} routed rewards", flush=True)
    anchor = build_anchor(cfg.anchor, tokenizer, cfg.seed)

    model = load_model(cfg.model)
    if cfg.model.lora:
        lora_config(cfg.model.lora, model)  # a LoRA target that matches nothing fails now, before anything is written
    # under a launcher every process trains; one evaluates and writes the stage, the others wait for it
    before = None
    if cfg.eval_before:
        with whole_weights(model):  # generation needs whole weights: a no-op unless ZeRO-3 sharded them
            if is_main_process():
                before = {"tasks": evaluate_tasks(model, tokenizer, cfg, funcs, weights, environments, tool_rounds),
                          "math": evaluate_input(model, tokenizer, cfg.model, cfg.eval, cfg.seed),
                          "follow": (measured_by_input(cfg.model, "think_follow", cfg.follow, cfg.seed)
                                     or think_follow(model, tokenizer, cfg.follow, cfg.seed))}
    if before:
        print(format_table(before["math"], f"[general] before: {cfg.model.name_or_path}"), flush=True)
    barrier()  # the others wait here, not in the trainer's first collective (it times out sooner)
    model, trainer, log, train_seconds = train_grpo(model, tokenizer, train, funcs, args, cfg.model,
                                                    cfg.dynamic_sampling, out, "general", cfg.moe, environments,
                                                    anchor)
    if not is_main_process():  # wait for the main process to evaluate and write the stage (its barrier below)
        barrier()
        return out
    after = {"tasks": evaluate_tasks(model, tokenizer, cfg, funcs, weights, environments, tool_rounds),
             "math": evaluate(model, tokenizer, cfg.eval, cfg.seed),
             "follow": think_follow(model, tokenizer, cfg.follow, cfg.seed)}
    print(format_task_table(before["tasks"] if before else None, after["tasks"]), flush=True)
    print(format_table(after["math"], f"[general] after: {out}"), flush=True)
    print(f"[general] {format_follow(after['follow'])}", flush=True)
    summary = compare(before["tasks"], after["tasks"]) if before else None
    if summary:
        print(f"[general] {summary['improved']} of {summary['tasks']} tasks improved", flush=True)

    curves = defaultdict(list)
    for r in log:
        for k, v in r.items():
            if k.startswith("rewards/") and k.count("/") == 2 and not k.endswith(("/mean", "/std")):
                curves[k].append({"step": r["step"], "value": v})
    finish_stage(out, {
        "stage": STAGE,
        "input_model": cfg.model.name_or_path,
        "config": to_dict(cfg),
        "data": {"rows": len(train), "per_task": counts, "fingerprint": train._fingerprint},
        "metrics": {
            "train": {"steps": trainer.state.global_step, "seconds": round(train_seconds, 1),
                      "reward_curve": [{"step": r["step"], "reward": r["reward"]} for r in log if "reward" in r],
                      "per_task_curves": curves,
                      "clipped_completions": clipped_completions(log, args.max_completion_length, "general",
                                                                 args.mask_truncated_completions)},
            "eval": after["math"],
            "tasks": after["tasks"]["tasks"],
            "think_follow": after["follow"],
            **({"moe": trainer.moe_summary} if trainer.moe_summary else {}),
            **({"before": before, "comparison": summary} if before else {}),
        },
        "wall_seconds": round(time.time() - t_start, 1),
    })
    print(f"[general] done: {out} ({time.time() - t_start:.0f} s)", flush=True)
    barrier()
    return out


if __name__ == "__main__":
    run_cli(main, GeneralRLConfig, __doc__)
