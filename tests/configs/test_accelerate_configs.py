"""The launcher configs: every configs/accelerate/*.yaml goes through accelerate's own parser and launch preparation,
and every configs/deepspeed/*.json through DeepSpeed's own parser once the "auto" values are filled the way the HF
Trainer fills them. Run: pytest tests/configs/test_accelerate_configs.py"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))
DEEPSPEED_CONFIGS = sorted((REPO / "configs" / "deepspeed").glob("*.json"))
EXPECTED = {"cpu", "cpu-ddp", "gpu", "multi-gpu", "zero2", "zero3", "fsdp2", "multi-node"}
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install -e .[deepspeed])")


def load(path: Path):
    from accelerate.commands.config.config_args import ClusterConfig

    return ClusterConfig.from_yaml_file(path)  # unknown keys and unknown distributed types raise


def launch_env(path: Path, monkeypatch) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file path -m stages.sft` would hand each process (nothing is started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    monkeypatch.chdir(REPO)  # the configs name the DeepSpeed JSONs relative to the repo root, as make runs them
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "stages.sft"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    if args.use_deepspeed and not args.cpu:  # as accelerate's launch_command does before starting DeepSpeed
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    if (args.use_fsdp or args.multi_gpu) and not args.cpu:
        return args, prepare_multi_gpu_env(args)
    return args, prepare_simple_launcher_cmd_env(args)[1]


def test_the_launch_names_the_readme_and_make_offer_all_exist():
    assert EXPECTED <= {p.stem for p in LAUNCH_CONFIGS}


@pytest.mark.parametrize("path", LAUNCH_CONFIGS, ids=lambda p: p.stem)
def test_launch_config_opens_with_its_launch_command_and_parses(path):
    from accelerate.utils import DistributedType

    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# make stage1 LAUNCH={path.stem}"), first
    assert f"accelerate launch --config_file configs/accelerate/{path.name}" in first
    cfg = load(path)
    assert isinstance(cfg.distributed_type, DistributedType)
    assert cfg.num_processes >= 1 and cfg.num_machines >= 1
    ds_file = cfg.deepspeed_config.get("deepspeed_config_file")
    if cfg.distributed_type == DistributedType.DEEPSPEED:
        assert ds_file and (REPO / ds_file).is_file(), f"{path.name}: deepspeed_config_file {ds_file} is missing"
        json.loads((REPO / ds_file).read_text())
    else:
        assert ds_file is None


@pytest.mark.parametrize("path", LAUNCH_CONFIGS, ids=lambda p: p.stem)
def test_launch_config_passes_accelerates_launch_preparation(path, monkeypatch):
    args, env = launch_env(path, monkeypatch)
    if path.stem in ("cpu", "gpu"):
        assert args.num_processes == 1 and env["ACCELERATE_USE_CPU"] == str(path.stem == "cpu")
    if path.stem == "cpu-ddp":  # torchrun with 2 processes (MULTI_CPU would start only one without mpirun)
        assert args.multi_gpu and args.num_processes == 2 and args.use_cpu


@needs_deepspeed
@pytest.mark.parametrize("name", ["zero2", "zero3", "multi-node"])
def test_deepspeed_launch_builds_accelerates_plugin_from_the_json(name, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin

    _, env = launch_env(REPO / "configs" / "accelerate" / f"{name}.yaml", monkeypatch)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()  # what each launched process builds; rejects settings the JSON should hold
    stage = 2 if name == "zero2" else 3
    assert plugin.zero_stage == stage and plugin.deepspeed_config["zero_optimization"]["stage"] == stage
    if stage == 3:
        assert env["ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES"] == "Qwen3MoeSparseMoeBlock"
        assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_fsdp2_launch_builds_accelerates_fsdp2_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    _, env = launch_env(REPO / "configs" / "accelerate" / "fsdp2.yaml", monkeypatch)
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)  # the saved model dir must hold whole weights


def test_the_zero3_moe_leaf_class_exists_in_the_qwen3_moe_model(tiny_moe_dir):
    from accelerate.utils.dataclasses import get_module_class_from_name
    from transformers import AutoModelForCausalLM

    name = load(REPO / "configs" / "accelerate" / "zero3.yaml").deepspeed_config["deepspeed_moe_layer_cls_names"]
    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    assert get_module_class_from_name(model, name) is not None, f"{name} is not a module of Qwen3-MoE"


# ---------------------------------------------------------------- DeepSpeed JSONs, by DeepSpeed's parser

def filled(raw: dict, tiny_moe_dir) -> dict:
    """The config with its "auto" values filled as the HF Trainer fills them (from the trainer args and model)."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config
    from trl import SFTConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)  # before the config: a live ZeRO-3 one shards loads
    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none",
                     per_device_train_batch_size=4, gradient_accumulation_steps=2)
    hf = HfTrainerDeepSpeedConfig(copy.deepcopy(raw))
    try:
        hf.trainer_config_process(args)
        hf.trainer_config_finalize(args, model, num_training_steps=10)
    finally:
        unset_hf_deepspeed_config()  # it registers itself globally; later tests load models plainly
    return hf.config


def unknown_top_level_keys(config: dict) -> set[str]:
    """DeepSpeedConfig ignores unknown top-level keys (only its sections reject unknown fields): check them against
    the names DeepSpeed's runtime defines."""
    import deepspeed.runtime.constants as constants
    from deepspeed.runtime.zero.config import ZERO_OPTIMIZATION

    known = {v for k, v in vars(constants).items() if k.isupper() and isinstance(v, str)} | {ZERO_OPTIMIZATION}
    return set(config) - known


def leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from leaves(value)
    else:
        yield node


def test_every_deepspeed_json_is_used_by_a_launch_config():
    used = {load(p).deepspeed_config.get("deepspeed_config_file") for p in LAUNCH_CONFIGS}
    assert DEEPSPEED_CONFIGS and {f"configs/deepspeed/{p.name}" for p in DEEPSPEED_CONFIGS} <= used


@needs_deepspeed
@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=lambda p: p.stem)
def test_deepspeed_json_validates_with_deepspeeds_parser(path, tiny_moe_dir):
    from deepspeed.runtime.config import DeepSpeedConfig

    config = filled(json.loads(path.read_text()), tiny_moe_dir)
    assert "auto" not in list(leaves(config)), "an 'auto' value the HF Trainer does not fill"
    assert not unknown_top_level_keys(config)
    parsed = DeepSpeedConfig(config)
    assert parsed.zero_optimization_stage == int(path.stem.removeprefix("zero"))
    assert parsed.train_batch_size == 4 * 2 and parsed.gradient_accumulation_steps == 2
    assert parsed.bfloat16_config.enabled is False  # "auto" followed trainer.bf16=false


@needs_deepspeed
def test_deepspeed_parser_rejects_an_unknown_key(tiny_moe_dir):
    """Proof that the validation above can fail: a misspelt ZeRO field, and a misspelt section."""
    import pydantic
    from deepspeed.runtime.config import DeepSpeedConfig

    config = filled(json.loads((REPO / "configs" / "deepspeed" / "zero3.json").read_text()), tiny_moe_dir)
    typo = copy.deepcopy(config)
    typo["zero_optimization"]["stage3_prefetch_bucket_sise"] = 100
    with pytest.raises(pydantic.ValidationError, match="stage3_prefetch_bucket_sise"):
        DeepSpeedConfig(typo)
    section = copy.deepcopy(config)
    section["zero_optimisation"] = section.pop("zero_optimization")
    assert unknown_top_level_keys(section) == {"zero_optimisation"}


def test_launch_configs_leave_precision_to_the_trainer():
    """One place decides the precision: the stage's trainer section (DeepSpeed: its JSON's "auto" from it)."""
    for path in LAUNCH_CONFIGS:
        cfg = load(path)
        assert cfg.mixed_precision in (None, "no"), f"{path.name}: mixed_precision {cfg.mixed_precision}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_launch_runs_a_stage_under_accelerate_and_an_unknown_name_lists_the_choices():
    def make(*args):
        return subprocess.run(["make", "-n", *args, "VENV=.venv"], cwd=REPO, capture_output=True, text=True)

    launched = make("stage2", "LAUNCH=zero3", "LAUNCH_ARGS=--num_processes 1")
    assert launched.returncode == 0, launched.stderr
    assert (".venv/bin/accelerate launch --config_file configs/accelerate/zero3.yaml --num_processes 1 "
            "-m stages.reasoning_rl --config configs/stage2_grpo/nano.yaml") in launched.stdout
    plain = make("stage4")
    assert ".venv/bin/python -m stages.general_rl --config configs/stage4_general/nano.yaml" in plain.stdout
    unknown = make("stage1", "LAUNCH=zero4")
    assert unknown.returncode != 0
    assert "unknown LAUNCH=zero4; available: cpu cpu-ddp fsdp2 gpu multi-gpu multi-node zero2 zero3" in unknown.stderr
