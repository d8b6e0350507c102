"""The chat template renders Qwen3's exact format. Run: pytest tests/data_recipes/test_chat_template.py"""

from __future__ import annotations

import pytest

from data_recipes.chat_template import CHAT_TEMPLATE, check_tokenizer


@pytest.fixture(scope="module")
def tok(tiny_moe_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_moe_dir)


def render(tok, messages, **kw):
    return tok.apply_chat_template(messages, tokenize=False, **kw)


def test_thinking_turn_renders_think_block_then_answer(tok):
    msgs = [{"role": "user", "content": "2+3? /think"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nIt is 5."}]
    assert render(tok, msgs) == ("<|im_start|>user\n2+3? /think<|im_end|>\n<|im_start|>assistant\n"
                                 "<think>\nadd them\n</think>\n\nIt is 5.<|im_end|>\n")


def test_no_think_response_keeps_empty_think_block(tok):
    msgs = [{"role": "user", "content": "2+3? /no_think"}, {"role": "assistant", "content": "It is 5."}]
    assert render(tok, msgs) == ("<|im_start|>user\n2+3? /no_think<|im_end|>\n<|im_start|>assistant\n"
                                 "<think>\n\n</think>\n\nIt is 5.<|im_end|>\n")


def test_generation_prompt_with_thinking_disabled_prefills_empty_think(tok):
    msgs = [{"role": "user", "content": "hi"}]
    assert render(tok, msgs, add_generation_prompt=True, enable_thinking=False) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert render(tok, msgs, add_generation_prompt=True) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_history_turns_lose_their_reasoning(tok):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "<think>\nfirst thoughts\n</think>\n\nA"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "<think>\nsecond thoughts\n</think>\n\nB"}]
    assert render(tok, msgs) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n<think>\nsecond thoughts\n</think>\n\nB<|im_end|>\n")


def test_tool_call_and_tool_response_render_as_qwen3_keeping_the_tool_turns_think_block(tok):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "add 2 and 3"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
            {"role": "tool", "content": "5"},
            {"role": "assistant", "content": "It is 5."}]
    text = render(tok, msgs, tools=tools)
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou may call one or more functions")
    assert '<tools>\n{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}\n</tools>' \
        in text
    # Qwen3's template drops the empty think block of a turn a tool response follows; ours keeps it (what the
    # model wrote there), so the rendering is prefix-preserving, as TRL's multi-turn tool loop needs.
    assert ("<|im_start|>user\nadd 2 and 3<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
            '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call><|im_end|>\n'
            "<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is 5.<|im_end|>\n") in text


def test_template_is_prefix_preserving_and_parses_tool_calls_for_trls_tool_loop(tok):
    from trl.chat_template_utils import is_chat_template_prefix_preserving, supports_tool_calling

    from stages.tool_env import parse_tool_calls_in_rollouts

    assert supports_tool_calling(tok) and is_chat_template_prefix_preserving(tok)
    parse_tool_calls_in_rollouts(tok)
    prefix = tok.apply_chat_template([{"role": "user", "content": "q"}], add_generation_prompt=True)["input_ids"]
    call = '<think>\nadd\n</think>\n\n<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    parsed = tok.parse_response(tok(call + "<|im_end|>")["input_ids"], prefix=list(prefix))
    assert parsed["tool_calls"] == [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]
    assert parsed["content"] == "<think>\nadd\n</think>"  # the think block stays: the rewards judge it
    cut_off = tok.parse_response(tok("<think>\nstill thinking")["input_ids"], prefix=list(prefix))
    assert cut_off["content"] == "<think>\nstill thinking"  # no "</think>": the rewards see it was cut off


def test_show_tools_false_leaves_the_tool_schemas_out(tok):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "add 2 and 3"}]
    shown = tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
    hidden = tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True, show_tools=False)
    assert '"name": "add"' in shown and "# Tools" in shown
    assert hidden == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_assistant_mask_covers_exactly_the_assistant_output_and_im_end(tok):
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nt\n</think>\n\nA"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "<think>\nt\n</think>\n\nA<|im_end|>"


def test_multi_turn_dialog_trains_only_the_reply_to_the_last_query(tok):
    # History turns are rendered without their reasoning (as at inference); training on them would teach the
    # model to answer a /think question with no think block, so they are context only.
    msgs = [{"role": "user", "content": "q1 /no_think"}, {"role": "assistant", "content": "<think>\n\n</think>\n\nA1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "<think>\nt\n</think>\n\nA2"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
    assert trained == "<think>\nt\n</think>\n\nA2<|im_end|>"
    assert "<|im_start|>assistant\nA1<|im_end|>" in tok.decode(out["input_ids"])


def test_a_think_prefilled_reply_is_trained_after_the_given_empty_block_like_enable_thinking_false(tok):
    # The hard switch: no flag, the empty think block comes with the prompt, only the answer is the model's.
    question = [{"role": "user", "content": "q"}]
    reply = {"role": "assistant", "content": "<think>\n\n</think>\n\nA", "think_prefilled": True}
    out = tok.apply_chat_template([*question, reply], tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    prompt = tok.apply_chat_template(question, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert tok.decode(out["input_ids"]) == prompt + "A<|im_end|>\n"
    assert tok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]) == "A<|im_end|>"
    # in the history it changes nothing: earlier replies are context without their think block anyway
    later = [*question, reply, {"role": "user", "content": "q2"}]
    assert "<|im_start|>assistant\nA<|im_end|>" in tok.apply_chat_template(later, tokenize=False)


def test_tokenizer_without_generation_markers_is_rejected(tok):
    import copy

    bad = copy.deepcopy(tok)
    bad.chat_template = CHAT_TEMPLATE.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    with pytest.raises(ValueError, match="generation"):
        check_tokenizer(bad, "test")
