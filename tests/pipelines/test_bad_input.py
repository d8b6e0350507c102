"""Bad input, stage by stage: each case exits 2 with one line naming the file, row or field, and writes nothing.
The cases run in-process through the same entry point as the command line (``run_cli``).
Run: pytest tests/pipelines/test_bad_input.py"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import run as pipeline
from stages import general_rl, reasoning_rl, sft, thinking_fusion
from stages.common import STAGE_FILE, write_json_atomic
from stages.config import run_cli

REPO = Path(__file__).resolve().parents[2]
STAGES = {
    "sft": (sft.main, sft.SFTStageConfig, "configs/stage1_sft/nano.yaml"),
    "rl": (reasoning_rl.main, reasoning_rl.ReasoningRLConfig, "configs/stage2_grpo/nano.yaml"),
    "fusion": (thinking_fusion.main, thinking_fusion.FusionStageConfig, "configs/stage3_fusion/nano.yaml"),
    "general": (general_rl.main, general_rl.GeneralRLConfig, "configs/stage4_general/nano.yaml"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_moe_dir) -> dict[str, Path]:
    """Files the cases point at: a finished and an unfinished stage dir, broken data files, a bad tokenizer."""
    d = tmp_path_factory.mktemp("bad_inputs")
    finished = d / "finished"
    shutil.copytree(tiny_moe_dir, finished)
    write_json_atomic(finished / STAGE_FILE, {"stage": "sft"})
    unfinished = d / "unfinished"
    shutil.copytree(tiny_moe_dir, unfinished)
    (unfinished / "train_log.jsonl").write_text("")
    no_think = d / "no_think_tokens"
    shutil.copytree(tiny_moe_dir, no_think)
    tok = json.loads((no_think / "tokenizer.json").read_text())
    tok["added_tokens"] = [a for a in tok["added_tokens"] if a["content"] not in ("<think>", "</think>")]
    for t in ("<think>", "</think>"):
        tok["model"]["vocab"].pop(t, None)
    (no_think / "tokenizer.json").write_text(json.dumps(tok))
    good = '{"prompt": "2+2?", "response": "4", "solution": "4"}\n'
    (d / "empty.jsonl").write_text("")
    (d / "broken.jsonl").write_text(good + good + '{"prompt": "3+3?", "response": \n' + good)
    (d / "no_response.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n')
    (d / "int_prompt.jsonl").write_text('{"prompt": 7, "response": "4"}\n')
    (d / "prompt_only.jsonl").write_text('{"messages": [{"role": "user", "content": "2+2?"}]}\n')
    (d / "afile").write_text("x")
    (d / "bad.yaml").write_text("output_dir: x\nseed: : 1\n")
    return {"finished": finished, "unfinished": unfinished, "no_think": no_think, "dir": d}


def data_file(name: str) -> str:
    return f"data=[{{name: local_file, kwargs: {{path: DIR/{name}}}}}]"


CASES = [  # (id, stage, overrides or a config path, expected message)
    ("malformed_yaml", "sft", "CONFIG=DIR/bad.yaml", r"bad.yaml: malformed YAML at line 2"),
    ("missing_config_file", "sft", "CONFIG=DIR/nope.yaml", r"nope.yaml"),
    ("unknown_key", "sft", ["learning_rate=1"], r"learning_rate: unknown key"),
    ("wrong_type", "sft", ["seed=abc"], r"seed: expected an integer, got 'abc'"),
    ("unknown_trainer_setting", "sft", ["trainer.lerning_rate=1"], r"trainer.lerning_rate: unknown SFTConfig"),
    ("model_path_missing", "sft", ["model.name_or_path=DIR/no_such_model"], r"no_such_model"),
    ("hub_model_offline", "sft", ["model.name_or_path=someone/not-cached-model"],
     r"'someone/not-cached-model' is not in the local cache and HF_HUB_OFFLINE=1"),
    ("input_not_a_finished_stage", "rl", ["model.name_or_path=UNFINISHED"], r"is not a finished stage"),
    ("dataset_file_missing", "sft", [data_file("missing.jsonl")], r"missing.jsonl"),
    ("dataset_file_empty", "sft", [data_file("empty.jsonl")], r"empty.jsonl"),
    ("malformed_json_line", "sft", [data_file("broken.jsonl")], r"broken.jsonl.*line 3"),
    ("missing_column", "sft", [data_file("no_response.jsonl")], r"no_response.jsonl.*response"),
    ("wrong_column_type", "sft", [data_file("int_prompt.jsonl")], r"int_prompt.jsonl.*prompt"),
    ("unknown_recipe", "sft", ["data.0.name=arithmetik"], r"unknown data recipe 'arithmetik'"),
    ("unknown_reward", "rl", ["rewards.0.name=math_acuracy"], r"rewards.0: unknown reward 'math_acuracy'"),
    ("reward_module_missing", "rl", ["rewards.0.name=no_such_pkg.mod:fn"], r"cannot import reward module"),
    ("reward_function_missing", "rl", ["rewards.0.name=rewards.math:no_such_fn"], r"has no function 'no_such_fn'"),
    ("reward_kwarg_unknown", "rl", ["rewards.0.kwargs={timeoutt: 1}"], r"has no parameter 'timeoutt'"),
    ("reward_weights_mismatch", "rl", ["trainer.reward_weights=[1.0, 2.0, 3.0]"], r"reward_weights"),
    ("num_generations_not_dividing", "rl", ["trainer.num_generations=7"], r"divisible by num_generations \(7\)"),
    ("unknown_loss_type", "rl", ["trainer.loss_type=grpoo"], r"unknown loss 'grpoo'"),
    ("anchor_without_data", "rl", ["anchor.coef=0.5"], r"anchor.coef > 0 needs anchor.data"),
    ("anchor_rows_without_replies", "rl",
     ["anchor={coef: 0.5, data: [{name: local_file, "
      "kwargs: {path: DIR/prompt_only.jsonl, messages_column: messages}}]}"],
     r"anchor.data: row 0 does not end with an assistant reply"),
    ("lora_target_matches_nothing", "sft", ["model.lora={target_modules: [qkv_proj]}"],
     r"'qkv_proj' matches no module"),
    ("tokenizer_without_think_tokens", "sft", ["model.name_or_path=NO_THINK"], r"lacks the tokens \['<think>'"),
    ("zero_rows", "sft", ["data.0.kwargs.n=0"], r"n must be a positive number"),
    ("negative_lora_rank", "sft", ["model.lora={r: -4}"], r"lora.r must be positive"),
    ("zero_max_length", "sft", ["model.max_length=0"], r"max_length must be positive"),
    ("output_path_not_writable", "sft", ["output_dir=DIR/afile/out"], r"afile is a file, not a directory"),
    ("negative_thinking_budget", "fusion", ["budgets=[16, -1]"], r"budgets: a thinking budget must be >= 0"),
    ("fusion_without_non_thinking", "fusion", ["non_thinking=[]"], r"non_thinking: give at least one recipe"),
    ("task_without_rewards", "general", ["data=[{name: 'examples.chemistry:build', kwargs: {n: 4}}]"],
     r"no rewards for the data's tasks \['molar_mass'\]"),
    ("unknown_task_reward", "general", ["tasks.sort_numbers=[{name: exact_mach}]"], r"unknown reward 'exact_mach'"),
    ("bad_mode_share", "general", ["modes.no_think_share=1.5"], r"modes.no_think_share must be in \[0, 1\]"),
]


def fill(value: str, inputs: dict[str, Path]) -> str:
    return (value.replace("DIR", str(inputs["dir"])).replace("UNFINISHED", str(inputs["unfinished"]))
            .replace("NO_THINK", str(inputs["no_think"])))


@pytest.mark.parametrize("case, stage, overrides, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, stage, overrides, message, inputs, tmp_path,
                                                         capsys, monkeypatch):
    import re

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main, cls, config = STAGES[stage]
    if isinstance(overrides, str):  # a config file of its own
        config, overrides = fill(overrides.removeprefix("CONFIG="), inputs), []
    else:
        config = str(REPO / config)
    out = tmp_path / "out"
    argv = ["--config", config, f"output_dir={out}", f"model.name_or_path={inputs['finished']}", "threads=1",
            *(fill(o, inputs) for o in overrides)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, cls, "", argv)
    lines = capsys.readouterr().err.strip().splitlines()  # progress bars of a model load may come first
    errors = [line for line in lines if line.startswith("error: ")]
    assert exit_info.value.code == 2
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert re.search(message, errors[0]), errors[0]
    assert not out.exists() and not list(tmp_path.iterdir()), f"{case} wrote {list(tmp_path.iterdir())}"


def test_pipeline_with_an_unknown_stage_or_missing_stage_config_is_refused(tmp_path, capsys):
    for steps, message in [("[{stage: sftt, config: configs/stage1_sft/nano.yaml, output: a}]", "stage 'sftt'"),
                           ("[{stage: sft, config: configs/nope.yaml, output: a}]", "configs/nope.yaml does not")]:
        with pytest.raises(SystemExit):
            run_cli(pipeline.main, pipeline.PipelineConfig, "", [
                "--config", str(REPO / "configs" / "pipelines" / "nano.yaml"), f"run_dir={tmp_path / 'run'}",
                f"steps={steps}"])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_there_are_at_least_25_bad_input_cases():
    assert len(CASES) >= 25
