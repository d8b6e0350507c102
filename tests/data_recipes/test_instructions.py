"""The general-instruction recipe: every reference answer earns the maximum of each reward its task is routed to,
wrong answers earn less, rewards ignore other tasks' rows, and the eval split is held out by signature.
Run: nice -n 19 .venv/bin/python -m pytest -q tests/data_recipes/test_instructions.py"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict

import pytest
from datasets import concatenate_datasets

from data_recipes import get_recipe
from data_recipes.arithmetic import is_eval
from data_recipes.instructions import FEATURES, TASKS, build, reward_specs
from rewards import REWARDS, get_reward

ROWS_PER_TASK = 30
MAX_SCORE = {"rag_grounding": 1.5}  # 1 (every claim supported) + answer_bonus 0.5 (the gold answer is in it)
EMPTY_THINK = "<think>\n\n</think>\n\n"
WRONG = {"refusal_safe": "I'm sorry, but I can't help with that."}  # refusing is the wrong answer there
DEFAULT_WRONG = "I do not know the answer to this question."
# Tasks whose rewards check what the answer says, so another row's (correct) answer is a wrong one. The
# instruction-following and language tasks check form, which another row of the same task may share.
CONTENT_TASKS = ["json_output", "tool_calc", "tool_units", "tool_lookup", "qa_extract", "multiple_choice", "rag_cite",
                 "translate_words", "summarize", "sort_numbers", "reverse_words", "count_words", "spell_word",
                 "sort_words", "uppercase_copy"]


@functools.cache
def dataset(split: str = "train", think: bool = False, seed: int = 0):
    return build(n=ROWS_PER_TASK * len(TASKS), seed=seed, split=split, think=think)


def trainer_columns(ds) -> dict[str, list]:
    """What TRL's GRPO trainer hands a reward: every dataset column but ``prompt``, plus ``prompts``."""
    columns = {name: list(ds[name]) for name in ds.column_names if name != "prompt"}
    return {**columns, "prompts": list(ds["prompt"])}


def score_rows(ds, completions: list) -> dict[str, list[float]]:
    """reward name -> scores for every row, each reward built from reward_specs exactly as stage 4 would."""
    columns = trainer_columns(ds)
    return {spec["name"]: get_reward(spec["name"], **spec["kwargs"])(completions=completions, **columns)
            for spec in reward_specs()}


def weighted_totals(ds, completions: list) -> dict[str, list[float]]:
    """task -> the weighted sum of its routed rewards, per row."""
    scores = score_rows(ds, completions)
    totals: dict[str, list[float]] = defaultdict(list)
    for i, task in enumerate(ds["task"]):
        totals[task].append(sum(r["weight"] * scores[r["name"]][i] for r in TASKS[task].rewards))
    return totals


def best_total(task: str) -> float:
    return sum(r["weight"] * MAX_SCORE.get(r["name"], 1.0) for r in TASKS[task].rewards)


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("think", [False, True])
def test_every_reference_answer_scores_the_maximum_of_each_routed_reward(split, think):
    ds = dataset(split, think)
    completions = [messages[1:] for messages in ds["messages"]]  # the reply: with a tool's response, all its turns
    scores = score_rows(ds, completions)
    assert sorted(set(ds["task"])) == sorted(TASKS)
    assert all(list(ds["task"]).count(task) == ROWS_PER_TASK for task in TASKS)
    failures = [
        (task, reward["name"], scores[reward["name"]][i], completions[i])
        for i, task in enumerate(ds["task"])
        for reward in TASKS[task].rewards
        if scores[reward["name"]][i] != MAX_SCORE.get(reward["name"], 1.0)
    ]
    assert failures == []


def test_a_fixed_wrong_answer_scores_lower_than_the_reference_on_every_task():
    ds = dataset()
    wrong = [EMPTY_THINK + WRONG.get(task, DEFAULT_WRONG) for task in ds["task"]]
    totals = weighted_totals(ds, wrong)
    for task in TASKS:
        assert sum(totals[task]) / len(totals[task]) < best_total(task) - 0.1, task


def test_another_rows_answer_scores_lower_on_tasks_that_check_content():
    ds = dataset()
    completions = [messages[1:] for messages in ds["messages"]]  # the reply: with a tool's response, all its turns
    rows_of = defaultdict(list)
    for i, task in enumerate(ds["task"]):
        rows_of[task].append(i)
    shifted = list(completions)
    for rows in rows_of.values():  # each row gets the reference of the next row of its own task
        for i, j in zip(rows, rows[1:] + rows[:1]):
            shifted[i] = completions[j]
    totals = weighted_totals(ds, shifted)
    for task in CONTENT_TASKS:
        assert sum(totals[task]) / len(totals[task]) < best_total(task) - 0.1, task


def test_rewards_return_none_for_rows_of_other_tasks_in_a_mixed_batch():
    ds = dataset()
    columns = trainer_columns(ds)
    # Conversational completions, as TRL passes them for a chat dataset.
    completions = [m[1:] for m in ds["messages"]]
    for spec in reward_specs():
        routed = get_reward(spec["name"], **spec["kwargs"])(completions=completions, **columns)
        own = [task in spec["kwargs"]["tasks"] for task in ds["task"]]
        assert [score is not None for score in routed] == own, spec["name"]
        # Without `tasks`, a reward whose columns only its own tasks fill still leaves other rows alone: our
        # None values read as "not my row" and nothing raises on them.
        unrouted = get_reward(spec["name"])(completions=completions, **columns)
        if spec["name"] not in ("exact_match", "qa_f1", "translation_chrf", "summary_rouge", "language_consistency"):
            assert [score is not None for score in unrouted] == own, spec["name"]


def test_train_and_eval_are_disjoint_by_signature_and_eval_is_the_held_out_bucket():
    train, held_out = dataset("train"), dataset("eval")
    assert set(train["signature"]).isdisjoint(held_out["signature"])
    assert not any(is_eval(signature, 0.05) for signature in train["signature"])
    assert all(is_eval(signature, 0.05) for signature in held_out["signature"])
    assert all(signature.startswith(f"{task}|") for task, signature in zip(train["task"], train["signature"]))


def test_a_signature_fixes_the_answer_but_not_the_wording_of_the_prompt():
    # The split hashes the signature, so it must hold all the content (one signature, one answer) and none of
    # the wording (rewording an eval item must not move it into training).
    rng = random.Random(0)
    reworded = set()
    for name, spec in TASKS.items():
        answers, prompts = defaultdict(set), defaultdict(set)
        for _ in range(300):
            item = spec.generate(rng)
            if item is not None:
                answers[item["signature"]].add(item["answer"])
                prompts[item["signature"]].add(item["prompt"])
        if name != "if_repeat_prompt":  # its answer opens with the request, wording included
            assert all(len(found) == 1 for found in answers.values()), name
        if any(len(found) > 1 for found in prompts.values()):
            reworded.add(name)
    assert {"spell_word", "refusal_safe", "uppercase_copy", "length_words", "translate_words"} <= reworded


def test_draws_an_answer_does_not_use_stay_out_of_the_signature():
    # Otherwise one item could get two signatures and land in both splits. For the instruction tasks the
    # answer and the instruction arguments are the whole content.
    rng = random.Random(1)
    signatures = defaultdict(set)
    for name in [name for name in TASKS if name.startswith("if_")] + ["train_constraints"]:
        for _ in range(300):
            item = TASKS[name].generate(rng)
            if item is not None:
                kwargs = [{k: v for k, v in kw.items() if k != "prompt_to_repeat"} for kw in json.loads(item["kwargs"])]
                content = (name, item["answer"], tuple(item["instruction_id_list"]), json.dumps(kwargs))
                signatures[content].add(item["signature"])
    assert all(len(found) == 1 for found in signatures.values())


def test_same_seed_gives_the_same_rows_and_another_seed_other_rows():
    first = build(n=60, seed=3)
    assert first.to_list() == build(n=60, seed=3).to_list()
    assert first["signature"] != build(n=60, seed=4)["signature"]


def test_think_changes_only_the_assistant_turn():
    plain, thinking = dataset("train", False), dataset("train", True)
    for column in FEATURES:
        if column != "messages":
            assert list(plain[column]) == list(thinking[column]), column
    for no_think, think in zip(plain["messages"], thinking["messages"]):
        assert no_think[0] == think[0] and len(no_think) == len(think)
        for plain_turn, think_turn in zip(no_think[1:], think[1:]):  # a tool-use reply: every assistant turn
            if think_turn["role"] == "tool":
                assert plain_turn == think_turn
                continue
            assert plain_turn["content"].startswith(EMPTY_THINK)
            reasoning, answer = re.fullmatch(r"<think>\n(.+)\n</think>\n\n(.+)", think_turn["content"],
                                             re.DOTALL).groups()
            assert 1 <= len(reasoning.splitlines()) <= 4
            assert answer == plain_turn["content"][len(EMPTY_THINK):]


def test_tasks_filter_keeps_the_listed_tasks_round_robin_with_rows_independent_of_the_others():
    ds = build(n=9, tasks=["sort_numbers", "spell_word", "tool_units"])
    assert list(ds["task"]) == ["sort_numbers", "spell_word", "tool_units"] * 3
    alone = build(n=3, tasks=["spell_word"])
    assert list(alone["signature"]) == [s for s, t in zip(ds["signature"], ds["task"]) if t == "spell_word"]


def test_any_subsets_of_tasks_concatenate_into_one_dataset():
    first, second = build(n=4, tasks=["if_json", "refusal_safe"]), build(n=4, tasks=["rag_cite", "tool_calc"])
    assert first.features == second.features == FEATURES
    assert len(concatenate_datasets([first, second])) == 8


def test_unknown_task_is_a_value_error_naming_it_and_the_known_tasks():
    with pytest.raises(ValueError, match=r"unknown instruction task 'poetry'; known: \[.*'sort_numbers'"):
        build(n=4, tasks=["sort_numbers", "poetry"])
    with pytest.raises(ValueError, match="'poetry'"):
        reward_specs(["poetry"])
    with pytest.raises(ValueError, match="list of task names"):
        build(n=4, tasks="sort_numbers")


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_n_is_a_value_error(n):
    with pytest.raises(ValueError, match="n must be a positive"):
        build(n=n)


def test_bad_split_or_eval_fraction_is_a_value_error():
    with pytest.raises(ValueError, match="split must be"):
        build(n=4, split="test")
    with pytest.raises(ValueError, match="eval_fraction"):
        build(n=4, eval_fraction=1.0)


def test_there_are_at_least_18_tasks_and_every_reward_spec_builds():
    assert len(TASKS) >= 18
    specs = reward_specs()
    assert {spec["name"] for spec in specs} <= set(REWARDS)
    for spec in specs:
        get_reward(spec["name"], **spec["kwargs"])  # a kwarg the reward does not take would raise here
    assert sorted(t for spec in specs for t in spec["kwargs"]["tasks"]) == sorted(
        task for task in TASKS for _ in TASKS[task].rewards)


def test_reward_specs_route_rewards_that_share_a_column_to_their_own_tasks():
    specs = {spec["name"]: spec for spec in reward_specs(["sort_numbers", "qa_extract", "rag_cite", "tool_calc"])}
    assert specs["exact_match"]["kwargs"]["tasks"] == ["sort_numbers"]
    assert specs["qa_f1"]["kwargs"]["tasks"] == ["qa_extract"]
    assert specs["rag_grounding"]["kwargs"]["tasks"] == ["rag_cite"]
    assert (specs["tool_call"]["weight"], specs["tool_call_format"]["weight"]) == (1.0, 0.2)


def test_prompts_and_answers_stay_short_for_a_tiny_model():
    ds = dataset()
    for task, messages in zip(ds["task"], ds["messages"]):
        assert len(messages[0]["content"].split()) < 60, (task, messages[0]["content"])
        for turn in messages[1:]:
            assert len(turn["content"].removeprefix(EMPTY_THINK).split()) <= 45, (task, turn["content"])


def test_spelled_words_have_no_letter_a_that_exact_match_would_drop():
    spelled = [messages[1]["content"] for task, messages in zip(dataset()["task"], dataset()["messages"])
               if task == "spell_word"]
    assert spelled and not any(" a " in f" {text[len(EMPTY_THINK):]} " for text in spelled)
    # why: SQuAD normalisation deletes a lone "a", so a spelling that skips every "a" would still match
    assert get_reward("exact_match")(["b n n"], answers=[["b a n a n a"]]) == [1.0]


def test_recipe_is_registered():
    assert get_recipe("instructions") is build
