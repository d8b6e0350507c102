"""LoRA on tiny dense Qwen3 and Qwen3-MoE models: the adapter trains and the base stays frozen; the adapter
saves, reloads and merges into a plain model dir whose logits equal the adapter model's; every preset's LoRA
targets exist in its architecture; QLoRA and long-context (YaRN) settings. Run: pytest tests/stages/test_lora.py"""

from __future__ import annotations

import math
import re

import pytest
import torch

from stages.common import (
    QWEN3_YARN,
    LoraSettings,
    ModelSettings,
    load_model,
    lora_config,
    quantization_config,
    save_model_dir,
)
from stages.config import PRESETS_DIR, ConfigError, apply_model_preset, convert, load_yaml

# Merged vs adapter logits, float32. Measured here: max |diff| ~2e-7 (dense and MoE) on logits of size ~1.
MERGE_ATOL = 1e-5
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
CASES = {
    "dense, attention + MLP": ("dense", LoraSettings(r=4, alpha=8, target_modules=[
        *ATTENTION, "gate_proj", "up_proj", "down_proj"])),
    "moe, attention + experts": ("moe", LoraSettings(r=4, alpha=8, target_modules=ATTENTION,
                                                     target_parameters=EXPERTS)),
    "moe, attention + experts + router": ("moe", LoraSettings(r=4, alpha=8, target_modules=ATTENTION,
                                                              target_parameters=EXPERTS, modules_to_save=["gate"])),
}


def base_name(peft_name: str) -> str:
    """A peft parameter name -> the wrapped model's name for the same weight."""
    name = peft_name.removeprefix("base_model.model.")
    return re.sub(r"\.(base_layer|original_module)(?=\.)", "", name)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("case", CASES)
def test_lora_trains_the_adapter_only_and_the_merged_model_gives_the_adapter_logits(case, tmp_path, tiny_dense_dir,
                                                                                    tiny_moe_dir):
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, settings = CASES[case]
    model_dir = tiny_moe_dir if kind == "moe" else tiny_dense_dir
    torch.manual_seed(0)
    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    ids = torch.randint(0, model.config.vocab_size, (4, 24))
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    base_logits = logits(model.eval(), ids)

    peft_model = get_peft_model(model, lora_config(settings, model))
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("experts" in n for n in trainable) == (kind == "moe")
    assert any("gate.modules_to_save" in n for n in trainable) == ("gate" in settings.modules_to_save)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(4):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for n, p in peft_model.named_parameters():
        if n in trainable:
            assert not torch.equal(p, trainable[n]), f"adapter weight {n} did not change"
        else:
            assert torch.equal(p, base[base_name(n)]), f"base weight {n} changed"

    peft_model.eval()
    adapter_logits = logits(peft_model, ids)
    assert (adapter_logits - base_logits).abs().max() > 100 * MERGE_ATOL  # training moved the model

    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(load_model(ModelSettings(name_or_path=str(model_dir))), tmp_path / "adapter")
    torch.testing.assert_close(logits(reloaded.eval(), ids), adapter_logits, atol=MERGE_ATOL, rtol=0)

    save_model_dir(reloaded, AutoTokenizer.from_pretrained(model_dir), tmp_path / "merged")  # merge_and_unload
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    diff = (logits(merged, ids) - adapter_logits).abs().max().item()
    print(f"[{case}] merged vs adapter: max |logit diff| {diff:.2e}")
    assert diff <= MERGE_ATOL


# ---------------------------------------------------------------- presets

# Each preset's architecture family and whether its model card offers YaRN to 128K (4B and up).
PRESETS = {
    "nano-moe": ("moe", False), "qwen3-0.6b": ("dense", False), "qwen3-1.7b": ("dense", False),
    "qwen3-4b": ("dense", True), "qwen3-8b": ("dense", True), "qwen3-14b": ("dense", True),
    "qwen3-32b": ("dense", True), "qwen3-30b-a3b": ("moe", True),
}
TINY_ARCH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                 intermediate_size=64, vocab_size=300, max_position_embeddings=256, tie_word_embeddings=True)


def tiny_model(family: str):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    if family == "moe":
        return Qwen3MoeForCausalLM(Qwen3MoeConfig(**TINY_ARCH, num_experts=4, num_experts_per_tok=2,
                                                  moe_intermediate_size=32))
    return Qwen3ForCausalLM(Qwen3Config(**TINY_ARCH))


def preset_settings(name: str, **overrides) -> ModelSettings:
    data = {"model": {"preset": name, **overrides}}
    apply_model_preset(data, "test")
    return convert(ModelSettings, data["model"], "test", "model")


def test_the_preset_table_of_this_test_lists_every_preset():
    assert set(PRESETS) == {p.stem for p in PRESETS_DIR.glob("*.yaml")}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_its_lora_targets_exist_in_its_architecture(name):
    from peft import get_peft_model

    family, yarn = PRESETS[name]
    settings = preset_settings(name)
    assert settings.lora is not None and settings.lora.r > 0
    if name.startswith("qwen3-"):
        assert settings.max_length == 32768 and settings.dtype == "bfloat16"
    assert bool(settings.lora.target_parameters) == (family == "moe")  # fused experts need target_parameters
    model = tiny_model(family)
    peft_model = get_peft_model(model, lora_config(settings.lora, model))
    targeted = [*peft_model.base_model.targeted_module_names, *peft_model.base_model.targeted_parameter_names]
    for target in [*settings.lora.target_modules, *settings.lora.target_parameters]:
        assert sum(n.endswith(target) for n in targeted) == TINY_ARCH["num_hidden_layers"], f"{target}: {targeted}"
    assert ("long_context" in load_yaml(PRESETS_DIR / f"{name}.yaml")) == yarn
    assert settings.rope_scaling is None  # long context is opt-in
    if yarn:
        assert preset_settings(name, long_context=True).rope_scaling == QWEN3_YARN


def test_a_target_the_architecture_lacks_is_a_config_error():
    dense = tiny_model("dense")
    with pytest.raises(ConfigError, match="target_parameters: 'mlp.experts.gate_up_proj' matches no parameter"):
        lora_config(preset_settings("qwen3-30b-a3b").lora, dense)
    with pytest.raises(ConfigError, match="target_modules: 'gate_proj' matches no module"):
        lora_config(preset_settings("qwen3-8b").lora, tiny_model("moe"))


def test_moe_preset_with_the_router_trains_it_fully():
    from peft import get_peft_model

    settings = preset_settings("qwen3-30b-a3b", lora={"modules_to_save": ["gate"]})
    assert settings.lora.target_parameters == EXPERTS  # the preset's other LoRA keys are kept
    model = tiny_model("moe")
    peft_model = get_peft_model(model, lora_config(settings.lora, model))
    router = [n for n, p in peft_model.named_parameters() if p.requires_grad and "mlp.gate." in n]
    assert router and all("modules_to_save" in n for n in router)


# ---------------------------------------------------------------- QLoRA

@pytest.mark.parametrize("bitsandbytes, cuda, message", [
    (False, False, r"bitsandbytes is not installed \(pip install bitsandbytes\) and no CUDA GPU is visible"),
    (True, False, "no CUDA GPU is visible"),
    (False, True, r"bitsandbytes is not installed \(pip install bitsandbytes\)"),
])
def test_qlora_without_bitsandbytes_or_a_gpu_is_a_config_error_naming_the_field(bitsandbytes, cuda, message,
                                                                                 monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if bitsandbytes else None) if name == "bitsandbytes"
                        else find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(ConfigError, match=rf"^model.lora.quantize: 4bit \(QLoRA\) needs bitsandbytes and a CUDA GPU, "
                                          rf"but {message}; remove model.lora.quantize"):
        quantization_config(LoraSettings(quantize="4bit"))


def test_qlora_with_bitsandbytes_and_a_gpu_loads_nf4_double_quant_with_bf16_compute(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = quantization_config(LoraSettings(quantize="4bit"))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(LoraSettings()) is None and quantization_config(None) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_qlora_on_this_cpu_machine_stops_before_the_model_loads(tiny_dense_dir):
    with pytest.raises(ConfigError, match="^model.lora.quantize: .*no CUDA GPU is visible"):
        load_model(ModelSettings(name_or_path=str(tiny_dense_dir), lora=LoraSettings(quantize="4bit")))


def test_unknown_quantization_is_refused_with_the_config():
    with pytest.raises(ConfigError, match="lora.quantize must be 4bit or null, got '8bit'"):
        preset_settings("qwen3-8b", lora={"quantize": "8bit"})


# ---------------------------------------------------------------- long context

def test_long_context_loads_the_model_with_yarn_and_the_merged_dir_keeps_it(tiny_dense_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = load_model(ModelSettings(name_or_path=str(tiny_dense_dir))).eval()
    yarn = load_model(ModelSettings(name_or_path=str(tiny_dense_dir), long_context=True)).eval()
    rope = yarn.config.rope_parameters
    assert rope["rope_type"] == "yarn" and rope["factor"] == 4.0 and rope["original_max_position_embeddings"] == 32768
    assert rope["rope_theta"] == plain.config.rope_parameters["rope_theta"]  # the model's own base is kept
    assert yarn.config.max_position_embeddings == 131072
    assert yarn.model.rotary_emb.attention_scaling == pytest.approx(0.1 * math.log(4.0) + 1.0)  # YaRN's mscale
    ids = torch.arange(40).unsqueeze(0)
    assert not torch.allclose(logits(yarn, ids), logits(plain, ids))
    save_model_dir(yarn, AutoTokenizer.from_pretrained(tiny_dense_dir), tmp_path / "out")
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.rope_parameters["rope_type"] == "yarn"


@pytest.mark.parametrize("rope_scaling, message", [
    ({"rope_type": "yarnn", "factor": 4.0}, "unknown rope_type 'yarnn'"),
    ({"rope_type": "yarn", "factor": 4.0}, "Missing required keys .*original_max_position_embeddings"),
])
def test_bad_rope_scaling_is_a_config_error_naming_the_field(rope_scaling, message, tiny_dense_dir):
    with pytest.raises(ConfigError, match=f"^model.rope_scaling: {message}"):
        load_model(ModelSettings(name_or_path=str(tiny_dense_dir), rope_scaling=rope_scaling))


def test_long_context_and_another_rope_scaling_together_are_refused():
    with pytest.raises(ConfigError, match="give long_context or rope_scaling, not both"):
        preset_settings("qwen3-8b", long_context=True, rope_scaling={"rope_type": "linear", "factor": 2.0})
