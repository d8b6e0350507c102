"""An extra loss on the thinking-mode decision, for stage 3 (``mode_loss_weight``).

Whether a reply thinks is decided at one token: right after ``<think>`` (and any token an empty block and a
thinking reply share, like a first newline) the reply either continues the empty block or starts thinking. In
plain SFT that one token is a fraction of a percent of the loss, and it depends on a flag that may sit far back:
in the system message, or several turns up. The nano model learned the flag at the end of the user message and
ignored it elsewhere (it obeyed a system-message /no_think 40% of the time).

Up-weighting the decision token's cross-entropy was tried first and taught the wrong thing: a thinking reply's
decision token is its first word ("Ana starts with ..."), so the weight also drilled that word, which then leaked
into the non-thinking answers. The loss here is binary — "empty block or not" — computed from the probability
of the empty block's token at that position: ``-log p`` for a /no_think reply, ``-log(1 - p)`` for a thinking
one. It names no content token.

TRL's SFT loss runs a fused LM head that returns per-token log-probabilities instead of logits (asking it for the
outputs costs a second, gradient-free forward), so the backbone's hidden states are taken from the forward TRL
already runs, by a hook, and only the decision positions go through the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rewards.completion import THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class ModeDecision:
    """Where the mode is decided, in a tokenizer's terms."""

    think_id: int  # the <think> token
    offset: int  # tokens after <think> that an empty block and a thinking reply share ("\n" for the nano tokenizer)
    empty_id: int  # the empty block's token at the decision
    close_ids: tuple[int, ...] = ()  # the empty block's tokens after the decision, its </think> included


def mode_decision(tokenizer) -> ModeDecision:
    think_id = tokenizer.convert_tokens_to_ids(THINK_OPEN)
    empty = tokenizer.encode(f"{THINK_OPEN}\n\n{THINK_CLOSE}", add_special_tokens=False)
    thinking = tokenizer.encode(f"{THINK_OPEN}\nThe", add_special_tokens=False)
    if think_id is None or think_id == tokenizer.unk_token_id or empty[0] != think_id or thinking[0] != think_id:
        raise ValueError(f"mode_loss_weight: the tokenizer has no single {THINK_OPEN} token to find the thinking-mode "
                         f"decision after; set mode_loss_weight: 0")
    offset = 0
    while empty[1 + offset] == thinking[1 + offset]:
        offset += 1
    return ModeDecision(think_id, offset, empty[1 + offset], tuple(empty[2 + offset:]))


def decision_positions(input_ids: torch.Tensor, labels: torch.Tensor, decision: ModeDecision):
    """(rows, positions predicting the decision, whether the reply there is an empty block) for every trained
    reply that opens with <think>."""
    rows, starts = (input_ids == decision.think_id).nonzero(as_tuple=True)
    target = starts + 1 + decision.offset
    keep = target < input_ids.size(1)
    rows, target = rows[keep], target[keep]
    trained = labels[rows, target] != -100
    rows, target = rows[trained], target[trained]
    return rows, target - 1, input_ids[rows, target] == decision.empty_id


def close_loss(model, hidden, input_ids, labels, rows, positions, decision: ModeDecision):
    """Cross-entropy of the rest of each chosen empty block (its ``</think>``), from the decision on.

    Having chosen the empty block, the nano model sometimes opened a second one instead of closing it
    (``<think>\n\n<think>...``, 19% of replies to a system-message /no_think). These tokens occur only in empty
    blocks, so weighting them teaches no content."""
    total = hidden.new_zeros(())
    for k, token in enumerate(decision.close_ids):
        at = positions + 1 + k  # predicts the token at at + 1
        keep = at + 1 < input_ids.size(1)
        r, at = rows[keep], at[keep]
        keep = (input_ids[r, at + 1] == token) & (labels[r, at + 1] != -100)
        r, at = r[keep], at[keep]
        if len(r):
            total = total - model.get_output_embeddings()(hidden[r, at]).float().log_softmax(-1)[:, token].sum()
    return total


def mode_loss_trainer(base, weight: float, decision: ModeDecision):
    """``base`` (an SFT trainer class) with ``weight`` × the binary mode-decision loss added, normalised like the
    trainer's own loss (per trained token)."""

    class ModeLoss(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            unwrapped = self.accelerator.unwrap_model(model)
            if hasattr(unwrapped, "get_base_model"):  # peft
                unwrapped = unwrapped.get_base_model()
            seen = []
            hook = unwrapped.get_decoder().register_forward_hook(lambda module, args, output: seen.append(output))
            try:
                result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                              num_items_in_batch=num_items_in_batch)
            finally:
                hook.remove()
            labels = inputs["labels"]
            rows, positions, empty = decision_positions(inputs["input_ids"], labels, decision)
            if not len(rows):
                return result
            hidden = seen[0].last_hidden_state[rows, positions]
            log_p = unwrapped.get_output_embeddings()(hidden).float().log_softmax(-1)[:, decision.empty_id]
            # -log p for an empty block, -log(1 - p) for thinking (clamped: p can round to 1.0)
            loss = torch.where(empty.to(log_p.device), -log_p, -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6)))
            loss = loss.sum() + close_loss(unwrapped, seen[0].last_hidden_state, inputs["input_ids"], labels,
                                           rows[empty], positions[empty], decision)
            norm = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != -100).sum()
            extra = weight * loss / norm
            if return_outputs:
                return result[0] + extra, result[1]
            return result + extra

    ModeLoss.__name__ = ModeLoss.__qualname__ = f"ModeLoss{base.__name__}"
    return ModeLoss
