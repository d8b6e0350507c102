"""The chat template every posttrain model carries, and the tokens it relies on.

The template (``chat_template.jinja`` beside this file) renders exactly Qwen3's ChatML format — thinking turns
as ``<think>\\n…\\n</think>\\n\\n{answer}``, ``enable_thinking=False`` appends an empty think block to the
generation prompt, history turns lose their reasoning — and wraps assistant output in ``{% generation %}``
markers so TRL's ``assistant_only_loss=True`` trains on the assistant's tokens only.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (Path(__file__).with_name("chat_template.jinja")).read_text()

# Qwen3's tokens. The first three are "special" (dropped by skip_special_tokens); the think and tool tags are
# ordinary added tokens, so decoded text keeps them, as in Qwen3's tokenizer.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAG_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
EMPTY_THINK = "<think>\n\n</think>\n\n"


def check_tokenizer(tokenizer, where: str) -> None:
    """Raise a one-line ValueError when ``tokenizer`` lacks what training and evaluation rely on."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in SPECIAL_TOKENS + TAG_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"{where}: tokenizer lacks the tokens {missing} (Qwen3's chat and think tokens)")
    template = tokenizer.chat_template or ""
    if "generation" not in template or "endgeneration" not in template:
        raise ValueError(f"{where}: chat template has no {{% generation %}} markers; assistant-only loss "
                         "needs them (use data_recipes.chat_template.CHAT_TEMPLATE)")
