"""An SFT anchor for RL: a language-model loss on reference replies, added to the GRPO loss at every step.

    anchor:                       # in a stage-2 or stage-4 config
      data: [{name: arithmetic, kwargs: {n: 1500, seed: 6, difficulty: 2, split: train}}]
      coef: 1.0                   # weight of the anchor's mean token loss beside the RL loss (0 = off)
      batch_size: 8               # reference replies per optimizer step

Why: on the nano default, stage 4 cost ~12 points of thinking-mode math in most runs, even with no arithmetic in
its mix and under a KL term to the stage-3 model (README, sessions 8 and 10): the policy drifts under the other
tasks, and the drift shows as plans stopped early. The KL term only holds the tokens the policy samples near the
reference; the anchor keeps training the replies the earlier stages taught, so the drift has a restoring force.
This is InstructGPT's PPO-ptx (Ouyang et al., 2022: pretraining gradients mixed into PPO); TRL's GRPOTrainer has
no such term, so it is added here as a thin subclass that runs one more forward pass per micro-batch.

Each anchor row is a chat (``messages``) whose last message is the assistant reply to train on; the loss is the
mean cross-entropy over that reply's tokens (the chat template's ``{% generation %}`` span, ``<|im_end|>``
included). Batches are taken in a fixed shuffled order indexed by the micro-step, so a resumed run sees the
batches it would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from stages.common import RecipeSpec, build_data
from stages.config import ConfigError


@dataclass
class AnchorSettings:
    data: list[RecipeSpec] = field(default_factory=list)  # rows whose messages end with the reply to train on
    coef: float = 0.0  # weight of the anchor loss (mean token cross-entropy) beside the RL loss; 0 = no anchor
    batch_size: int = 8  # reference replies per micro-batch of the RL loss
    max_length: int = 1024  # longer rows are cut (their reply's end is then not trained)

    def __post_init__(self):
        if self.coef < 0:
            raise ValueError(f"anchor.coef must be >= 0, got {self.coef}")
        if self.batch_size < 1:
            raise ValueError(f"anchor.batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"anchor.max_length must be >= 2, got {self.max_length}")
        if self.coef > 0 and not self.data:
            raise ValueError("anchor.coef > 0 needs anchor.data (recipes whose rows end with a reference reply)")

    @property
    def enabled(self) -> bool:
        return self.coef > 0


def tokenize_replies(tokenizer, rows, max_length: int, key: str = "anchor.data") -> list[dict]:
    """Each row's ``messages`` as ``{"input_ids", "labels"}``: labels are the ids of the last assistant reply
    (the template's generation span) and -100 elsewhere. A row without such a reply is an error naming it."""
    out = []
    for i, messages in enumerate(rows):
        if not messages or messages[-1].get("role") != "assistant" or not messages[-1].get("content"):
            raise ConfigError(f"{key}: row {i} does not end with an assistant reply (the anchor trains on it)")
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(enc["input_ids"])[:max_length], list(enc["assistant_masks"])[:max_length]
        if not any(mask):
            raise ConfigError(f"{key}: row {i}: the chat template marks no reply tokens (a template without "
                              f"{{% generation %}} markers, or the reply is cut off by anchor.max_length={max_length})")
        out.append({"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]})
    return out


def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[r, :n] = torch.tensor(e["input_ids"])
        labels[r, :n] = torch.tensor(e["labels"])
        attention[r, :n] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def reply_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the labelled tokens, each predicted from the tokens before it. Computed here, not
    with ``labels=``: an MoE model's own loss would add its router aux loss a second time."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                                             ignore_index=-100)


class AnchorBatches:
    """Batch ``k`` of a fixed shuffled order (deterministic in ``k``: a resumed run continues where it was), and
    ``coef``, the anchor loss's weight."""

    def __init__(self, examples: list[dict], batch_size: int, pad_token_id: int, seed: int, coef: float = 1.0):
        self.examples, self.batch_size, self.pad_token_id, self.coef = examples, batch_size, pad_token_id, coef
        self.order = list(range(len(examples)))
        random.Random(f"anchor/{seed}").shuffle(self.order)

    def __call__(self, k: int) -> dict[str, torch.Tensor]:
        start = k * self.batch_size
        picked = [self.examples[self.order[(start + j) % len(self.order)]] for j in range(self.batch_size)]
        return collate(picked, self.pad_token_id)


def build_anchor(settings: AnchorSettings, tokenizer, seed: int) -> AnchorBatches | None:
    """The anchor's batches from ``settings.data`` (None when the anchor is off)."""
    if not settings.enabled:
        return None
    rows = build_data(settings.data, seed, key="anchor.data")
    examples = tokenize_replies(tokenizer, rows["messages"], settings.max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return AnchorBatches(examples, settings.batch_size, pad, seed, settings.coef)


def anchored_trainer(base, anchor: AnchorBatches):
    """``base`` (TRL's GRPOTrainer or a subclass) with ``anchor.coef`` × the loss of ``anchor``'s batches added to
    each micro-batch's loss, scaled for gradient accumulation as TRL scales its own; ``anchor/loss`` is logged per
    step."""

    class Anchored(base):
        _anchor_calls: int | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
            if not model.training:
                return loss
            accumulation = self.current_gradient_accumulation_steps
            if self._anchor_calls is None:  # first micro-batch of this process (a resumed run starts mid-way)
                self._anchor_calls = self.state.global_step * accumulation
            extra = reply_loss(model, anchor(self._anchor_calls))
            self._anchor_calls += 1
            self._metrics["train"]["anchor/loss"].append(extra.item())
            return loss + (anchor.coef / accumulation) * extra.to(loss.device)

    Anchored.__name__ = Anchored.__qualname__ = f"Anchored{base.__name__}"
    return Anchored
