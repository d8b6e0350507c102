"""A collator for TRL's packed SFT rows that keeps each packed row its own sequence.

Why not TRL's own: with ``packing=True`` (best-fit decreasing), TRL turns on padding-free collation, which
concatenates the whole batch into ONE sequence of ``batch × max_length`` tokens. That is what FlashAttention's
varlen kernels want; with ``sdpa`` (CPU, and GPUs without flash-attn) the attention is then computed densely
over that one long sequence — (8 × 1024)² instead of 8 × 1024² per layer — and stage 1 ran ~4× slower here.

This collator pads the packed rows to the longest row of the batch instead, and gives every document inside a
row its own position ids (restarting at 0). transformers reads restarting position ids without an attention
mask as packed sequences and builds a block-diagonal causal mask per row, so documents never attend to each
other. The padding at a row's end is one more "document" whose labels are all ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedRowsCollator:
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        position_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            input_ids[row, :n] = torch.tensor(e["input_ids"])
            labels[row, :n] = torch.tensor(e.get("labels", e["input_ids"]))
            lengths = list(e.get("seq_lengths") or [n])
            if width > n:
                lengths.append(width - n)  # the padding: a segment of its own, never trained on
            position_ids[row] = torch.cat([torch.arange(length) for length in lengths])
        # A document's first token is not predicted from the previous document's last one.
        labels[position_ids == 0] = -100
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
