"""The embedded default's builders: deterministic tokenizer and weights, Qwen3 tokens, one token per digit.
Run: pytest tests/stages/test_nano_model.py"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_recipes.chat_template import SPECIAL_TOKENS, TAG_TOKENS
from stages.config import load_config
from stages.nano_base import NanoBaseConfig, TokenizerSettings, build_model, build_tokenizer
from tests.conftest import TINY_MOE

REPO = Path(__file__).resolve().parents[2]
SMALL = TokenizerSettings(vocab_size=400, corpus_docs=1500, problem_docs=150)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(SMALL, seed=0)


def test_same_seed_gives_same_tokenizer_and_weights(tok):
    again = build_tokenizer(SMALL, seed=0)
    assert tok.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()
    a, b = build_model("moe", TINY_MOE, tok, seed=1), build_model("moe", TINY_MOE, again, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_model("moe", TINY_MOE, tok, seed=2)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_tokenizer_has_qwen3_tokens_and_eos_is_im_end(tok):
    vocab = tok.get_vocab()
    assert all(t in vocab for t in SPECIAL_TOKENS + TAG_TOKENS)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.convert_ids_to_tokens(tok("<think>\nx</think>")["input_ids"])[0] == "<think>"
    # think tags survive skip_special_tokens, as in Qwen3
    assert "<think>" in tok.decode(tok("<think>hi</think>")["input_ids"], skip_special_tokens=True)


def test_every_digit_is_its_own_token(tok):
    tokens = tok.convert_ids_to_tokens(tok("12345 + 6789 = 19134")["input_ids"])
    digits = [t for t in tokens if any(ch.isdigit() for ch in t)]
    assert digits == list("12345678919134")


def test_nano_moe_config_is_qwen3_moe_with_gqa_and_qk_norm(tok):
    cfg = load_config(NanoBaseConfig, REPO / "configs" / "nano" / "moe-base.yaml")
    model = build_model("moe", cfg.architecture, tok, seed=0)
    c = model.config
    assert type(model).__name__ == "Qwen3MoeForCausalLM"
    assert c.num_experts == 8 and c.num_experts_per_tok == 2
    assert c.num_key_value_heads < c.num_attention_heads  # GQA
    assert hasattr(model.model.layers[0].self_attn, "q_norm")  # QK-norm
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 8e6


def test_dense_nano_builds(tok):
    cfg = load_config(NanoBaseConfig, REPO / "configs" / "nano" / "dense-base.yaml")
    model = build_model(cfg.kind, cfg.architecture, tok, seed=0)
    assert type(model).__name__ == "Qwen3ForCausalLM"


def test_shipped_base_is_small_complete_and_documented():
    base = REPO / "checkpoints" / "nano-moe-base"
    if not (base / "base.json").is_file():
        pytest.skip("checkpoints/nano-moe-base not built (make nano-base)")
    size = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    assert size <= 20 * 2**20
    meta = json.loads((base / "base.json").read_text())
    assert meta["config"]["seed"] == 0 and meta["tokens_seen"] > 0
    assert (base / "training_log.jsonl").is_file() and (base / "chat_template.jinja").is_file()
