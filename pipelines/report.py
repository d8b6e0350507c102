"""The report card of a pipeline run: one markdown file plus PNG plots, from the stages' own records.

    python -m pipelines.report runs/nano            # (make pipeline writes it at the end)

Everything comes from files the stages wrote (``stage.json``, ``train_log.jsonl``, data reports and cards,
``thinking_budget.png``), so the card can be rebuilt at any time and never disagrees with the run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from stages.common import is_complete, read_stage
from stages.evaluate import format_follow

REPORT = "report.md"
PLOTS = "report"
CURVES = [  # (title, log keys): what each training plot shows when the stage logged it
    ("loss", ["loss", "anchor/loss"]),
    ("reward", ["reward"]),
    ("rewards", None),  # every rewards/<name>/mean
    ("entropy / KL", ["entropy", "kl"]),
    ("MoE balance loss", ["aux_loss", "moe/global_lbl"]),
    ("expert load (max/mean)", ["moe/imbalance_max", "moe/imbalance_mean"]),
]


def training_plot(log: list[dict], path: Path, title: str) -> bool:
    """A row of small plots, one per curve the stage logged; False when it logged none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name, keys in CURVES:
        if keys is None:
            keys = sorted({k for r in log for k in r if k.startswith("rewards/") and k.endswith("/mean")})
        series = {k: [(r["step"], r[k]) for r in log if isinstance(r.get(k), (int, float)) and "step" in r]
                  for k in keys}
        series = {k: v for k, v in series.items() if v}
        if series:
            panels.append((name, series))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), dpi=100, squeeze=False)
    for ax, (name, series) in zip(axes[0], panels):
        for key, points in series.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key.removeprefix("rewards/"))
        ax.set_title(name)
        ax.set_xlabel("step")
        if len(series) > 1:
            ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def _log(stage_dir: Path) -> list[dict]:
    path = stage_dir / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _eval_rows(name: str, ev: dict | None) -> list[str]:
    if not ev:
        return []
    return [f"| {name} | {mode} | {r.get('accuracy')} | {r.get('well_formed')} | {r.get('mean_tokens')} | "
            f"{r.get('n')} |" for mode, r in ev.items()]


def write_report(run_dir: str | Path, stage_dirs: list[str | Path]) -> Path:
    """Write ``<run_dir>/report.md`` and ``<run_dir>/report/*.png``; returns the markdown path."""
    run_dir = Path(run_dir)
    plots = run_dir / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    done = [Path(d) for d in stage_dirs if is_complete(d)]
    lines = [f"# Report card: {run_dir}", ""]
    missing = [str(d) for d in stage_dirs if not is_complete(d)]
    if missing:
        lines += [f"Unfinished stages (not reported): {', '.join(missing)}", ""]

    lines += ["## Stages", "", "| stage | dir | input | wall time (s) | peak memory (MB) | train steps |",
              "|---|---|---|---|---|---|"]
    records = {d: read_stage(d) for d in done}
    for d, r in records.items():
        lines.append(f"| {r['stage']} | {d} | {r.get('input_model')} | {r.get('wall_seconds')} | "
                     f"{r.get('peak_memory_mb')} | {r.get('metrics', {}).get('train', {}).get('steps')} |")
    total = sum(r.get("wall_seconds") or 0 for r in records.values())
    lines += ["", f"Total wall time of the stages: {total:.0f} s.", ""]

    lines += ["## Evaluation per stage and mode (held-out)", "",
              "| stage | mode | accuracy | well-formed | mean tokens | n |", "|---|---|---|---|---|---|"]
    first = next(iter(records.values()), None)
    if first and first.get("metrics", {}).get("eval_before"):
        lines += _eval_rows(f"input of {first['stage']}", first["metrics"]["eval_before"])
    for r in records.values():
        lines += _eval_rows(r["stage"], r.get("metrics", {}).get("eval"))
    lines.append("")

    for d, r in records.items():
        m, stage = r.get("metrics", {}), r["stage"]
        lines += [f"## {stage}", ""]
        png = plots / f"{d.name}_training.png"
        if training_plot(_log(d), png, f"{stage}: training"):
            lines += [f"![{stage} training]({PLOTS}/{png.name})", ""]
        curve = m.get("train", {}).get("reward_curve")
        if curve:
            lines += [f"Mean reward: first step {curve[0]['reward']:.3f}, last step {curve[-1]['reward']:.3f} "
                      f"({len(curve)} steps).", ""]
        report = d / "data_report.json"
        if report.is_file():
            rep = json.loads(report.read_text())
            lines += [f"Data: {rep['rows_kept']} of {rep['rows_in']} rows kept; dropped by filter: "
                      f"{json.dumps(rep['dropped'])}.", ""]
        card = r.get("data", {}).get("card")
        if card:
            lines += [f"Fused data: {card['rows']} rows; per source {json.dumps(card['per_source'])}; per mode "
                      f"{json.dumps(card['per_mode'])}; per flag placement {json.dumps(card['per_placement'])}; "
                      f"per turn count {json.dumps(card['per_turn_count'])}.", ""]
            rej = card.get("rejection_sampling") or {}
            if rej:
                lines += [f"Rejection sampling: {rej.get('kept')} thinking samples kept from {rej.get('samples')} "
                          f"({rej.get('queries_with_a_kept_sample')}/{rej.get('queries')} queries; acceptance "
                          f"{rej.get('acceptance_rate')}; dropped {json.dumps(rej.get('dropped_by_filter'))}).", ""]
        if r.get("data", {}).get("per_task"):
            lines += [f"Data: {r['data']['rows']} prompts over {len(r['data']['per_task'])} tasks.", ""]
        follow = m.get("think_follow")
        if follow:
            lines += [format_follow(follow).replace("ThinkFollow", "ThinkFollow:", 1) + ".", ""]
        budgets = m.get("thinking_budget")
        if budgets:
            lines += ["| thinking budget | accuracy | mean thinking tokens |", "|---|---|---|"]
            lines += [f"| {'unlimited' if b['budget'] is None else b['budget']} | {b['accuracy']} | "
                      f"{b['mean_thinking_tokens']} |" for b in budgets]
            if (d / "thinking_budget.png").is_file():
                shutil.copyfile(d / "thinking_budget.png", plots / f"{d.name}_thinking_budget.png")
                lines += ["", f"![accuracy vs thinking budget]({PLOTS}/{d.name}_thinking_budget.png)"]
            lines.append("")
        moe = m.get("moe")
        if moe and moe.get("load_share"):
            lines += [f"MoE ({moe['balance']} balance, coefficient {moe['coef']}): max/mean expert load per layer "
                      f"{moe['imbalance']}; router entropy per layer {moe['router_entropy']} nats (uniform "
                      f"{moe['uniform_entropy']}).", ""]
            if (d / "expert_load.png").is_file():
                shutil.copyfile(d / "expert_load.png", plots / f"{d.name}_expert_load.png")
                lines += [f"![expert load]({PLOTS}/{d.name}_expert_load.png)", ""]
        tasks, before = m.get("tasks"), (m.get("before") or {}).get("tasks", {}).get("tasks", {})
        if tasks:
            comp = m.get("comparison") or {}
            lines += [f"Per-task reward on held-out prompts: {comp.get('improved')} of {comp.get('tasks')} tasks "
                      "improved.", "", "| task | before | after | n |", "|---|---|---|---|"]
            lines += [f"| {t} | {before.get(t, {}).get('reward', '-')} | {v['reward']} | {v['n']} |"
                      for t, v in tasks.items()]
            lines.append("")
    if first:
        lines += ["## Versions", "", "| package | version |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in first.get("versions", {}).items()]
        lines += ["", f"git: {first.get('git_sha')}", ""]
    path = run_dir / REPORT
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m pipelines.report RUN_DIR")
    root = Path(sys.argv[1])
    print(write_report(root, sorted(p for p in root.iterdir() if (p / "stage.json").is_file())))
