"""Stage 4: task routing (a reward only ever judges its own tasks' rows, and logs per-task means), mode flags in
the prompts, a custom domain by dotted path, and the stage end to end on a tiny model.
Run: pytest tests/stages/test_general_rl.py"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_recipes.fusion import expected_mode
from stages import general_rl
from stages.common import STAGE_FILE, RecipeSpec, build_data, write_json_atomic
from stages.config import ConfigError, load_config
from stages.reasoning_rl import RewardSpec

REPO = Path(__file__).resolve().parents[2]


def test_a_routed_reward_scores_only_its_tasks_rows_and_logs_a_mean_per_task():
    seen, logged = [], {}

    def fake(completions, task=None, answers=None, **_):
        seen.append(list(task))
        return [float(c == a) for c, a in zip(completions, answers)]

    fn = general_rl.route(fake, "exact", ["a", "b"])
    scores = fn(["x", "y", "x", "z"], task=["a", "c", "b", "a"], answers=["x", "y", "q", "z"],
                log_metric=lambda k, v: logged.__setitem__(k, v), trainer_state=object())
    assert scores == [1.0, None, 0.0, 1.0]  # row 1 is task c: not this reward's row, even though it would match
    assert seen == [["a", "b", "a"]]
    assert logged == {"rewards/a/exact": 1.0, "rewards/b/exact": 0.0}
    assert general_rl.route(fake, "exact", None)(["x"], task=["c"], answers=["x"]) == [1.0]  # all_tasks


def test_the_task_map_becomes_one_trl_reward_per_distinct_spec():
    tasks = {"sort": [RewardSpec("exact_match")], "count": [RewardSpec("exact_match")],
             "calc": [RewardSpec("tool_call"), RewardSpec("tool_call_format", weight=0.2)],
             "loud": [RewardSpec("exact_match", weight=2.0)]}
    funcs, weights = general_rl.routed_rewards(tasks, [RewardSpec("mode_compliance", weight=0.5)])
    assert [f.__name__ for f in funcs] == ["exact_match", "tool_call", "tool_call_format", "exact_match_2",
                                          "mode_compliance"]
    assert weights == [1.0, 1.0, 0.2, 2.0, 0.5]
    with pytest.raises(ConfigError, match=r"tasks\.calc\.0: unknown reward"):
        general_rl.routed_rewards({"calc": [RewardSpec("tool_cal")]}, [])


def test_mode_flags_go_in_user_or_system_messages_and_the_mode_column_matches():
    ds = build_data([RecipeSpec("instructions", kwargs={"n": 300, "seed": 0})], 0)
    flagged = general_rl.add_mode_flags(ds, general_rl.ModeMix(), 0)
    modes = list(flagged["mode"])
    assert 0.3 < modes.count("no_think") / len(modes) < 0.5
    places = {"system": 0, "user": 0, "none": 0}
    for prompt, mode in zip(flagged["prompt"], modes):
        assert expected_mode(prompt) == mode
        places["system" if prompt[0]["role"] == "system" else
               "user" if prompt[-1]["content"].endswith(("/think", "/no_think")) else "none"] += 1
    assert all(places.values())


def test_continued_dialogs_keep_an_earlier_flag_when_the_last_question_has_none():
    ds = build_data([RecipeSpec("instructions", kwargs={"n": 200, "seed": 0})], 0)
    flagged = general_rl.add_mode_flags(ds, general_rl.ModeMix(dialog_share=0.5), 0)
    dialogs = [(p, m) for p, m in zip(flagged["prompt"], flagged["mode"]) if len(p) == 3]
    assert 60 < len(dialogs) < 140
    carried = 0
    for prompt, mode in dialogs:
        assert [m["role"] for m in prompt] == ["user", "assistant", "user"] and expected_mode(prompt) == mode
        assert "<think>" in prompt[1]["content"]  # a reference reply as history
        if not prompt[-1]["content"].endswith(("/think", "/no_think")):
            carried += 1
            assert prompt[0]["content"].endswith(f"/{mode}")  # the earlier flag decides
    assert 0.3 < carried / len(dialogs) < 0.7
    assert all(len(p) <= 2 for p in general_rl.add_mode_flags(ds, general_rl.ModeMix(), 0)["prompt"])


def test_the_chemistry_example_plugs_in_by_dotted_path_without_touching_rewards():
    cfg = load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "chemistry-example.yaml", [])
    funcs, _ = general_rl.routed_rewards(cfg.tasks, cfg.all_tasks)
    ds = build_data(cfg.data, 0)
    rows = [r for r in ds if r["task"] == "molar_mass"][:3] + [r for r in ds if r["task"] == "arithmetic"][:1]
    reference = [r["messages"][-1]["content"] for r in rows]
    columns = {c: [r[c] for r in rows] for c in ds.column_names if c != "prompt"}
    molar = funcs[[f.__name__ for f in funcs].index("molar_mass_reward")]
    assert molar(reference, **columns) == [1.0, 1.0, 1.0, None]
    assert molar(["<think>\n\n</think>\n\nIt is 3 g/mol."] * 4, **columns)[:3] == [0.0] * 3
    from examples.chemistry import EVAL_MOLECULES, build
    assert not set(build(n=50, split="train")["formula"]) & set(EVAL_MOLECULES)


def test_stage4_trains_on_a_task_mixture_and_reports_per_task_before_and_after(tmp_path, tiny_moe_dir):
    src = tmp_path / "stage3"
    shutil.copytree(tiny_moe_dir, src)
    write_json_atomic(src / STAGE_FILE, {"stage": "thinking_fusion"})
    tasks = ["sort_numbers", "tool_calc", "if_lowercase"]
    cfg = load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={src}", "threads=1",
        f"data=[{{name: instructions, kwargs: {{n: 12, seed: 0, tasks: {tasks}}}}}, "
        "{name: arithmetic, kwargs: {n: 4, seed: 0, difficulty: 1}}]",
        f"task_eval.data=[{{name: instructions, kwargs: {{n: 3, seed: 0, split: eval, tasks: {tasks}}}}}]",
        "task_eval.sampling.max_new_tokens=8", "eval.data.kwargs.n=2", "eval.sampling.max_new_tokens=8",
        "follow.data=[{name: arithmetic, kwargs: {n: 2, seed: 0, difficulty: 1, split: eval}}]",
        "follow.single_turn=3", "follow.dialogs=1", "follow.max_turns=2", "follow.max_new_tokens=8",
        "trainer.max_steps=2", "trainer.per_device_train_batch_size=8", "trainer.max_completion_length=8",
        "trainer.save_steps=100"])
    out = general_rl.main(cfg)
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["stage"] == "general_rl" and record["metrics"]["train"]["steps"] == 2
    assert record["data"]["per_task"] == {"arithmetic": 4, "if_lowercase": 4, "sort_numbers": 4, "tool_calc": 4}
    assert set(record["metrics"]["tasks"]) == set(tasks) == set(record["metrics"]["before"]["tasks"]["tasks"])
    assert record["metrics"]["comparison"]["tasks"] == 3
    curves = record["metrics"]["train"]["per_task_curves"]
    assert any(k.startswith("rewards/tool_calc/tool_call") for k in curves)
    clipped = record["metrics"]["train"]["clipped_completions"]  # 8-token completions: some are cut off
    assert clipped["max_completion_length"] == 8 and clipped["logged_steps"] >= 1 and clipped["mean_ratio"] > 0
    assert "think_follow" in record["metrics"]["think_follow"]


def test_a_data_task_without_rewards_is_refused_before_training(tmp_path, tiny_moe_dir):
    src = tmp_path / "stage3"
    shutil.copytree(tiny_moe_dir, src)
    write_json_atomic(src / STAGE_FILE, {"stage": "thinking_fusion"})
    cfg = load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={src}", "threads=1",
        "data=[{name: 'examples.chemistry:build', kwargs: {n: 4}}]"])
    with pytest.raises(ConfigError, match=r"no rewards for the data's tasks \['molar_mass'\]"):
        general_rl.main(cfg)


def test_sampled_task_eval_scores_every_reply_of_every_prompt_and_repeats_with_its_seed(tmp_path, tiny_moe_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tasks = ["sort_numbers", "if_lowercase"]
    cfg = load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={tiny_moe_dir}",
        f"task_eval.data=[{{name: instructions, kwargs: {{n: 2, seed: 0, split: eval, tasks: {tasks}}}}}]",
        "task_eval.sampling={do_sample: true, temperature: 1.0, max_new_tokens: 6}", "task_eval.samples_per_prompt=3"])
    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_moe_dir)
    funcs, weights = general_rl.routed_rewards(cfg.tasks, cfg.all_tasks)
    first = general_rl.evaluate_tasks(model, tokenizer, cfg, funcs, weights)
    assert {t: r["n"] for t, r in first["tasks"].items()} == {"sort_numbers": 3, "if_lowercase": 3}
    again = general_rl.evaluate_tasks(model, tokenizer, cfg, funcs, weights)
    assert again["tasks"] == first["tasks"]
    with pytest.raises(ConfigError, match="samples_per_prompt > 1 needs task_eval.sampling.do_sample"):
        load_config(general_rl.GeneralRLConfig, REPO / "configs" / "stage4_general" / "nano.yaml",
                    ["output_dir=x", "task_eval.sampling.do_sample=false", "task_eval.samples_per_prompt=2"])
