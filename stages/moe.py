"""Mixture-of-experts training: the global-batch load-balancing loss and expert metrics, for every stage.

    moe:
      balance: global        # micro | global | global+micro
      coef: null             # null = the model's own router_aux_loss_coef (Qwen3-MoE: 0.001)
      micro_weight: 0.01     # global+micro: weight of the micro-batch term, relative to the global one

Why our own: transformers' Qwen3-MoE (and TRL, which only adds ``outputs.aux_loss``) computes the load-balancing
loss per micro-batch on one rank — nearly per sequence — which pushes even a single-domain micro-batch to spread
over all experts and blocks specialisation. Qwen3 was trained with the global-batch loss (Qwen blog "Global-batch
load balance", arXiv 2501.11873): the expert-selection frequencies ``f`` are all-reduced across data-parallel
ranks and accumulated over the gradient-accumulation micro-steps of one optimizer step; each rank multiplies them
with its own local router probabilities ``p``.

How: forward hooks on the routers record their logits while a training loss is computed (a window opened by
``BalancedTrainer.compute_loss``, so generation, no-grad scoring and activation recomputation are not counted).
The loss uses transformers' own formula — ``N_E · Σ_i f_i · p_i`` with counts and probabilities pooled over the
layers, padding masked — so ``global`` with one rank and one micro-batch is exactly transformers' micro loss and
the coefficient keeps its meaning (its value is top_k at perfect balance). Like Megatron-LM's ``global_aux_loss``,
micro-step k of an optimizer step uses the frequencies of micro-steps 1..k (all ranks): the last one sees the
whole global batch. The accumulator is keyed on the trainer's optimizer step, so it resets at every step.

Metrics (for any MoE model, whatever the balance mode): per layer, each expert's share of the routed tokens,
max/mean imbalance and the mean router entropy; logged as ``moe/*`` during training, summarised in
``stage.json`` and drawn as a layers × experts heat map (``expert_load.png``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from stages.common import is_main_process, world_size

BALANCE_MODES = ("micro", "global", "global+micro")


@dataclass
class MoESettings:
    balance: str = "micro"  # micro (transformers' own, per micro-batch) | global | global+micro
    coef: float | None = None  # None = the model's router_aux_loss_coef
    micro_weight: float = 0.01  # global+micro: the micro-batch term's weight relative to the global term

    def __post_init__(self):
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"moe.balance must be one of {list(BALANCE_MODES)}, got {self.balance!r}")
        if self.coef is not None and self.coef < 0:
            raise ValueError(f"moe.coef must be >= 0, got {self.coef}")
        if self.micro_weight < 0:
            raise ValueError(f"moe.micro_weight must be >= 0, got {self.micro_weight}")


def find_routers(model) -> list[torch.nn.Module]:
    """The router of every sparse MoE block, in layer order (a block has ``experts`` and a ``gate``)."""
    return [m.gate for _, m in model.named_modules() if hasattr(m, "experts") and hasattr(m, "gate")]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel ranks (a no-op with one process)."""
    if world_size() > 1:
        t = t.clone()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def routing_stats(logits: list[torch.Tensor], masks: list[torch.Tensor | None], top_k: int):
    """Per-layer statistics of one forward pass: (counts [L, E] detached, prob sums [L, E] with grad,
    entropy sums [L] detached, rows) — padding rows (mask 0) excluded."""
    counts, prob_sums, entropies = [], [], []
    rows = None
    for layer_logits, mask in zip(logits, masks, strict=True):
        probs = torch.softmax(layer_logits.float(), dim=-1)
        chosen = torch.topk(probs, top_k, dim=-1).indices
        w = torch.ones(probs.shape[0], device=probs.device) if mask is None else mask.float()
        c = torch.zeros(probs.shape[1], device=probs.device).scatter_add_(0, chosen.reshape(-1),
                                                                           w.repeat_interleave(top_k))
        counts.append(c.detach())
        prob_sums.append((probs * w[:, None]).sum(0))
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        entropies.append((ent * w).sum().detach())
        rows = w.sum().detach()
    return torch.stack(counts), torch.stack(prob_sums), torch.stack(entropies), rows


def balance_loss(freq_counts: torch.Tensor, freq_rows, prob_sums: torch.Tensor, prob_rows) -> torch.Tensor:
    """transformers' formula, N_E · Σ_i f_i · p_i with f and p pooled over layers: ``freq_counts`` [L, E] over
    ``freq_rows`` tokens gives f (the global or the local batch), ``prob_sums`` [L, E] over ``prob_rows`` gives p."""
    layers, experts = prob_sums.shape
    f = freq_counts.sum(0) / (layers * freq_rows)
    p = prob_sums.sum(0) / (layers * prob_rows)
    return experts * (f.detach() * p).sum()


class RouterTap:
    """Records router logits (with the attention mask of the forward they belong to) while a window is open."""

    def __init__(self, model, top_k: int):
        self.routers = find_routers(model)
        self.top_k = top_k
        self.open = False
        self._mask = None
        self._records: list[list] = []  # per forward pass: [logits of layer 0, 1, ...], mask
        self._handles = [model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)]
        for i, router in enumerate(self.routers):
            self._handles.append(router.register_forward_hook(self._make_hook(i)))

    def _pre_hook(self, module, args, kwargs):
        self._mask = kwargs.get("attention_mask")

    def _make_hook(self, layer: int):
        def hook(module, args, output):
            if not self.open:
                return
            logits = output[0] if isinstance(output, tuple) else output
            if layer == 0:
                mask = self._mask
                ok = mask is not None and mask.dim() == 2 and mask.numel() == logits.shape[0]
                self._records.append(([], mask.reshape(-1) if ok else None))
            if self._records:
                self._records[-1][0].append(logits)
        return hook

    @contextlib.contextmanager
    def window(self):
        self._records, self.open = [], True
        try:
            yield
        finally:
            self.open = False

    def take(self):
        """Statistics of the forwards in the last window, pooled: (counts, prob sums, entropy sums, rows)."""
        records, self._records = self._records, []
        parts = [routing_stats(logits, [mask] * len(logits), self.top_k)
                 for logits, mask in records if len(logits) == len(self.routers)]
        if not parts:
            return None
        return tuple(sum(p[i] for p in parts) for i in range(4))

    def remove(self):
        for h in self._handles:
            h.remove()


class ExpertBalance:
    """The balance loss of one training run plus its expert statistics (see the module docstring)."""

    def __init__(self, model, settings: MoESettings, coef: float, top_k: int, num_experts: int):
        self.settings = settings
        self.coef = coef
        self.num_experts = num_experts
        self.tap = RouterTap(model, top_k)
        self.layers = len(self.tap.routers)
        self.step = None  # the optimizer step the accumulator belongs to
        self.step_counts = torch.zeros(self.layers, num_experts)
        self.step_rows = torch.zeros(())
        self.micro_steps = 0
        self.history: list[dict] = []  # per finished optimizer step: micro-steps and tokens accumulated
        self.total = self._empty_stats()  # the whole run (stage.json)
        self.since_log = self._empty_stats()  # since the last training log line
        self.last_frequencies: list[float] | None = None  # the global f vector of the last micro-step

    def _empty_stats(self) -> dict:
        return {"counts": torch.zeros(self.layers, self.num_experts), "entropy": torch.zeros(self.layers),
                "rows": torch.zeros(()), "loss": []}

    @property
    def adds_loss(self) -> bool:
        return self.settings.balance != "micro" and self.coef > 0

    def global_frequencies(self, counts: torch.Tensor, rows: torch.Tensor, step: int):
        """Add this micro-batch's counts (all ranks) to the optimizer step's accumulator; reset on a new step."""
        if step != self.step:
            if self.step is not None:
                self.history.append({"step": self.step, "micro_steps": self.micro_steps,
                                     "tokens": float(self.step_rows)})
            self.step, self.micro_steps = step, 0
            self.step_counts = torch.zeros_like(counts)
            self.step_rows = torch.zeros((), device=counts.device)
        both = all_reduce_sum(torch.cat([counts.reshape(-1), rows.reshape(1).to(counts.dtype)]))
        self.step_counts = self.step_counts.to(counts.device) + both[:-1].reshape(counts.shape)
        self.step_rows = self.step_rows.to(counts.device) + both[-1]
        self.micro_steps += 1
        return self.step_counts, self.step_rows

    def loss(self, step: int) -> torch.Tensor | None:
        """Statistics of the window just closed, and the weighted extra loss (None in micro mode)."""
        stats = self.tap.take()
        if stats is None:
            return None
        counts, prob_sums, entropy, rows = stats
        self._record(counts, entropy, rows)
        if not self.adds_loss or rows <= 0:
            return None
        g_counts, g_rows = self.global_frequencies(counts, rows, step)
        lbl = balance_loss(g_counts, g_rows, prob_sums, rows)
        self.last_frequencies = (g_counts.sum(0) / g_counts.sum()).tolist()
        self.since_log["loss"].append(float(lbl.detach()))
        if self.settings.balance == "global+micro":
            lbl = lbl + self.settings.micro_weight * balance_loss(counts, rows, prob_sums, rows)
        return self.coef * lbl

    def _record(self, counts, entropy, rows):
        for acc in (self.total, self.since_log):
            acc["counts"] = acc["counts"].to(counts.device) + counts
            acc["entropy"] = acc["entropy"].to(counts.device) + entropy
            acc["rows"] = acc["rows"].to(counts.device) + rows

    def log_metrics(self) -> dict[str, float]:
        """``moe/*`` scalars since the last log (then reset)."""
        acc = self.since_log
        if float(acc["rows"]) <= 0:
            return {}
        m = layer_metrics(acc["counts"], acc["entropy"], acc["rows"])
        out = {"moe/imbalance_max": max(m["imbalance"]), "moe/imbalance_mean": sum(m["imbalance"]) / self.layers,
               "moe/router_entropy": sum(m["router_entropy"]) / self.layers}
        if acc["loss"]:
            out["moe/global_lbl"] = sum(acc["loss"]) / len(acc["loss"])
        self.since_log = self._empty_stats()
        return {k: round(v, 5) for k, v in out.items()}

    def summary(self) -> dict:
        """For stage.json: the settings and per-layer metrics over the whole run."""
        m = layer_metrics(self.total["counts"], self.total["entropy"], self.total["rows"]) \
            if float(self.total["rows"]) > 0 else {}
        return {"balance": self.settings.balance, "coef": self.coef, "micro_weight": self.settings.micro_weight,
                "layers": self.layers, "experts": self.num_experts, "tokens_routed": float(self.total["rows"]),
                **m}


def load_share(counts: torch.Tensor) -> list[list[float]]:
    """Per layer, each expert's share of the routed tokens (rows sum to 1)."""
    share = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    return [[round(float(x), 4) for x in row] for row in share]


def layer_metrics(counts: torch.Tensor, entropy_sums: torch.Tensor, rows) -> dict:
    """Per layer: each expert's share of the routed tokens, max/mean imbalance (1.0 = perfectly even) and the
    mean router entropy in nats (log N_E = a uniform router)."""
    share = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    imbalance = share.max(-1).values / share.mean(-1)
    return {"load_share": load_share(counts),
            "imbalance": [round(float(x), 4) for x in imbalance],
            "router_entropy": [round(float(e / rows), 4) for e in entropy_sums],
            "uniform_entropy": round(math.log(counts.shape[-1]), 4)}


def balanced_trainer(base, divide_by_accumulation: bool):
    """``base`` (TRL's SFTTrainer, GRPOTrainer or a subclass) with the global balance loss and expert metrics.

    ``divide_by_accumulation``: scale the extra loss the way TRL scales its own aux loss for that trainer (GRPO:
    always by the accumulation steps; SFT: only when the loss is normalised by ``num_items_in_batch``).
    """

    class Balanced(base):
        moe_balance: ExpertBalance | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            balance = self.moe_balance
            if balance is None or not model.training:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            with balance.tap.window():
                result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                              num_items_in_batch=num_items_in_batch)
            extra = balance.loss(self.state.global_step)
            if extra is None:
                return result
            if divide_by_accumulation or num_items_in_batch is not None:
                extra = extra / self.current_gradient_accumulation_steps
            if return_outputs:
                loss, outputs = result
                return loss + extra.to(loss.device), outputs
            return result + extra.to(result.device)

        def log(self, logs, *args, **kwargs):
            if self.moe_balance is not None and "loss" in logs:  # training logs only
                logs.update(self.moe_balance.log_metrics())
            super().log(logs, *args, **kwargs)

    Balanced.__name__ = Balanced.__qualname__ = f"Balanced{base.__name__}"
    return Balanced


def make_trainer(trainer_cls, model, args, settings: MoESettings | None, divide_by_accumulation: bool, **kwargs):
    """Build ``trainer_cls(model=model, args=args, **kwargs)``; for an MoE model, with ``settings``' balance loss
    and the expert metrics attached. Returns the trainer (``trainer.moe_balance`` is None for dense models)."""
    settings = settings or MoESettings()
    config = getattr(model, "config", None)
    num_experts = getattr(config, "num_experts", 0) or 0
    if num_experts <= 0 or not find_routers(model):
        if settings.balance != "micro":
            print(f"[moe] moe.balance={settings.balance} ignored: the model has no MoE layers", flush=True)
        return trainer_cls(model=model, args=args, **kwargs)
    coef = config.router_aux_loss_coef if settings.coef is None else settings.coef
    if settings.balance != "micro":
        args.router_aux_loss_coef = 0.0  # TRL's micro-batch aux loss off: ours replaces it
    elif settings.coef is not None:
        args.router_aux_loss_coef = settings.coef
    trainer = balanced_trainer(trainer_cls, divide_by_accumulation)(model=model, args=args, **kwargs)
    # TRL writes its coefficient (0.0 when ours is on) into the model config, which would be saved with the model
    # and silently turn the next stage's loss off: keep the architecture's own value in the saved config.
    config.router_aux_loss_coef = coef
    top_k = getattr(config, "num_experts_per_tok", 2)
    trainer.moe_balance = ExpertBalance(trainer.model, settings, coef, top_k, num_experts)
    return trainer


def finish_metrics(trainer, out: Path) -> dict | None:
    """After training: the expert summary for stage.json (and ``expert_load.png`` in ``out``); None if dense."""
    balance = getattr(trainer, "moe_balance", None)
    if balance is None:
        return None
    balance.tap.remove()
    summary = balance.summary()
    if summary.get("load_share") and is_main_process():  # under a launcher one process writes the stage's files
        plot_expert_load(summary, out / "expert_load.png")
        summary["heatmap"] = "expert_load.png"
    return summary


def plot_expert_load(summary: dict, path: Path, title: str | None = None) -> None:
    """Heat map of the load share, layers × experts (an even router is one flat colour at 1/N_E)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = summary["load_share"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(share[0]), 1.0 + 0.5 * len(share)))
    im = ax.imshow(share, cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_xticks(range(len(share[0])))
    ax.set_yticks(range(len(share)))
    ax.set_title(title or f"expert load share (balance: {summary['balance']})", fontsize=9)
    fig.colorbar(im, ax=ax, label="share of routed tokens")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def expert_specialisation(model, tokenizer, texts_by_task: dict[str, list[str]], batch_size: int = 16) -> dict:
    """How much the expert choice tells about the task of a token: per layer, the mutual information I(task;
    expert) in bits between a token's task and each of its top-k experts (0 = every task uses the experts alike),
    plus each task's load share. Runs the model over ``texts_by_task``; the model is left as it was."""
    top_k = getattr(model.config, "num_experts_per_tok", 2)
    tap = RouterTap(model, top_k)
    was_training = model.training
    model.eval()
    per_task = {}
    try:
        for task, texts in texts_by_task.items():
            counts = None
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                                max_length=512)
                with tap.window():
                    model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
                stats = tap.take()
                if stats is not None:
                    counts = stats[0] if counts is None else counts + stats[0]
            per_task[task] = counts
    finally:
        tap.remove()
        model.train(was_training)
    tasks = [t for t, c in per_task.items() if c is not None]
    joint = torch.stack([per_task[t] for t in tasks])  # [tasks, layers, experts]
    mi = []
    for layer in range(joint.shape[1]):
        p = joint[:, layer] / joint[:, layer].sum()
        pt, pe = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
        nz = p > 0
        mi.append(round(float((p[nz] * torch.log2(p[nz] / (pt @ pe)[nz])).sum()), 4))
    return {"mutual_information_bits": mi, "mean_mutual_information_bits": round(sum(mi) / len(mi), 4),
            "load_share_by_task": {t: load_share(per_task[t]) for t in tasks}}
