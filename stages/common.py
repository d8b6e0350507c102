"""Plumbing shared by the stages: threads, model/tokenizer loading, LoRA, and the stage output contract.

The output contract (ARCHITECTURE.md): a stage's output dir is a plain HF model dir (LoRA merged, tokenizer and
chat template saved) plus ``stage.json``, written last and atomically. ``stage.json`` present = complete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from stages.config import ConfigError

STAGE_FILE = "stage.json"
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- shared config sections

@dataclass
class LoraSettings:
    """peft LoRA. For Qwen3-MoE experts (fused 3-D parameters) use ``target_parameters``."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    target_parameters: list[str] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=list)
    # "4bit" = QLoRA: the base model loaded in NF4 with double quantization and bf16 compute (bitsandbytes, CUDA)
    quantize: str | None = None

    def __post_init__(self):
        if self.r <= 0:
            raise ValueError(f"lora.r must be positive, got {self.r}")
        if self.quantize not in (None, "4bit"):
            raise ValueError(f"lora.quantize must be 4bit or null, got {self.quantize!r}")


# The Qwen3 model cards' long-context recipe (4B and up): YaRN, factor 4 over the native 32K -> 131,072 tokens.
QWEN3_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


@dataclass
class ModelSettings:
    """Which model a stage starts from, and how to load it."""

    name_or_path: str  # a local model dir (a previous stage's output) or a hub id like Qwen/Qwen3-0.6B
    dtype: str = "float32"  # float32 | bfloat16 | float16 (CPU: float32)
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    lora: LoraSettings | None = None
    max_length: int = 1024  # longest training sequence in tokens (Qwen3 presets carry their context length)
    # RoPE scaling set on the loaded model's config (transformers 5 calls it ``rope_parameters``), e.g.
    # {rope_type: yarn, factor: 4.0, original_max_position_embeddings: 32768}; saved with the trained model.
    rope_scaling: dict[str, Any] | None = None
    long_context: bool = False  # shorthand for rope_scaling = Qwen3's YaRN x4 (32K -> 128K); raise max_length too

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.max_length <= 0:
            raise ValueError(f"model.max_length must be positive, got {self.max_length}")
        if self.long_context:
            if self.rope_scaling not in (None, QWEN3_YARN):
                raise ValueError("model.long_context sets rope_scaling to Qwen3's YaRN; give long_context or "
                                 "rope_scaling, not both")
            self.rope_scaling = dict(QWEN3_YARN)
        if self.rope_scaling is not None and "rope_type" not in self.rope_scaling:
            raise ValueError(f"model.rope_scaling needs a rope_type (e.g. yarn), got {self.rope_scaling}")


@dataclass
class RecipeSpec:
    """A data recipe from data_recipes (a built-in name or ``package.module:function``) and its arguments."""

    name: str
    weight: float = 1.0  # sampling multiplier when mixing: 0.5 keeps half the rows, 2.0 repeats them twice
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.weight <= 0:
            raise ValueError(f"weight of recipe {self.name!r} must be positive, got {self.weight}")


def build_data(specs: list[RecipeSpec], seed: int, key: str = "data"):
    """Build each recipe and mix them by weight, shuffled with ``seed``. Every row needs ``messages``."""

    from data_recipes import get_recipe

    parts = []
    for i, spec in enumerate(specs):
        try:
            ds = get_recipe(spec.name)(**spec.kwargs)
        except TypeError as e:  # wrong keyword for the recipe function
            raise ConfigError(f"{key}.{i} ({spec.name}): {e}") from None
        if "messages" not in ds.column_names:
            raise ValueError(f"{key}.{i} ({spec.name}): recipe returned no 'messages' column "
                             f"(columns: {ds.column_names})")
        if len(ds) == 0:
            raise ValueError(f"{key}.{i} ({spec.name}): recipe returned no rows")
        whole, frac = divmod(spec.weight, 1.0)
        idx = list(range(len(ds))) * int(whole) + list(range(round(frac * len(ds))))
        parts.append(ds.select(idx))
    if not parts:
        raise ConfigError(f"{key}: at least one data recipe is needed")
    return merge_parts(parts).shuffle(seed=seed)


def merge_parts(parts: list):
    """Concatenate datasets with different columns: a row lacks a column of another recipe -> None there (every
    reward reads None as "not my row"); a column two recipes type differently (arithmetic's integer ``answer``,
    multiple choice's letter) is stored as text in both."""
    import datasets

    if len(parts) == 1:
        return parts[0]
    columns = list(dict.fromkeys(c for p in parts for c in p.column_names))
    kinds = {c: {str(p.features[c]) for p in parts if c in p.column_names} for c in columns}
    as_text = {c for c, k in kinds.items() if len(k) > 1}
    if not as_text and all(set(p.column_names) == set(columns) for p in parts):
        return datasets.concatenate_datasets(parts)
    rows = []
    for p in parts:
        for row in p:
            rows.append({c: (None if row.get(c) is None else str(row[c])) if c in as_text else row.get(c)
                         for c in columns})
    return datasets.Dataset.from_list(rows)


# ---------------------------------------------------------------- process setup

def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads: on a 2-core box oversubscription costs 5-10x."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def trainer_defaults(trainer: dict) -> dict:
    """The trainer section with two defaults made explicit.

    - TRL defaults to bf16 (a GPU setting). Without an accelerator, and unless the config says otherwise, train
      on the CPU in float32 so the same config runs anywhere; say so.
    - transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` and warns when TRL's
      default sets the old name; pass TRL's default (on) under the new name.
    """
    import torch

    out = dict(trainer)
    if "gradient_checkpointing" in out:
        out.setdefault("activation_checkpointing", out.pop("gradient_checkpointing"))
    out.setdefault("activation_checkpointing", True)
    if not (torch.cuda.is_available() or "use_cpu" in out or "bf16" in out):
        print("[posttrain] no GPU: training on the CPU in float32 (trainer.use_cpu=true, trainer.bf16=false)")
        out.update(use_cpu=True, bf16=False)
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "math-verify"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------- atomic files

def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to a temp file in the same dir, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; a stage's files are meant to be read by others
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def begin_stage(output_dir: str, threads: int, tag: str) -> Path | None:
    """The checked output dir of a stage about to run, or None when it is already complete (and says so)."""
    out = Path(output_dir)
    if is_complete(out):
        print(f"[{tag}] {out} is complete (stage.json exists); nothing to do. Delete it or set output_dir to rerun.")
        return None
    check_writable(out, "output_dir")
    set_threads(threads)
    return out


# ---------------------------------------------------------------- processes (accelerate launch / torchrun)
# Under a launcher every process runs the whole main(). All of them train (the trainer shards the data and syncs the
# gradients); only the main process builds shared files, evaluates and writes the stage; the others wait for it.

_WAIT_GROUP: tuple | None = None  # (the default process group it belongs to, a gloo group with a long timeout)
WAIT_TIMEOUT = datetime.timedelta(hours=24)


def world_size() -> int:
    """Processes in the default torch.distributed group; 1 in a plain run (or before the trainer sets it up)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True in the one process that writes a stage's files and evaluates: the only process of a plain run, global
    rank 0 under ``accelerate launch`` / torchrun (read from RANK before the trainer sets up torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait until every process gets here; a no-op in a single process. Every process must call it equally often.

    The others wait here while the main process evaluates or builds data, which can outlast the trainer's own
    collective timeout (``trainer.ddp_timeout``, 30 min by default), so the wait runs on its own gloo group with a
    24-hour timeout. If the main process dies instead, the launcher stops the others.
    """
    import torch.distributed as dist

    global _WAIT_GROUP
    if world_size() == 1:
        return
    world = dist.group.WORLD
    if _WAIT_GROUP is None or _WAIT_GROUP[0] is not world:
        _WAIT_GROUP = (world, dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT))
    dist.barrier(group=_WAIT_GROUP[1])


def broadcast_from_main(value):
    """The main process's ``value`` in every process (pickled); ``value`` itself in a single process."""
    import torch.distributed as dist

    if world_size() == 1:
        return value
    barrier()  # creates the gloo group on every rank, and lets the others wait with its long timeout
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_WAIT_GROUP[1])
    return box[0]


@contextlib.contextmanager
def whole_weights(model):
    """Within it, ``model`` has its whole weights on every process, for generation before training (evaluation,
    rejection sampling); a no-op unless a ZeRO-3 launch loaded the model into shards (from_pretrained does once the
    trainer args exist). Every process enters (the gathering is collective).

        with whole_weights(model):
            before = evaluate(model, ...) if is_main_process() else None
    """
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        yield model
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield model


def is_complete(stage_dir: str | Path) -> bool:
    return (Path(stage_dir) / STAGE_FILE).is_file()


def read_stage(stage_dir: str | Path) -> dict:
    return json.loads((Path(stage_dir) / STAGE_FILE).read_text())


def check_writable(path: str | Path, key: str) -> Path:
    """Fail early (before any training) when the output location cannot be written."""
    path = Path(path)
    parent = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise ConfigError(f"{key}: {path} cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{key}: {path} is not writable")
    return path


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written dir into place (same filesystem rename), replacing an unfinished one."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_dir, final_dir)


def load_saved_rows(data_dir: Path, key: str):
    """(rows, card) of a dataset :func:`save_rows` wrote with the same manifest ``key`` (the settings and inputs it
    was built from), else None: a rerun after a crash reuses generated data instead of sampling it again."""
    import datasets

    manifest = data_dir / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("key") != key:
        return None
    return datasets.load_from_disk(str(data_dir / "rows")), json.loads((data_dir / "card.json").read_text())


def save_rows(data_dir: Path, rows: list[dict], card: dict, readme: str, key: str, **manifest: Any):
    """Save ``rows`` with their card, README and manifest (``key`` + ``manifest``) as ``data_dir``, written to a
    temp dir and renamed: a crash never leaves a half dataset that a rerun would take as done. Returns the rows
    loaded back from disk."""
    import datasets

    tmp = data_dir.with_name(f".{data_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "rows"))
    write_json_atomic(tmp / "card.json", card)
    (tmp / "README.md").write_text(readme)
    write_json_atomic(tmp / "manifest.json", {"key": key, "rows": len(rows), **manifest})
    publish_dir(tmp, data_dir)
    return datasets.load_from_disk(str(data_dir / "rows"))


def train_metrics(trainer, log: list[dict], seconds: float) -> dict:
    """A fine-tuning run for ``stage.json``: optimizer steps, first and last logged loss, training seconds."""
    losses = [r["loss"] for r in log if "loss" in r]
    return {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "seconds": round(seconds, 1)}


def require_finished_input(name_or_path: str, key: str) -> None:
    """A local stage dir given as input must be finished: one that crashed after saving its weights (no
    ``stage.json`` yet) would otherwise load fine and silently start the next stage from a half-done model."""
    path = Path(name_or_path)
    if path.is_dir() and not is_complete(path) and any(
            (path / marker).exists() for marker in ("train_log.jsonl", "checkpoints", "data_report.json")):
        raise ConfigError(f"{key}: {path} is not a finished stage (no {STAGE_FILE}); rerun the stage that writes it")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- models

def resolve_model_path(name_or_path: str, key: str = "model.name_or_path") -> str:
    """A local dir must exist and hold a model; anything else is a hub id, which needs network or a cache."""
    p = Path(name_or_path)
    looks_local = name_or_path.startswith((".", "/", "~")) or p.exists() or name_or_path.count("/") != 1
    if looks_local:
        p = p.expanduser()
        if not p.is_dir():
            raise ConfigError(f"{key}: model dir {name_or_path!r} does not exist")
        if not (p / "config.json").is_file():
            raise ConfigError(f"{key}: {name_or_path!r} is not a model dir (no config.json)")
        return str(p)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise ConfigError(f"{key}: hub model {name_or_path!r} is not in the local cache and HF_HUB_OFFLINE=1")
    return name_or_path


def load_tokenizer(name_or_path: str, key: str = "model.name_or_path"):
    from transformers import AutoTokenizer

    from data_recipes.chat_template import CHAT_TEMPLATE, check_tokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path, key))
    if not tok.chat_template or "generation" not in tok.chat_template or \
            tok.chat_template.startswith("{#- posttrain's chat template"):
        # Real Qwen3 checkpoints ship a template without generation markers; ours renders the same text. Dirs
        # written by an older posttrain get the current one (same text, newer loss masking).
        tok.chat_template = CHAT_TEMPLATE
    check_tokenizer(tok, f"{key} {name_or_path!r}")
    return tok


def load_model(settings: ModelSettings, key: str = "model"):
    """Load a causal LM for training (router logits off for generation; the trainer turns them on), with the
    settings' RoPE scaling applied and, for QLoRA (``lora.quantize: 4bit``), the base model in 4 bits."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    quantization = quantization_config(settings.lora, f"{key}.lora.quantize")
    path = resolve_model_path(settings.name_or_path, f"{key}.name_or_path")
    extra: dict[str, Any] = {}
    if settings.rope_scaling:
        extra["config"] = with_rope_scaling(AutoConfig.from_pretrained(path), settings.rope_scaling,
                                            f"{key}.rope_scaling")
    if quantization is not None:
        extra["quantization_config"] = quantization
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=getattr(torch, settings.dtype),
        attn_implementation=settings.attn_implementation,
        **extra,
    )
    # transformers pitfall: a config saved with output_router_logits=True crashes generate() with a KV cache.
    if hasattr(model.config, "output_router_logits"):
        model.config.output_router_logits = False
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        # QLoRA's recipe: freeze the 4-bit base, keep norms in float32, checkpoint activations (TRL does not do it)
        model = prepare_model_for_kbit_training(model)
    return model


def with_rope_scaling(config, rope_scaling: dict[str, Any], key: str = "model.rope_scaling"):
    """``config`` with RoPE scaling merged into ``rope_parameters`` (transformers 5's name for ``rope_scaling``;
    ``rope_theta`` is kept) and ``max_position_embeddings`` raised to the scaled context.

        with_rope_scaling(config, QWEN3_YARN).rope_parameters["rope_type"]   # "yarn"
    """
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if rope_scaling["rope_type"] not in ROPE_INIT_FUNCTIONS:  # transformers only warns, then fails at model init
        raise ConfigError(f"{key}: unknown rope_type {rope_scaling['rope_type']!r}; known: "
                          f"{sorted(ROPE_INIT_FUNCTIONS)}")
    config.rope_parameters = {**(config.rope_parameters or {}), **rope_scaling}
    factor, original = rope_scaling.get("factor"), rope_scaling.get("original_max_position_embeddings")
    if factor and original:
        config.max_position_embeddings = max(config.max_position_embeddings, int(factor * original))
    try:
        config.validate_rope()
    except KeyError as e:  # a required key of the rope type is missing
        raise ConfigError(f"{key}: {e.args[0]}") from None
    return config


def quantization_config(lora: LoraSettings | None, key: str = "model.lora.quantize"):
    """transformers' ``BitsAndBytesConfig`` for QLoRA (NF4, double quantization, bf16 compute), or None when
    ``lora.quantize`` is not set. bitsandbytes 4-bit needs the package and a CUDA GPU; without them this is a
    ConfigError that says which is missing."""
    if lora is None or lora.quantize is None:
        return None
    import importlib.util

    import torch

    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed (pip install bitsandbytes)")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    if missing:
        raise ConfigError(f"{key}: {lora.quantize} (QLoRA) needs bitsandbytes and a CUDA GPU, but "
                          f"{' and '.join(missing)}; remove {key} to train LoRA on the unquantized model")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def is_moe(model) -> bool:
    return getattr(model.config, "num_experts", 0) > 0


def lora_config(settings: LoraSettings, model, key: str = "model.lora"):
    """A peft LoraConfig; targets that match nothing in the model are a config error, not a silent no-op."""
    from peft import LoraConfig

    names = [n for n, _ in model.named_modules()]
    for target in settings.target_modules:
        if not any(n == target or n.endswith("." + target) for n in names):
            raise ConfigError(f"{key}.target_modules: {target!r} matches no module of this model")
    params = [n for n, _ in model.named_parameters()]
    for target in settings.target_parameters:
        if not any(n.endswith(target) or n.endswith(target + ".weight") for n in params):
            raise ConfigError(f"{key}.target_parameters: {target!r} matches no parameter of this model")
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        target_parameters=list(settings.target_parameters) or None,
        modules_to_save=list(settings.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )


def save_model_dir(model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
    """Save a servable model dir: LoRA merged, router-logit flag reset, tokenizer + chat template beside it.
    ``state_dict``: the full weights gathered from sharded training (ZeRO-3, FSDP), saved instead of the model's own."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if state_dict is not None:
            raise NotImplementedError("merging LoRA weights gathered from sharded training (ZeRO-3, FSDP)")
        model = model.merge_and_unload()
    if hasattr(model.config, "output_router_logits"):
        model.config.output_router_logits = False
    model.config.use_cache = True
    model.save_pretrained(out_dir, state_dict=state_dict)
    tokenizer.save_pretrained(out_dir)


def last_valid_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` dir; half-written ones (a kill while saving) are deleted.

    The Trainer writes ``trainer_state.json`` after the weights, optimizer and RNG states, but nothing of a
    checkpoint atomically, so "complete" = that file is there and parses.
    """
    dirs = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or -1))
    valid = []
    for d in dirs:
        try:
            json.loads((d / "trainer_state.json").read_text())
            valid.append(d)
        except (OSError, ValueError):
            if is_main_process():  # every rank looks; one deletes
                print(f"[posttrain] removing the half-written {d} (interrupted while saving)", flush=True)
                shutil.rmtree(d, ignore_errors=True)
    return valid[-1] if valid else None


def train_resumable(trainer, out_dir: Path, tag: str) -> tuple[list[dict], float]:
    """Run ``trainer.train()``, resuming from the last checkpoint in ``<out_dir>/checkpoints`` if there is one.

    Returns (log history, training seconds) and writes the history to ``train_log.jsonl``. Rollouts the trainer
    generates (GRPO, on-policy distillation) use the copy-free KV cache of ``stages/kv_cache.py``.
    """
    from stages.kv_cache import growing_kv_cache

    resume = last_valid_checkpoint(out_dir / "checkpoints")
    if resume:
        print(f"[{tag}] resuming from the last checkpoint in {out_dir / 'checkpoints'} ({resume.name})", flush=True)
    t0 = time.time()
    with growing_kv_cache(trainer.model):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.time() - t0
    log = trainer.state.log_history
    if is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return log, seconds


def save_and_reload(trainer, tokenizer, out_dir: Path, settings: ModelSettings):
    """Save the trained model as a servable dir and load it back as evaluation will see it.

    Every process calls it (gathering sharded weights is collective); the main process saves and gets the model
    back, the others get None: only the main process evaluates.
    """
    from peft import PeftModel
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    model, state_dict = trainer.model, None
    zero3 = trainer.is_deepspeed_enabled and is_deepspeed_zero3_enabled()
    lora = isinstance(model, PeftModel)
    if zero3 and lora:  # each process holds a shard: gather the trained (adapter) weights on the main one
        state_dict = trainer.model_wrapped._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=True)
    elif zero3 or trainer.is_fsdp_enabled:  # the whole weights
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped if zero3 else model)
    if not is_main_process():
        return None
    if zero3:  # training is over: load models whole from here on, not into ZeRO-3 shards (from_pretrained would)
        unset_hf_deepspeed_config()
    if lora and state_dict is not None:  # the shards' LoRA weights onto a whole copy of the input model, to merge
        model, state_dict = with_trained_adapter(model, settings, state_dict), None
    save_model_dir(model, tokenizer, out_dir, state_dict)
    return load_model(ModelSettings(name_or_path=str(out_dir), dtype=settings.dtype,
                                    attn_implementation=settings.attn_implementation))


def with_trained_adapter(trained, settings: ModelSettings, state_dict: dict):
    """The input model (loaded whole) with the LoRA config of ``trained`` and the gathered weights in
    ``state_dict`` (peft's names; the adapter alone, or everything)."""
    from peft import get_peft_model

    model = get_peft_model(load_model(settings), trained.peft_config["default"])
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    lora_missing = [k for k in missing if "lora_" in k or "modules_to_save" in k]
    if unexpected or lora_missing:
        raise RuntimeError(f"gathered LoRA weights do not fit the model: unexpected {unexpected[:3]}, "
                           f"missing {lora_missing[:3]}")
    return model


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def model_card(record: dict) -> str:
    """An HF-style README.md for a stage dir: base model, stage, data, metrics."""
    m = record.get("metrics", {})
    lines = ["---", f"base_model: {record.get('input_model')}", "library_name: transformers",
             f"tags: [posttrain, {record.get('stage')}, qwen3]", "---", "",
             f"# posttrain {record.get('stage')} model", "",
             f"Trained from `{record.get('input_model')}` by posttrain's `{record.get('stage')}` stage "
             f"({record.get('finished_at')}, git {record.get('git_sha')}).", "", "## Data", "",
             "```json", json.dumps(record.get("data", {}), default=str)[:2000], "```", "", "## Evaluation", ""]
    for mode, r in (m.get("eval") or {}).items():
        lines.append(f"- {mode}: accuracy {r.get('accuracy')}, well-formed {r.get('well_formed')}, "
                     f"mean tokens {r.get('mean_tokens')} (n={r.get('n')})")
    for key in ("think_follow", "comparison"):
        if m.get(key):
            lines.append(f"- {key}: {json.dumps({k: v for k, v in m[key].items() if not isinstance(v, list)})}")
    train = m.get("train", {})
    lines += ["", "## Training", "", f"- steps: {train.get('steps')}, seconds: {train.get('seconds')}",
              f"- wall time {record.get('wall_seconds')} s, peak memory {record.get('peak_memory_mb')} MB",
              "", "The full record, config included, is `stage.json`.", ""]
    return "\n".join(lines)


def finish_stage(out_dir: Path, record: dict) -> None:
    """Write the model card, then ``stage.json`` last: from here on the dir counts as complete; then drop the
    checkpoints."""
    base = {"finished_at": now(), "peak_memory_mb": peak_memory_mb(), "versions": versions(), "git_sha": git_sha()}
    card = out_dir / "README.md"
    card.with_suffix(".md.tmp").write_text(model_card({**record, **base}))
    card.with_suffix(".md.tmp").replace(card)
    write_json_atomic(out_dir / STAGE_FILE, {**record, **base})
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
