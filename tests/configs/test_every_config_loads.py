"""Every YAML under configs/ loads into its typed config, names resolve and trainer sections build.
Run: pytest tests/configs"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.run import PipelineConfig
from stages.common import ModelSettings
from stages.config import build_trainer_args, load_config, load_yaml
from stages.distill import DistillConfig
from stages.evaluate import EvalConfig
from stages.general_rl import GeneralRLConfig
from stages.nano_base import NanoBaseConfig
from stages.reasoning_rl import ReasoningRLConfig
from stages.sft import SFTStageConfig
from stages.thinking_fusion import FusionStageConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KIND = {"stage1_sft": SFTStageConfig, "stage2_grpo": ReasoningRLConfig, "stage3_fusion": FusionStageConfig,
        "stage4_general": GeneralRLConfig, "pipelines": PipelineConfig, "nano": NanoBaseConfig, "eval": EvalConfig,
        "models": ModelSettings, "distill": DistillConfig}
# accelerate launcher configs are not stage configs: test_accelerate_configs.py checks them
ALL = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "accelerate")


def test_every_config_folder_has_a_known_kind():
    assert ALL, "no configs found"
    unknown = {p.parent.name for p in ALL} - set(KIND)
    assert not unknown, f"config folders without a loader in this test: {unknown}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_its_names_resolve(path):
    cfg = load_config(KIND[path.parent.name], path)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("#"), "each config opens with a comment giving its launch command"
    if isinstance(cfg, (SFTStageConfig, FusionStageConfig)):
        from trl import SFTConfig

        from data_recipes import get_recipe

        data = cfg.data if isinstance(cfg, SFTStageConfig) else \
            [*cfg.rejection.queries, *cfg.thinking, *cfg.non_thinking, *cfg.follow.data]
        for spec in [*data, cfg.eval.data]:
            assert callable(get_recipe(spec.name))
        trainer = dict(cfg.trainer)
        if not torch.cuda.is_available():  # GPU configs (bf16) are checked for keys and types only
            trainer.update(use_cpu=True, bf16=False)
        args = build_trainer_args(SFTConfig, trainer, str(path), output_dir="/tmp/unused", seed=cfg.seed,
                                  max_length=cfg.model.max_length)
        assert args.max_length == cfg.model.max_length
    if isinstance(cfg, (ReasoningRLConfig, GeneralRLConfig)):
        from trl import GRPOConfig

        from stages.general_rl import routed_rewards
        from stages.reasoning_rl import build_rewards

        funcs, weights = build_rewards(cfg.rewards) if isinstance(cfg, ReasoningRLConfig) else \
            routed_rewards(cfg.tasks, cfg.all_tasks)
        trainer = dict(cfg.trainer)
        if not torch.cuda.is_available():
            trainer.update(use_cpu=True, bf16=False)
        args = build_trainer_args(GRPOConfig, trainer, str(path), output_dir="/tmp/unused", seed=cfg.seed,
                                  reward_weights=weights)
        assert len(funcs) == len(args.reward_weights)
    if isinstance(cfg, DistillConfig):
        from trl import DistillationConfig, SFTConfig

        from data_recipes import get_recipe
        from rewards import get_reward

        for spec in [*cfg.offpolicy.queries, *cfg.onpolicy.prompts, *cfg.follow.data, cfg.eval.data]:
            assert callable(get_recipe(spec.name))
        assert callable(get_reward(cfg.offpolicy.filters.verifier))
        for args_cls, section, key, forced in (
                (SFTConfig, cfg.offpolicy.trainer, "offpolicy.trainer", {"max_length": cfg.model.student.max_length}),
                (DistillationConfig, cfg.onpolicy.trainer, "onpolicy.trainer", {})):
            trainer = dict(section)
            if not torch.cuda.is_available():
                trainer.update(use_cpu=True, bf16=False)
            build_trainer_args(args_cls, trainer, str(path), key, output_dir="/tmp/unused", seed=cfg.seed, **forced)
    if isinstance(cfg, PipelineConfig):
        assert all(Path(step.config).is_file() for step in cfg.steps)
    if isinstance(cfg, (SFTStageConfig, ReasoningRLConfig, FusionStageConfig, GeneralRLConfig, EvalConfig,
                        DistillConfig)):
        from rewards import get_reward

        assert callable(get_reward(cfg.eval.verifier))


def test_model_presets_fill_the_model_section():
    cfg = load_config(SFTStageConfig, CONFIGS / "stage1_sft" / "qwen3-0.6b-lora.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen3-0.6B"
    assert cfg.model.dtype == "bfloat16"
    assert cfg.model.max_length == 16384  # the stage config's own value wins over the preset's 32768
    assert "down_proj" in cfg.model.lora.target_modules


def test_moe_preset_puts_lora_on_experts_through_target_parameters():
    preset = load_yaml(CONFIGS / "models" / "qwen3-30b-a3b.yaml")
    assert preset["lora"]["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
