# posttrain — the commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first so nothing later pulls another build: the CPU wheel here; set TORCH_SPEC / TORCH_INDEX
# (a pip --index-url for torch wheels) for a CUDA build on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CONFIG ?=
STAGE1_CONFIG := configs/stage1_sft/nano.yaml
STAGE2_CONFIG := configs/stage2_grpo/nano.yaml
STAGE3_CONFIG := configs/stage3_fusion/nano.yaml
STAGE4_CONFIG := configs/stage4_general/nano.yaml
DISTILL_CONFIG := configs/distill/nano.yaml
TEACHER ?=
STUDENT ?=
NANO_DENSE_BASE := checkpoints/nano-dense-base
PIPELINE ?= configs/pipelines/nano.yaml
EVAL_CONFIG ?= configs/eval/nano.yaml
MODEL ?= runs/nano/01_sft
ARGS ?=
NANO_BASE := checkpoints/nano-moe-base
NANO_CONFIG ?= configs/nano/moe-base.yaml
THREADS ?= 2
export OMP_NUM_THREADS ?= $(THREADS)
export TOKENIZERS_PARALLELISM ?= false
# LAUNCH=<name>: run the stage targets under `accelerate launch --config_file configs/accelerate/<name>.yaml`
# (README "Scale-out"); LAUNCH_ARGS: more launcher flags, e.g. "--num_processes 4". Unset: plain `python -m`.
LAUNCH ?=
LAUNCH_ARGS ?=
LAUNCH_NAMES := $(sort $(basename $(notdir $(wildcard configs/accelerate/*.yaml))))
ifneq ($(LAUNCH),)
ifeq ($(filter $(LAUNCH),$(LAUNCH_NAMES)),)
$(error unknown LAUNCH=$(LAUNCH); available: $(LAUNCH_NAMES) (configs/accelerate/<name>.yaml))
endif
endif
RUN_STAGE = $(if $(LAUNCH),$(BIN)/accelerate launch --config_file configs/accelerate/$(LAUNCH).yaml $(LAUNCH_ARGS) -m,$(BIN)/python -m)

.PHONY: help setup nano-base stage1 stage2 stage3 stage4 distill pipeline eval chat test test-e2e lint bench-sft

help:
	@echo "make setup        create $(VENV) (CPU torch first) and install posttrain with dev tools"
	@echo "make nano-base    rebuild the shipped nano Qwen3-MoE base ($(NANO_BASE)), ~35 min on 2 cores"
	@echo "make stage1       stage 1, long-CoT SFT (CONFIG=$(STAGE1_CONFIG) ARGS='key=value ...')"
	@echo "make stage2       stage 2, reasoning RL with GRPO (CONFIG=$(STAGE2_CONFIG); needs stage 1's output)"
	@echo "make stage3       stage 3, thinking-mode fusion (CONFIG=$(STAGE3_CONFIG); needs stage 2's output)"
	@echo "make stage4       stage 4, general RL over 34 tasks (CONFIG=$(STAGE4_CONFIG); needs stage 3's output)"
	@echo "  LAUNCH=<name>    with stage1-4, pipeline: under accelerate launch, configs/accelerate/<name>.yaml; one of:"
	@echo "                   $(LAUNCH_NAMES) (LAUNCH_ARGS='--num_processes 4' adds launcher flags)"
	@echo "make distill      strong-to-weak distillation (CONFIG=$(DISTILL_CONFIG) TEACHER=<dir|hub id> STUDENT=<dir|hub id>)"
	@echo "make pipeline     stages 1-4 in order, then the report card (PIPELINE=$(PIPELINE); ARGS=--dry-run)"
	@echo "make eval         evaluate a model dir (MODEL=$(MODEL))"
	@echo "make chat         chat with a model dir in the terminal (MODEL=$(MODEL) ARGS='--thinking-budget 64 ...')"
	@echo "make test         the default test suite (fast; what CI and the README run)"
	@echo "make test-e2e     the slow end-to-end tests (real training runs)"
	@echo "make lint         ruff"
	@echo "make bench-sft    stage-1 trainer throughput vs plain TRL SFTTrainer (run alone on the machine)"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Rebuilds the base from scratch (the output dir is replaced only when the new one is complete).
nano-base: setup
	$(BIN)/python -m stages.nano_base --config $(NANO_CONFIG) $(ARGS)

stage1: setup
	@if grep -q "$(NANO_BASE)" $(or $(CONFIG),$(STAGE1_CONFIG)) && [ ! -f $(NANO_BASE)/base.json ]; then \
		echo "$(NANO_BASE) is missing: building it first (make nano-base)"; \
		$(BIN)/python -m stages.nano_base --config configs/nano/moe-base.yaml; fi
	$(RUN_STAGE) stages.sft --config $(or $(CONFIG),$(STAGE1_CONFIG)) $(ARGS)

eval: setup
	$(BIN)/python -m stages.evaluate --config $(EVAL_CONFIG) model.name_or_path=$(MODEL) $(ARGS)

chat: setup
	$(BIN)/python -m stages.chat --model $(MODEL) $(ARGS)

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" $(ARGS)

test-e2e: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow $(ARGS)

lint: setup
	$(BIN)/ruff check stages rewards data_recipes pipelines examples tests benchmarks

bench-sft: setup
	$(BIN)/python benchmarks/sft_throughput.py $(ARGS)

stage2: setup
	$(RUN_STAGE) stages.reasoning_rl --config $(or $(CONFIG),$(STAGE2_CONFIG)) $(ARGS)

stage3: setup
	$(RUN_STAGE) stages.thinking_fusion --config $(or $(CONFIG),$(STAGE3_CONFIG)) $(ARGS)

stage4: setup
	$(RUN_STAGE) stages.general_rl --config $(or $(CONFIG),$(STAGE4_CONFIG)) $(ARGS)

# TEACHER / STUDENT set model.teacher / model.student.name_or_path; the nano student base is built if missing.
distill: setup
	@if [ -z "$(STUDENT)" ] && grep -q "$(NANO_DENSE_BASE)" $(or $(CONFIG),$(DISTILL_CONFIG)) && \
		[ ! -f $(NANO_DENSE_BASE)/base.json ]; then \
		echo "$(NANO_DENSE_BASE) is missing: building it first (make nano-base NANO_CONFIG=configs/nano/dense-base.yaml)"; \
		$(BIN)/python -m stages.nano_base --config configs/nano/dense-base.yaml; fi
	$(BIN)/python -m stages.distill --config $(or $(CONFIG),$(DISTILL_CONFIG)) \
		$(if $(TEACHER),model.teacher.name_or_path=$(TEACHER)) $(if $(STUDENT),model.student.name_or_path=$(STUDENT)) $(ARGS)

# Stage 1 needs the shipped base; the stages themselves skip what is finished and resume what is not.
pipeline: setup
	@if [ ! -f $(NANO_BASE)/base.json ] && grep -q "nano" $(PIPELINE); then \
		echo "$(NANO_BASE) is missing: building it first (make nano-base)"; \
		$(BIN)/python -m stages.nano_base --config configs/nano/moe-base.yaml; fi
	$(BIN)/python -m pipelines.run --config $(PIPELINE) $(if $(LAUNCH),launch=$(LAUNCH)) $(ARGS)
