"""Shared fixtures: tiny nano models built with the project's own builder (seconds, not minutes).

Run the suite: make test   (= HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -m "not slow")
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_MOE = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "intermediate_size": 64,
    "norm_topk_prob": True, "max_position_embeddings": 1024, "tie_word_embeddings": True,
}
TINY_DENSE = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
    "intermediate_size": 64, "max_position_embeddings": 1024, "tie_word_embeddings": True,
}


def build_tiny(out: Path, kind: str = "moe", seed: int = 0) -> Path:
    """Tokenizer + randomly initialised tiny Qwen3(-MoE), saved as a model dir."""
    import torch

    from stages.nano_base import TokenizerSettings, build_model, build_tokenizer

    torch.set_num_threads(1)
    tok = build_tokenizer(TokenizerSettings(vocab_size=400, corpus_docs=1500, problem_docs=150), seed)
    model = build_model(kind, TINY_MOE if kind == "moe" else TINY_DENSE, tok, seed)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny_moe"), "moe")


@pytest.fixture(scope="session")
def tiny_dense_dir(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny_dense"), "dense")
