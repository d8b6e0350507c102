"""The copy-free KV cache: token-for-token the same generations as transformers' DynamicCache.
Run: pytest tests/stages/test_kv_cache.py"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from stages import kv_cache
from stages.kv_cache import GrowingCache, GrowingLayer, growing_kv_cache

TEXTS = ["Tom has 3 apples.", "What is 12 + 30? Think step by step, then answer.", "Hi"]


@pytest.fixture(scope="module", params=["tiny_moe_dir", "tiny_dense_dir"])
def model_and_batch(request):
    path = request.getfixturevalue(request.param)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"  # rows of different lengths: the padding mask must line up with the cache
    return model, tok, tok(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)


def _generate(model, tok, batch, cache, **kwargs):
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=40, min_new_tokens=40, pad_token_id=tok.pad_token_id,
                              past_key_values=cache, **kwargs)


def test_greedy_tokens_match_dynamic_cache_across_buffer_regrowths(model_and_batch, monkeypatch):
    model, tok, batch = model_and_batch
    monkeypatch.setattr(kv_cache, "MIN_GROWTH", 3)  # 40 new tokens regrow every layer's buffer several times
    expected = _generate(model, tok, batch, DynamicCache(config=model.config), do_sample=False)
    cache = GrowingCache(model.config)
    got = _generate(model, tok, batch, cache, do_sample=False)
    assert torch.equal(got, expected)
    assert cache.get_seq_length() == got.shape[1] - 1  # the last token is sampled, never fed back


def test_sampled_tokens_match_dynamic_cache_with_the_same_seed(model_and_batch):
    model, tok, batch = model_and_batch
    runs = []
    for cache in (DynamicCache(config=model.config), GrowingCache(model.config, capacity=8)):
        torch.manual_seed(7)
        runs.append(_generate(model, tok, batch, cache, do_sample=True, temperature=1.0, top_k=0))
    assert torch.equal(runs[0], runs[1])


def test_layer_adopts_tensors_a_dynamic_layer_method_replaced():
    layer = GrowingLayer(capacity=16)
    first, second, third = (torch.randn(2, 1, n, 4) for n in (5, 3, 2))
    layer.update(first, first.clone())
    layer.update(second, second.clone())
    layer.crop(-2)  # DynamicLayer's crop slices `keys`: the next update must build on the cropped tensors
    keys, values = layer.update(third, third.clone())
    expected = torch.cat([first, second[..., :1, :], third], dim=-2)
    assert torch.equal(keys, expected) and torch.equal(values, expected)
    layer.batch_select_indices(torch.tensor([1]))
    keys, _ = layer.update(third[1:], third[1:].clone())
    assert torch.equal(keys, torch.cat([expected[1:], third[1:]], dim=-2))


def test_context_routes_generate_through_the_growing_cache_and_restores_it(model_and_batch):
    model, tok, batch = model_and_batch
    with growing_kv_cache(model):
        out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id,
                             return_dict_in_generate=True)
        chosen = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id,
                                return_dict_in_generate=True, cache_implementation="dynamic")
    assert isinstance(out.past_key_values, GrowingCache)
    assert type(chosen.past_key_values) is DynamicCache  # a call that names its cache keeps it
    assert "generate" not in vars(model)  # the class's own generate again


def test_context_reaches_generate_through_a_lora_wrapper(tiny_moe_dir):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_moe_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    tok = AutoTokenizer.from_pretrained(tiny_moe_dir)
    batch = tok(TEXTS[:1], return_tensors="pt", add_special_tokens=False)
    with growing_kv_cache(model):
        out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id,
                             return_dict_in_generate=True)
    assert isinstance(out.past_key_values, GrowingCache)
