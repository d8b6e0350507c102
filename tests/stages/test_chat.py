"""`make chat`: the /think and /no_think soft switch, splitting and showing replies, the loop on the shipped nano
base, and the CLI's errors. Run: pytest tests/stages/test_chat.py"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages import chat
from stages.chat import ChatSettings, chat_loop, last_flag, render_reply, split_reply
from stages.generation import STOP_THINKING, SamplingSettings

REPO = Path(__file__).resolve().parents[2]
NANO_BASE = REPO / "checkpoints" / "nano-moe-base"
STOP_SENTENCE = STOP_THINKING.split("</think>")[0].strip()


def user(text):
    return {"role": "user", "content": text}


def run_chat(*args, stdin=""):
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "stages.chat", *args], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=120, env=env)


# ---------------------------------------------------------------- last_flag

def test_flag_in_user_message_switches_mode():
    assert last_flag([user("What is 2 + 3? /no_think")]) == "no_think"
    assert last_flag([user("/think What is 2 + 3?")]) == "think"


def test_flag_in_system_message_counts():
    assert last_flag([{"role": "system", "content": "Be brief. /no_think"}, user("What is 2 + 3?")]) == "no_think"


def test_last_flag_wins_across_turns_and_within_a_message():
    history = [user("a /no_think"), {"role": "assistant", "content": "x"}, user("b /think"),
               {"role": "assistant", "content": "y"}, user("c")]
    assert last_flag(history) == "think"
    assert last_flag([user("a /think then /no_think")]) == "no_think"


def test_flags_in_assistant_turns_do_not_count():
    assert last_flag([user("a"), {"role": "assistant", "content": "/no_think"}, user("b")]) is None


def test_no_flag_gives_none():
    assert last_flag([user("What is 2 + 3?")]) is None
    assert last_flag([]) is None


def test_flag_like_words_inside_other_words_do_not_count():
    assert last_flag([user("/thinking about it"), user("a/no_think"), user("/no_thinker"), user("//think")]) is None


# ---------------------------------------------------------------- split_reply, render_reply

def test_split_reply_with_a_think_block():
    assert split_reply("<think>\n2 plus 3\n</think>\n\nThe answer is 5.") == ("2 plus 3", "The answer is 5.")


def test_split_reply_with_the_empty_think_block_has_no_thinking():
    assert split_reply("<think>\n\n</think>\n\nThe answer is 5.") == ("", "The answer is 5.")


def test_split_reply_without_a_think_block_is_all_answer():
    assert split_reply("The answer is 5.\n") == ("", "The answer is 5.")


def test_split_reply_cut_off_while_thinking_has_no_answer():
    assert split_reply("<think>\n2 plus 3 is") == ("2 plus 3 is", "")


def test_render_reply_plain_labels_thinking_and_indents_its_lines():
    assert render_reply("one\ntwo", "5", color=False) == "thinking: one\n          two\n5"
    assert render_reply("", "5", color=False) == "5"
    assert render_reply("hm", "", color=False) == "thinking: hm\n(no answer)"


def test_render_reply_color_dims_only_the_thinking():
    assert render_reply("hm", "5", color=True) == "\x1b[2mthinking: hm\x1b[0m\n5"


# ---------------------------------------------------------------- the loop, with a stand-in for generate

@pytest.fixture
def canned_generate(monkeypatch):
    calls = []

    def fake(model, tokenizer, prompts, enable_thinking=True, thinking_budget=None, sampling=None):
        calls.append({"messages": [dict(m) for m in prompts[0]], "enable_thinking": enable_thinking})
        return ["<think>\nhm\n</think>\n\nfive"]

    monkeypatch.setattr(chat, "generate", fake)
    return calls


def test_reset_clears_history_but_keeps_the_system_message(canned_generate):
    out = io.StringIO()
    history = chat_loop(None, None, ["a", "", "/reset", "b /no_think"], out, ChatSettings(system="Be brief."))
    assert history == [{"role": "system", "content": "Be brief."}, user("b /no_think"),
                       {"role": "assistant", "content": "<think>\nhm\n</think>\n\nfive"}]
    assert [c["enable_thinking"] for c in canned_generate] == [True, False]
    assert len(canned_generate[1]["messages"]) == 2  # the first exchange is gone from the prompt
    assert "(history cleared)" in out.getvalue()
    assert out.getvalue().count("thinking: hm\nfive") == 2


def test_exit_stops_reading_lines(canned_generate):
    history = chat_loop(None, None, ["a", "/exit", "never sent"], io.StringIO(), ChatSettings())
    assert [m["content"] for m in history if m["role"] == "user"] == ["a"]
    assert len(canned_generate) == 1


# ---------------------------------------------------------------- the loop on the shipped nano base

@pytest.fixture(scope="module")
def nano():
    from stages.common import ModelSettings, load_model, load_tokenizer

    return load_model(ModelSettings(name_or_path=str(NANO_BASE))), load_tokenizer(str(NANO_BASE))


@pytest.fixture
def recorded_generate(monkeypatch):
    """The real generate, with each call's enable_thinking and prompt recorded."""
    calls = []
    real = chat.generate

    def recording(model, tokenizer, prompts, **kwargs):
        calls.append({"messages": [dict(m) for m in prompts[0]], **kwargs})
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(chat, "generate", recording)
    return calls


def test_no_think_flag_holds_for_later_turns_and_history_keeps_both_exchanges(nano, recorded_generate):
    model, tok = nano
    out = io.StringIO()
    settings = ChatSettings(sampling=SamplingSettings(do_sample=False, max_new_tokens=32))
    history = chat_loop(model, tok, ["What is 2 + 3? /no_think", "And 4 + 4?"], out, settings)
    assert [c["enable_thinking"] for c in recorded_generate] == [False, False]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["What is 2 + 3? /no_think", "And 4 + 4?"]
    # the stored reply is the whole turn, prefilled empty think block included; the template strips it later
    assert all(m["content"].startswith("<think>\n\n</think>\n\n") for m in history if m["role"] == "assistant")
    assert recorded_generate[1]["messages"] == history[:3]
    shown = out.getvalue()
    assert "thinking:" not in shown and "\x1b[" not in shown
    assert split_reply(history[1]["content"])[1] in shown


def test_thinking_budget_caps_the_thinking_shown(nano, recorded_generate):
    model, tok = nano
    out = io.StringIO()
    settings = ChatSettings(sampling=SamplingSettings(do_sample=False, max_new_tokens=32), thinking_budget=8)
    history = chat_loop(model, tok, ["What is 2 + 3?"], out, settings)
    assert recorded_generate[0]["enable_thinking"] is True and recorded_generate[0]["thinking_budget"] == 8
    thinking, answer = split_reply(history[-1]["content"])
    thought = thinking.removesuffix(STOP_SENTENCE).strip()
    assert 0 < len(tok(thought, add_special_tokens=False)["input_ids"]) <= 8
    assert out.getvalue() == render_reply(thinking, answer, color=False) + "\n\n"


# ---------------------------------------------------------------- the command line

def test_cli_missing_model_dir_exits_2_with_one_line_naming_it(tmp_path):
    missing = tmp_path / "no_model"
    res = run_chat("--model", str(missing))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert res.stderr.startswith("error: ") and str(missing) in res.stderr and "does not exist" in res.stderr


def test_cli_dir_without_config_json_exits_2_naming_it(tmp_path):
    res = run_chat("--model", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert str(tmp_path) in res.stderr and "not a model dir" in res.stderr


def test_cli_reads_one_message_per_line_from_a_pipe_in_plain_text():
    res = run_chat("--model", str(NANO_BASE), "--greedy", "--max-new-tokens", "8", "--thinking-budget", "4",
                   stdin="What is 2 + 3?\n/exit\nnever sent\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("thinking: ") and "\x1b[" not in res.stdout
    assert STOP_SENTENCE in res.stdout  # 4 tokens is too few for the nano base to finish thinking
