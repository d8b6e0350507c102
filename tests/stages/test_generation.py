"""The one generation helper: non-thinking prefill and the thinking budget's mechanics.
Run: pytest tests/stages/test_generation.py"""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from stages.generation import STOP_THINKING, SamplingSettings, generate

PROMPTS = [[{"role": "user", "content": "Tom has 3 apples. He buys 4 more. How many apples does Tom have now?"}],
           [{"role": "user", "content": "What is 12 + 30?"}]]


@pytest.fixture(scope="module")
def model_and_tok(tiny_moe_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_moe_dir), AutoTokenizer.from_pretrained(tiny_moe_dir)


def test_non_thinking_reply_starts_with_the_prefilled_empty_think_block(model_and_tok):
    model, tok = model_and_tok
    replies = generate(model, tok, PROMPTS, enable_thinking=False, sampling=SamplingSettings(max_new_tokens=6))
    assert all(r.startswith("<think>\n\n</think>\n\n") for r in replies)
    assert not any(r.endswith("<|im_end|>") for r in replies)


@pytest.mark.parametrize("budget", [1, 5])
def test_thinking_is_cut_at_the_budget_then_an_answer_follows(model_and_tok, budget):
    model, tok = model_and_tok
    replies = generate(model, tok, PROMPTS, enable_thinking=True, thinking_budget=budget,
                       sampling=SamplingSettings(max_new_tokens=budget + 8))
    for reply in replies:
        # a random tiny model never closes its thinking by itself, so every reply is cut
        assert STOP_THINKING in reply
        thinking, answer = reply.split(STOP_THINKING)
        thought = thinking.removeprefix("<think>\n")
        assert len(tok(thought, add_special_tokens=False)["input_ids"]) <= budget
        assert reply.startswith("<think>") and reply.count("</think>") == 1
        assert len(tok(answer, add_special_tokens=False)["input_ids"]) >= 1  # the model went on to answer
