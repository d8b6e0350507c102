"""DAPO's dynamic sampling for TRL's GRPOTrainer: drop groups whose rewards are all equal, refill the batch.

A group whose completions all got the same reward has zero advantage everywhere: it costs a forward and backward
pass and teaches nothing, and with a low pass rate most groups are like that. DAPO keeps sampling new prompts
until the batch is full of groups that carry a signal. TRL 1.16 has no such option, so this module adds it with
one override of the trainer's rollout step and two pure helpers that are tested on their own:

- :func:`informative_groups` — which groups of ``num_generations`` rows have any non-zero advantage;
- :func:`concat_rollouts` — join two rollout batches whose tensors were padded to different lengths.

The refill draws prompts from the training set with its own seeded sampler, only as many as the shortfall needs at
the share of informative groups seen so far (:func:`refill_size`): generation is most of a step's time, and a
whole batch of new prompts to replace two dropped groups would double it. With several processes every rank runs
the same number of refill rounds of the same size (the shortfall and the share are all-reduced), since each round
makes collective calls.
If the rounds run out, the batch is topped up with dropped (zero-advantage) groups so its size stays fixed; the
share is logged as ``dynamic_sampling/filled_zero_std``.
"""

from __future__ import annotations

import math
import random

import torch
from trl import GRPOTrainer

# rollout keys and how they are padded: (side, value); anything else per-row is concatenated as is
_PAD = {
    "prompt_ids": ("left", None),  # None: the tokenizer's pad id
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "old_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 1.0),
    "tool_mask": ("right", 1),
}


# Equal rewards can leave rounding noise in the advantages (mean of 1.1s minus 1.1, divided by std + 1e-4): a
# few 1e-12. Real advantages are orders of magnitude larger.
ZERO_ADVANTAGE = 1e-6


def informative_groups(advantages: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Boolean per group: True when some completion of the group has a non-zero advantage.

    >>> informative_groups(torch.tensor([0., 0., 1., -1., 1e-12, -1e-12]), 2).tolist()
    [False, True, False]
    """
    if advantages.numel() % num_generations:
        raise ValueError(f"{advantages.numel()} rows do not split into groups of {num_generations}")
    return (advantages.view(-1, num_generations).abs() > ZERO_ADVANTAGE).any(dim=1)


def refill_size(shortfall: int, share: float, n_groups: int, min_share: float = 0.25) -> int:
    """How many prompts to draw to refill ``shortfall`` groups when a ``share`` of the groups generated so far
    carried a signal: the shortfall over that share (at least ``min_share``, so a step that found nothing does not
    ask for 100× more), rounded up and capped at a whole batch of ``n_groups``.

    >>> refill_size(2, share=0.75, n_groups=8)   # 2 / 0.75 -> 3
    3
    >>> refill_size(8, share=0.0, n_groups=8)    # nothing informative yet: one whole batch
    8
    """
    return max(shortfall, min(n_groups, math.ceil(shortfall / max(share, min_share) - 1e-9)))


def _pad_to(t: torch.Tensor, length: int, side: str, value) -> torch.Tensor:
    if t.size(1) == length:
        return t
    pad = torch.full((t.size(0), length - t.size(1)), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=1) if side == "left" else torch.cat([t, pad], dim=1)


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The rollout restricted to ``rows`` (a LongTensor of row indices); scalars are kept."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and key != "num_items_in_batch":
            out[key] = value[rows.to(value.device)]
        else:
            out[key] = value
    return out


def concat_rollouts(a: dict, b: dict, pad_token_id: int) -> dict:
    """Join two rollout batches row-wise, re-padding the token tensors to a common width."""
    out = {}
    for key, va in a.items():
        vb = b[key]
        if key in _PAD and va is not None:
            side, value = _PAD[key]
            value = pad_token_id if value is None else value
            width = max(va.size(1), vb.size(1))
            out[key] = torch.cat([_pad_to(va, width, side, value), _pad_to(vb, width, side, value)])
        elif isinstance(va, torch.Tensor) and va.dim() >= 1 and key != "num_items_in_batch":
            out[key] = torch.cat([va, vb])
        else:
            out[key] = va
    return out


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose training batches hold only groups with reward variance (see module docstring)."""

    def __init__(self, *args, max_refill_rounds: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_refill_rounds = max_refill_rounds
        self._refill_rng = random.Random(self.args.seed + 1)

    def _refill_inputs(self, n_prompts: int) -> list[dict]:
        ds = self.train_dataset
        idx = [self._refill_rng.randrange(len(ds)) for _ in range(n_prompts)]
        return [dict(ds[i]) for i in idx for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return batch
        g = self.num_generations
        n_groups = len(inputs) // g
        keep = informative_groups(batch["advantages"], g)
        kept = select_rows(batch, _group_rows(keep.nonzero().flatten(), g))
        dropped = select_rows(batch, _group_rows((~keep).nonzero().flatten(), g))
        rounds, generated = 0, n_groups
        while True:
            informative = len(kept["advantages"]) // g  # kept holds exactly the informative groups so far
            # every rank must make the same generation calls: agree on the largest shortfall and lowest share
            mine = torch.tensor([[n_groups - informative, informative / generated]], dtype=torch.float64,
                                device=batch["advantages"].device)
            everyone = self.accelerator.gather(mine)
            shortfall, share = int(everyone[:, 0].max().item()), everyone[:, 1].min().item()
            if shortfall <= 0 or rounds >= self.max_refill_rounds:
                break
            rounds += 1
            n = refill_size(shortfall, share, n_groups)
            more = super()._generate_and_score_completions(self._refill_inputs(n))
            good = informative_groups(more["advantages"], g)
            generated += n
            kept = concat_rollouts(kept, select_rows(more, _group_rows(good.nonzero().flatten(), g)), self._pad_id())
        have = len(kept["advantages"]) // g
        if have > n_groups:
            kept = select_rows(kept, torch.arange(n_groups * g))
        filled = max(0, n_groups - have)
        if filled:
            kept = concat_rollouts(kept, select_rows(dropped, torch.arange(filled * g)), self._pad_id())
        loss_mask = kept["completion_mask"] if kept.get("tool_mask") is None else \
            kept["completion_mask"] * kept["tool_mask"]
        kept["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        self._metrics["train"]["dynamic_sampling/refill_rounds"].append(float(rounds))
        self._metrics["train"]["dynamic_sampling/filled_zero_std"].append(filled / n_groups)
        self._metrics["train"]["dynamic_sampling/generated_groups"].append(float(generated))
        return kept

    def _pad_id(self) -> int:
        return self._tokenizer.pad_token_id


def _group_rows(groups: torch.Tensor, g: int) -> torch.Tensor:
    """Row indices of whole groups."""
    return (groups.unsqueeze(1) * g + torch.arange(g, device=groups.device)).flatten()
