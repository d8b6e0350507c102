"""Stage 2 — reasoning RL: GRPO (DAPO / Dr. GRPO variants) with rule-based, verifiable rewards.

    make stage2                                   # nano default: configs/stage2_grpo/nano.yaml, from runs/nano/01_sft
    python -m stages.reasoning_rl --config configs/stage2_grpo/nano.yaml trainer.loss_type=dr_grpo

Phases: config -> data (query-verifier pairs: a ``prompt`` column plus the columns the rewards read) -> rewards
(built-in names or dotted paths, weights beside them) -> model (+LoRA) -> evaluate before -> TRL GRPOTrainer
(with DAPO dynamic sampling when enabled) -> save -> evaluate after (the same checker as the reward) ->
``stage.json`` last. Reruns skip a finished stage and resume an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.anchor import AnchorBatches, AnchorSettings, anchored_trainer, build_anchor
from stages.common import (
    ModelSettings,
    RecipeSpec,
    barrier,
    begin_stage,
    build_data,
    finish_stage,
    is_main_process,
    load_model,
    load_tokenizer,
    lora_config,
    require_finished_input,
    save_and_reload,
    train_resumable,
    trainer_defaults,
    whole_weights,
)
from stages.config import ConfigError, build_trainer_args, run_cli, to_dict
from stages.evaluate import EvalSettings, evaluate, evaluate_input, format_table
from stages.moe import MoESettings, finish_metrics, make_trainer

STAGE = "reasoning_rl"
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")


@dataclass
class RewardSpec:
    """A reward from rewards/ (a built-in name or ``package.module:function``), its weight and bound kwargs."""

    name: str
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DynamicSamplingSettings:
    enabled: bool = False  # DAPO: drop groups whose rewards are all equal and refill the batch
    max_refill_rounds: int = 4


@dataclass
class ReasoningRLConfig:
    output_dir: str
    model: ModelSettings
    data: list[RecipeSpec]
    rewards: list[RewardSpec]
    trainer: dict[str, Any] = field(default_factory=dict)  # TRL GRPOConfig settings, passed through unchanged
    dynamic_sampling: DynamicSamplingSettings = field(default_factory=DynamicSamplingSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    eval_before: bool = True
    moe: MoESettings = field(default_factory=MoESettings)  # MoE load balancing (stages/moe.py)
    anchor: AnchorSettings = field(default_factory=AnchorSettings)  # SFT loss on reference replies (stages/anchor.py)
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if not self.rewards:
            raise ValueError("rewards: at least one reward is needed")
        loss = self.trainer.get("loss_type", "dapo")
        if loss not in LOSS_TYPES:  # TRL only notices a typo at the first optimizer step
            raise ValueError(f"trainer.loss_type: unknown loss {loss!r}; known: {list(LOSS_TYPES)}")


def build_rewards(specs: list[RewardSpec]):
    """(reward functions, weights) for GRPOTrainer; errors name the reward's position in the config."""
    from rewards import get_reward

    funcs = []
    for i, spec in enumerate(specs):
        try:
            funcs.append(get_reward(spec.name, **spec.kwargs))
        except ValueError as e:
            raise ConfigError(f"rewards.{i}: {e}") from None
    return funcs, [s.weight for s in specs]


def grpo_args(trainer: dict, out: Path, seed: int, weights: list[float]):
    """TRL GRPOConfig from the ``trainer`` section, checked before any model loads."""
    import importlib.util

    from trl import GRPOConfig

    if trainer.get("use_vllm"):  # TRL would fail deep inside its generation set-up; say what is missing instead
        import torch

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("trainer.use_vllm: vLLM is not installed (pip install vllm on a CUDA machine), "
                              "or set trainer.use_vllm=false to generate with transformers")
        if not torch.cuda.is_available():
            raise ConfigError("trainer.use_vllm: vLLM needs a CUDA GPU and none is visible; set "
                              "trainer.use_vllm=false to generate with transformers")
    args = build_trainer_args(GRPOConfig, trainer_defaults(trainer), "", output_dir=str(out / "checkpoints"),
                              seed=seed, reward_weights=weights)
    if (args.per_device_train_batch_size * args.gradient_accumulation_steps) % args.num_generations:
        raise ConfigError(f"trainer: num_generations ({args.num_generations}) must divide the batch "
                          f"(per_device_train_batch_size × gradient_accumulation_steps = "
                          f"{args.per_device_train_batch_size * args.gradient_accumulation_steps})")
    return args


def train_grpo(model, tokenizer, train, reward_funcs, args, settings: ModelSettings,
               dynamic: DynamicSamplingSettings, out: Path, tag: str, moe: MoESettings | None = None,
               environments: dict | None = None, anchor: AnchorBatches | None = None):
    """TRL's GRPOTrainer (with DAPO dynamic sampling when enabled, the MoE balance loss of ``moe``, the tool
    environments of ``environments`` routed by the rows' ``environment``, the SFT anchor loss of ``anchor``),
    resumable; the trained model is saved to ``out`` and loaded back. Returns (model, trainer, log history,
    training seconds); ``trainer.moe_summary`` holds the expert metrics of an MoE model (else None)."""
    from trl import GRPOTrainer

    from stages.dynamic_sampling import DynamicSamplingGRPOTrainer

    peft_config = lora_config(settings.lora, model) if settings.lora else None
    trainer_cls, extra = GRPOTrainer, {}
    if environments:
        extra["environment_factory"] = environments
    if dynamic.enabled:
        trainer_cls = DynamicSamplingGRPOTrainer
        extra["max_refill_rounds"] = dynamic.max_refill_rounds
    if anchor is not None:
        trainer_cls = anchored_trainer(trainer_cls, anchor)
    trainer = make_trainer(trainer_cls, model, args, moe, divide_by_accumulation=True, reward_funcs=reward_funcs,
                           train_dataset=train, processing_class=tokenizer, peft_config=peft_config, **extra)
    log, seconds = train_resumable(trainer, out, tag)
    trainer.moe_summary = finish_metrics(trainer, out)
    return save_and_reload(trainer, tokenizer, out, settings), trainer, log, seconds


def clipped_completions(log: list[dict], max_completion_length: int | None, tag: str,
                        masked: bool = False) -> dict:
    """Completions cut off at ``max_completion_length`` (no eos: the long-CoT trace or its answer never came),
    from TRL's ``completions/clipped_ratio`` of each logged step: the mean over the run, the last and the highest
    value. Warns when any completion was clipped (``masked``: TRL left them out of the loss).

        clipped_completions(trainer.state.log_history, 512, "rl")   # {"mean_ratio": 0.25, ...}
    """
    ratios = [r["completions/clipped_ratio"] for r in log if "completions/clipped_ratio" in r]
    summary = {"max_completion_length": max_completion_length, "logged_steps": len(ratios),
               "mean_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
               "last_ratio": ratios[-1] if ratios else None, "max_ratio": max(ratios) if ratios else None}
    if ratios and max(ratios) > 0:
        print(f"[{tag}] warning: {summary['mean_ratio']:.1%} of completions (mean of {len(ratios)} logged steps, "
              f"at most {summary['max_ratio']:.1%}) were cut off at max_completion_length={max_completion_length}; "
              + ("they were left out of the loss (trainer.mask_truncated_completions)" if masked else
                 "raise trainer.max_completion_length, or set trainer.mask_truncated_completions=true to leave them "
                 "out of the loss"), flush=True)
    return summary


def main(cfg: ReasoningRLConfig) -> Path:
    out = begin_stage(cfg.output_dir, cfg.threads, "rl")
    if out is None:
        return Path(cfg.output_dir)
    t_start = time.time()
    require_finished_input(cfg.model.name_or_path, "model.name_or_path")
    reward_funcs, weights = build_rewards(cfg.rewards)
    args = grpo_args(cfg.trainer, out, cfg.seed, weights)

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    train = build_data(cfg.data, cfg.seed)
    if "prompt" not in train.column_names:
        raise ValueError(f"data: RL needs a 'prompt' column (chat messages); columns: {train.column_names}")
    anchor = build_anchor(cfg.anchor, tokenizer, cfg.seed)
    model = load_model(cfg.model)
    if cfg.model.lora:
        lora_config(cfg.model.lora, model)  # a LoRA target that matches nothing fails now, before anything is written
    # under a launcher every process trains; one evaluates and writes the stage, the others wait for it
    before = None
    if cfg.eval_before:
        with whole_weights(model):  # generation needs whole weights: a no-op unless ZeRO-3 sharded them
            if is_main_process():
                before = evaluate_input(model, tokenizer, cfg.model, cfg.eval, cfg.seed)
    if before:
        print(format_table(before, f"[rl] before: {cfg.model.name_or_path}"), flush=True)
    barrier()  # the others wait here, not in the trainer's first collective (it times out sooner)

    model, trainer, log, train_seconds = train_grpo(model, tokenizer, train, reward_funcs, args, cfg.model,
                                                    cfg.dynamic_sampling, out, "rl", cfg.moe, anchor=anchor)
    if not is_main_process():  # wait for the main process to evaluate and write the stage (its barrier below)
        barrier()
        return out
    after = evaluate(model, tokenizer, cfg.eval, cfg.seed)
    print(format_table(after, f"[rl] after: {out}"), flush=True)
    curve = [{"step": r["step"], "reward": r["reward"]} for r in log if "reward" in r]
    finish_stage(out, {
        "stage": STAGE,
        "input_model": cfg.model.name_or_path,
        "config": to_dict(cfg),
        "data": {"rows": len(train), "fingerprint": train._fingerprint},
        "metrics": {
            "train": {"steps": trainer.state.global_step, "seconds": round(train_seconds, 1), "reward_curve": curve,
                      "clipped_completions": clipped_completions(log, args.max_completion_length, "rl",
                                                                 args.mask_truncated_completions)},
            "eval": after,
            **({"eval_before": before} if before else {}),
            **({"moe": trainer.moe_summary} if trainer.moe_summary else {}),
        },
        "wall_seconds": round(time.time() - t_start, 1),
    })
    print(f"[rl] done: {out} ({time.time() - t_start:.0f} s)", flush=True)
    barrier()
    return out


if __name__ == "__main__":
    run_cli(main, ReasoningRLConfig, __doc__)
