"""DAPO dynamic sampling helpers: group selection and joining rollouts of different widths.
Run: pytest tests/stages/test_dynamic_sampling.py"""

from __future__ import annotations

import pytest
import torch

from stages.dynamic_sampling import _group_rows, concat_rollouts, informative_groups, refill_size, select_rows


def rollout(n_rows, p_len, c_len, adv):
    return {
        "prompt_ids": torch.arange(n_rows * p_len).view(n_rows, p_len) + 1,
        "prompt_mask": torch.ones(n_rows, p_len, dtype=torch.long),
        "completion_ids": torch.arange(n_rows * c_len).view(n_rows, c_len) + 100,
        "completion_mask": torch.ones(n_rows, c_len, dtype=torch.long),
        "old_per_token_logps": torch.full((n_rows, c_len), -1.0),
        "advantages": torch.tensor(adv, dtype=torch.float),
        "num_items_in_batch": torch.tensor(n_rows * c_len),
    }


def test_groups_with_all_equal_rewards_are_not_informative():
    adv = torch.tensor([1e-12, -1e-12, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0, 1e-3, 0.0, 0.0, 0.0])
    assert informative_groups(adv, 4).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="groups of 4"):
        informative_groups(torch.zeros(6), 4)


def test_group_rows_expands_whole_groups():
    assert _group_rows(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]


def test_concat_rollouts_repads_prompts_left_and_completions_right():
    a = rollout(2, 3, 4, [1.0, -1.0])
    b = rollout(2, 5, 2, [0.5, -0.5])
    out = concat_rollouts(a, b, pad_token_id=0)
    assert out["prompt_ids"].shape == (4, 5) and out["completion_ids"].shape == (4, 4)
    assert out["prompt_ids"][0].tolist() == [0, 0, 1, 2, 3]  # left-padded
    assert out["prompt_mask"][0].tolist() == [0, 0, 1, 1, 1]
    assert out["completion_ids"][2].tolist() == [100, 101, 0, 0]  # right-padded
    assert out["completion_mask"][2].tolist() == [1, 1, 0, 0]
    assert out["old_per_token_logps"][2].tolist() == [-1.0, -1.0, 0.0, 0.0]
    assert out["advantages"].tolist() == [1.0, -1.0, 0.5, -0.5]


def test_select_rows_keeps_scalars():
    r = select_rows(rollout(4, 2, 2, [1, 2, 3, 4]), torch.tensor([3, 1]))
    assert r["advantages"].tolist() == [4.0, 2.0] and r["num_items_in_batch"].item() == 8


def test_refill_draws_only_what_the_shortfall_needs_at_the_informative_share():
    assert refill_size(2, share=0.75, n_groups=8) == 3  # not a whole new batch of 8 prompts
    assert refill_size(1, share=1.0, n_groups=8) == 1
    assert refill_size(3, share=0.5, n_groups=8) == 6
    assert refill_size(8, share=0.0, n_groups=8) == 8  # nothing informative seen: capped at one batch
    assert refill_size(2, share=0.01, n_groups=8) == 8  # the floor share (0.25) stops a 200-prompt round
    assert refill_size(4, share=0.9, n_groups=4) == 4  # never fewer than the shortfall
