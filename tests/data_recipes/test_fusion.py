"""The fused stage-3 dataset's pieces: flags decide the mode, dialogs follow the last flag, rejection sampling
keeps only verified samples (capped per query), and the card counts what is there."""

from __future__ import annotations

import random

import pytest

from data_recipes.arithmetic import build
from data_recipes.fusion import (
    FlagSettings,
    MultiTurnSettings,
    broken_reply,
    dataset_card,
    expected_mode,
    mode_of,
    multi_turn,
    rejection_sample,
    single_turn,
)
from rewards import get_reward
from rewards.format import prompt_mode

THINK = "<think>\nwork\n</think>\n\nThe answer is \\boxed{7}."
NO_THINK = "<think>\n\n</think>\n\nThe answer is \\boxed{7}."


def rows(reply: str, n: int = 30) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": reply}]}
            for i in range(n)]


def test_mode_of_reads_the_think_block():
    assert mode_of(THINK) == "think" and mode_of(NO_THINK) == "no_think"
    assert mode_of("no block at all") == "think"  # not a non-thinking reply: that needs the empty block


def test_expected_mode_is_the_last_flag_in_user_or_system_messages_else_thinking():
    assert expected_mode([{"role": "user", "content": "hi"}]) == "think"
    assert expected_mode([{"role": "system", "content": "/no_think"}, {"role": "user", "content": "hi"}]) == "no_think"
    assert expected_mode([{"role": "system", "content": "/no_think"}, {"role": "user", "content": "hi /think"}]) \
        == "think"
    assert expected_mode([{"role": "user", "content": "hi /no_think"}, {"role": "assistant", "content": "/think"},
                          {"role": "user", "content": "and?"}]) == "no_think"  # assistant text is not a flag


def test_single_turn_places_flags_in_user_and_system_and_leaves_some_thinking_unflagged():
    rng = random.Random(0)
    out = single_turn(rows(THINK, 200), "t", FlagSettings(), rng) + single_turn(rows(NO_THINK, 200), "n",
                                                                                 FlagSettings(), rng)
    placements = {(r["mode"], r["placement"]) for r in out}
    assert placements == {("think", "none"), ("think", "user"), ("think", "system"), ("no_think", "user"),
                          ("no_think", "system"), ("no_think", "hard_switch")}
    for r in out:
        reply = r["messages"][-1]
        assert r["mode"] == mode_of(reply["content"])
        assert r["turns"] == 1 and reply["role"] == "assistant"
        if r["placement"] == "hard_switch":  # no flag: the given empty block (enable_thinking=False) decides
            assert reply["think_prefilled"] and prompt_mode(r["messages"][:-1]) is None
        else:
            assert expected_mode(r["messages"][:-1]) == r["mode"] and "think_prefilled" not in reply
        if r["placement"] == "system":
            assert r["messages"][0]["role"] == "system" and ("/think" in r["messages"][0]["content"]
                                                             or "/no_think" in r["messages"][0]["content"])


def test_every_turn_of_a_multi_turn_dialog_follows_the_last_flag_and_becomes_its_own_sample():
    rng = random.Random(1)
    think = [{"messages": [{"role": "user", "content": f"tq{i}"}, {"role": "assistant", "content": THINK}],
              "mode": "think"} for i in range(20)]
    no_think = [{"messages": [{"role": "user", "content": f"nq{i}"}, {"role": "assistant", "content": NO_THINK}],
                 "mode": "no_think"} for i in range(20)]
    out = multi_turn({"think": think, "no_think": no_think}, MultiTurnSettings(dialogs=60, min_turns=2, max_turns=3),
                     FlagSettings(), rng)
    assert {r["turns"] for r in out} == {1, 2, 3}
    switched = 0
    for r in out:
        msgs = r["messages"]
        assert msgs[-1]["role"] == "assistant"
        assert mode_of(msgs[-1]["content"]) == expected_mode(msgs[:-1]) == r["mode"]
        users = [m["content"] for m in msgs if m["role"] == "user"]
        assert len(users) == r["turns"]
        modes = {mode_of(m["content"]) for m in msgs if m["role"] == "assistant"}
        switched += len(modes) == 2
    assert switched > 10  # dialogs really switch modes between turns
    with pytest.raises(ValueError, match="no no_think rows"):
        multi_turn({"think": think, "no_think": []}, MultiTurnSettings(dialogs=1), FlagSettings(), rng)


def test_broken_history_replies_are_cut_or_looping_while_the_trained_reply_stays_clean():
    think = [{"messages": [{"role": "user", "content": f"tq{i}"}, {"role": "assistant", "content": THINK * 3}]}
             for i in range(20)]
    no_think = [{"messages": [{"role": "user", "content": f"nq{i}"}, {"role": "assistant", "content": NO_THINK}]}
                for i in range(20)]
    pools = {"think": think, "no_think": no_think}
    settings = MultiTurnSettings(dialogs=40, min_turns=3, max_turns=3, broken_history_share=1.0, broken_max_tokens=60)
    out = multi_turn(pools, settings, FlagSettings(), random.Random(2))
    clean = {THINK * 3, NO_THINK}
    later = [r for r in out if r["turns"] > 1]
    for r in later:
        replies = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        assert replies[-1] in clean  # the trained reply is never broken, and it follows the last flag
        assert mode_of(replies[-1]) == expected_mode(r["messages"][:-1]) == r["mode"]
        for history in replies[:-1]:
            assert history not in clean and len(history) <= 60
            assert cut_or_looping(history, THINK * 3) or cut_or_looping(history, NO_THINK)
    unclosed = sum("</think>" not in m["content"] for r in later for m in r["messages"][:-1]
                   if m["role"] == "assistant")
    assert unclosed > 10  # many are left mid-thought, as a reply cut at the token limit is
    plain = multi_turn(pools, MultiTurnSettings(dialogs=40, min_turns=3, max_turns=3), FlagSettings(),
                       random.Random(2))
    assert all(m["content"] in clean for r in plain for m in r["messages"] if m["role"] == "assistant")


def cut_or_looping(broken: str, original: str) -> bool:
    """``broken`` is a prefix of ``original``, then possibly its last 2-12 characters over and over."""
    same = next((i for i, (a, b) in enumerate(zip(broken, original)) if a != b), min(len(broken), len(original)))
    return same == len(broken) or any(all(broken[i] == broken[i - k] for i in range(same, len(broken)))
                                      for k in range(2, 13))


@pytest.mark.parametrize("seed", range(5))
def test_a_broken_reply_never_exceeds_its_cap(seed):
    rng = random.Random(seed)
    for _ in range(50):
        assert 1 <= len(broken_reply(THINK * 20, rng, 80)) <= 80


def test_broken_replies_are_measured_in_the_units_of_the_truncate_function():
    """With a tokenizer's truncation (here: 3-character "tokens"), loops run to half the cap or more, as a reply
    that ran to max_new_tokens does, and never past it."""
    def tokens(text):
        return [text[i:i + 3] for i in range(0, len(text), 3)]

    def truncate(text, n):
        return "".join(tokens(text)[:n])

    rng = random.Random(0)
    lengths = [len(tokens(broken_reply(THINK * 20, rng, 100, truncate))) for _ in range(200)]
    assert max(lengths) <= 100
    assert sum(n >= 50 for n in lengths) > 60  # the loops (about half) fill 50-100 tokens
    assert max(lengths) > 100 // 3 * 2  # more characters than the character cap would allow


def test_rejection_sampling_keeps_only_verified_samples_capped_per_query():
    queries = [dict(r) for r in build(n=4, seed=0, difficulty=1)]
    gold = [q["answer"] for q in queries]
    calls = []

    def fake_generate(prompts):  # query 0: always right; 1: right once; 2 and 3: never
        calls.append(len(prompts))
        out = []
        for i, _ in enumerate(prompts):
            q, j = divmod(i, 3)
            right = q == 0 or (q == 1 and j == 0)
            out.append(f"<think>\nwork\n</think>\n\nThe answer is \\boxed{{{gold[q] + (0 if right else 1)}}}.")
        return out

    verify = get_reward("math_accuracy")

    def response_filter(cands):
        scores = verify([c["messages"][-1]["content"] for c in cands], solution=[c["solution"] for c in cands])
        kept = [i for i, s in enumerate(scores) if s == 1.0]
        return kept, {"wrong_answer": len(cands) - len(kept)}

    kept, stats = rejection_sample(queries, fake_generate, k=3, cap=2, response_filter=response_filter)
    assert calls == [12]
    # query 0's three right answers are identical: kept once (duplicates add nothing); query 1: one
    assert [k["query"] for k in kept] == [0, 1]
    assert all(verify([k["messages"][-1]["content"]], solution=[k["solution"]]) == [1.0] for k in kept)
    assert kept[0]["messages"][0] == queries[0]["prompt"][0]
    assert stats["samples"] == 12 and stats["passed_filters"] == 4 and stats["kept"] == 2
    assert stats["queries_with_a_kept_sample"] == 2 and stats["dropped_by_filter"] == {"wrong_answer": 8}
    with pytest.raises(ValueError, match="samples_per_query"):
        rejection_sample(queries, fake_generate, k=0, cap=1, response_filter=response_filter)


def test_dataset_card_counts_sources_modes_placements_and_turns():
    out = single_turn(rows(THINK, 10), "rs", FlagSettings(), random.Random(0))
    card = dataset_card(out, {"kept": 10})
    assert card["rows"] == 10 and card["per_source"] == {"rs": 10} and card["per_mode"] == {"think": 10}
    assert sum(card["per_placement"].values()) == 10 and card["per_turn_count"] == {"1": 10}
    assert card["rejection_sampling"] == {"kept": 10}


def test_direct_arithmetic_answers_are_non_thinking_and_correct():
    ds = build(n=20, seed=3, difficulty=2, answer_style="direct")
    replies = [m[1]["content"] for m in ds["messages"]]
    assert all(mode_of(r) == "no_think" for r in replies)
    assert get_reward("math_accuracy")(replies, solution=list(ds["solution"])) == [1.0] * 20
    assert ds["prompt"] == build(n=20, seed=3, difficulty=2)["prompt"]  # same problems as the thinking build
    with pytest.raises(ValueError, match="answer_style"):
        build(n=1, answer_style="terse")


def test_a_tool_use_dialog_is_flagged_as_one_reply_and_a_hard_switch_prefills_each_of_its_turns():
    from data_recipes import instructions

    rows = [{"messages": m} for m in instructions.build(n=12, seed=0, tasks=["tool_answer_calc"])["messages"]]
    settings = FlagSettings(hard_switch_share=1.0)  # every non-thinking row without a flag
    out = single_turn(rows, "tools", settings, random.Random(0))
    for row, source in zip(out, rows):
        roles = [m["role"] for m in row["messages"]]
        assert roles[-3:] == ["assistant", "tool", "assistant"] and row["placement"] == "hard_switch"
        assistant = [m for m in row["messages"] if m["role"] == "assistant"]
        assert all(m.get("think_prefilled") for m in assistant)  # enable_thinking=False prefills every turn
        assert [m["content"] for m in row["messages"][-3:]] == [m["content"] for m in source["messages"][1:]]
    with pytest.raises(ValueError, match="expected a user message then the assistant's reply"):
        single_turn([{"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "5"}]}],
                    "bad", settings, random.Random(0))
