"""A KV cache for ``model.generate`` that grows without copying itself at every token.

transformers' default ``DynamicCache`` appends each decoded token with ``torch.cat``: every step copies every
layer's whole key and value tensors into fresh memory, a cost that grows with batch × length (the largest op in
a CPU profile of the nano model's decoding; end to end, avoiding it makes generation 1.2–1.3× faster). Its ``static``
alternative preallocates, but attends over the whole preallocated length at every step and, uncompiled, was
slower still here. ``GrowingCache`` keeps each layer's keys and values in a buffer with spare room (sized from
the generation's known maximum length, grown by half when exceeded) and hands attention a view of the filled
part: a token costs a write of its own keys and values, and results are token for token the same
(``tests/stages/test_kv_cache.py``; speed: ``benchmarks/generation_speed.py``).

    cache = GrowingCache(model.config, capacity=enc["input_ids"].shape[1] + 512)   # prompt + new tokens
    out = model.generate(**enc, max_new_tokens=512, past_key_values=cache)

    with growing_kv_cache(model):   # every model.generate(...) inside, e.g. TRL's GRPO rollouts, uses one
        trainer.train()
"""

from __future__ import annotations

from contextlib import contextmanager
from types import MethodType

import torch
from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, Cache, DynamicLayer, get_layer_types_and_kwargs

MIN_GROWTH = 128  # tokens added at least when a buffer is full: a handful of regrowths over a long reply


class GrowingLayer(DynamicLayer):
    """A full-attention layer's cache: ``keys`` / ``values`` are views of the first ``length`` positions of
    buffers with room to spare. Anything that replaces ``keys`` / ``values`` (crop, beam reorder, batch
    selection, offload) is adopted as the new buffer, so DynamicLayer's own methods stay correct."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity_hint = capacity
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._views is None or self.keys is not self._views[0] or self.values is not self._views[1]:
            self._buffers = (self.keys, self.values)  # first call, or replaced by a DynamicLayer method
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        keys, values = self._buffers
        if length == 0 or end > keys.shape[-2]:
            capacity = max(end, self.capacity_hint, length + max(length // 2, MIN_GROWTH))
            shape = (*key_states.shape[:-2], capacity, key_states.shape[-1])
            new_keys, new_values = key_states.new_empty(shape), value_states.new_empty(shape)
            if length:
                new_keys[..., :length, :].copy_(keys[..., :length, :])
                new_values[..., :length, :].copy_(values[..., :length, :])
            keys, values = self._buffers = new_keys, new_values
            self.capacity_hint = 0  # the hint sizes the first buffer only
        keys[..., length:end, :].copy_(key_states)
        values[..., length:end, :].copy_(value_states)
        self.keys, self.values = keys[..., :end, :], values[..., :end, :]
        self._views = (self.keys, self.values)
        return self.keys, self.values


class GrowingCache(Cache):
    """``DynamicCache``'s behaviour with ``GrowingLayer`` for full-attention layers (other layer types, e.g.
    sliding windows, keep transformers' own dynamic layers). ``capacity``: the longest sequence expected
    (prompt + new tokens); it only sizes the first buffer."""

    def __init__(self, config, capacity: int = 0):
        layer_types, layer_kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        super().__init__(layers=[GrowingLayer(capacity) if kind == "full_attention"
                                 else DYNAMIC_LAYER_TYPE_MAPPING[kind](**kwargs)
                                 for kind, kwargs in zip(layer_types, layer_kwargs)])


def _generate_with_growing_cache(model, *args, **kwargs):
    """``model.generate`` with a ``GrowingCache`` unless the call chose a cache or no cache itself."""
    config = kwargs.get("generation_config") or model.generation_config
    chose = kwargs.get("past_key_values") is not None or kwargs.get("cache_implementation") or \
        config.cache_implementation or kwargs.get("use_cache", config.use_cache) is False
    if not chose:
        prompt = kwargs.get("input_ids", args[0] if args else None)
        new = kwargs.get("max_new_tokens", config.max_new_tokens) or 0
        capacity = prompt.shape[-1] + new if prompt is not None else 0
        kwargs["past_key_values"] = GrowingCache(model.config, capacity)
    return type(model).generate(model, *args, **kwargs)


@contextmanager
def growing_kv_cache(model):
    """Within it, ``model.generate`` (called by our code or by a library, e.g. TRL's rollouts, which passes a
    GenerationConfig and has no way to hand generate a cache object) uses a ``GrowingCache``. A PEFT wrapper
    built around ``model`` reaches the same ``generate``."""
    model.generate = MethodType(_generate_with_growing_cache, model)
    try:
        yield model
    finally:
        del model.generate
