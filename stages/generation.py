"""One generation helper for evaluation, rejection sampling and chat: thinking on/off and a thinking budget.

    texts = generate(model, tokenizer, [[{"role": "user", "content": "2 + 3?"}]], enable_thinking=False)
    texts[0]   # '<think>\\n\\n</think>\\n\\nThe answer is 5.'  (the prefilled empty think block is included)

Returned texts are the assistant's full turn as it would be stored: in non-thinking mode the empty think block
the template prefills is part of it, so format checks see what a reader sees. With ``thinking_budget=N`` the
thinking is cut at N tokens, Qwen3's stop-thinking sentence and ``</think>`` are appended, and the model goes on
to write the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_recipes.chat_template import EMPTY_THINK

STOP_THINKING = ("\n\nConsidering the limited time by the user, I have to give the solution based on the "
                 "thinking directly now.\n</think>\n\n")


@dataclass
class SamplingSettings:
    """Decoding settings. Qwen3 recommends T=0.6, top_p=0.95, top_k=20 for thinking (never greedy for real
    models); the nano evaluation decodes greedily for a deterministic score."""

    do_sample: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    max_new_tokens: int = 512


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield i, items[i:i + size]


def _run(model, tokenizer, texts: list[str], sampling: SamplingSettings, max_new_tokens: int, stop_ids: list[int],
         batch_size: int) -> list[tuple[str, bool]]:
    """Continue each text; return (new text, stopped by a stop token) per input, in input order."""
    import torch

    from stages.kv_cache import GrowingCache

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    results: list[tuple[str, bool]] = [("", False)] * len(texts)
    tokenizer.padding_side = "left"
    kwargs = {"do_sample": sampling.do_sample}
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    for _, idx in _batches(order, batch_size):
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.no_grad():
            cache = GrowingCache(model.config, enc["input_ids"].shape[1] + max_new_tokens)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                                 pad_token_id=tokenizer.pad_token_id, past_key_values=cache, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        for row, i in enumerate(idx):
            ids = new[row].tolist()
            stopped = False
            for k, t in enumerate(ids):
                if t in stop_ids:
                    ids, stopped = ids[:k + 1], True
                    break
            ids = [t for t in ids if t != tokenizer.pad_token_id]
            results[i] = (tokenizer.decode(ids, skip_special_tokens=False), stopped)
    return results


def generate(model, tokenizer, prompts: list[list[dict]], enable_thinking: bool = True,
             thinking_budget: int | None = None, sampling: SamplingSettings | None = None,
             batch_size: int = 64, tools: list[list | None] | None = None) -> list[str]:
    """The assistant's reply to each chat prompt (see module docstring). ``<|im_end|>`` is stripped. ``tools``
    (one list per prompt, or None) are the tools the chat template shows with each prompt."""
    sampling = sampling or SamplingSettings()
    if hasattr(model.config, "output_router_logits"):
        model.config.output_router_logits = False  # router logits + KV cache + padding crash generate()
    was_training = model.training
    model.eval()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    tools = tools or [None] * len(prompts)
    heads = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True, tools=t,
                                           enable_thinking=enable_thinking) for p, t in zip(prompts, tools)]
    prefix = [EMPTY_THINK if h.endswith(EMPTY_THINK) else "" for h in heads]
    if not enable_thinking or thinking_budget is None:
        outs = _run(model, tokenizer, heads, sampling, sampling.max_new_tokens, [im_end], batch_size)
        replies = [pre + text for pre, (text, _) in zip(prefix, outs)]
    else:
        # Phase 1: think for at most `thinking_budget` tokens (stop early at </think> or <|im_end|>).
        budget = max(0, thinking_budget)
        phase1 = _run(model, tokenizer, heads, sampling, budget, [think_end, im_end], batch_size) if budget else \
            [("", False)] * len(heads)
        partial = []
        for text, stopped in phase1:
            if stopped and text.endswith("<|im_end|>"):
                partial.append(text)  # finished within budget (no think block or one closed before)
            elif stopped:
                partial.append(text + "\n\n")  # closed its thinking itself
            else:
                body = text if text.startswith("<think>") else "<think>\n" + text
                partial.append(body.rstrip("\n") + STOP_THINKING)
        # Phase 2: write the answer after the (possibly forced) end of thinking.
        todo = [i for i, t in enumerate(partial) if not t.endswith("<|im_end|>")]
        rest = _run(model, tokenizer, [heads[i] + partial[i] for i in todo], sampling,
                    max(1, sampling.max_new_tokens - budget), [im_end], batch_size)
        for i, (text, _) in zip(todo, rest):
            partial[i] += text
        replies = partial
    if was_training:
        model.train()
    return [r.removesuffix("<|im_end|>") for r in replies]
