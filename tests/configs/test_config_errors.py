"""Bad configs fail in one line naming the file and key, before any model loads.
Run: pytest tests/configs/test_config_errors.py"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stages.config import ConfigError, apply_override, load_config
from stages.sft import SFTStageConfig

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
output_dir: OUT
model: {name_or_path: MODEL}
data:
  - name: arithmetic
    kwargs: {n: 10}
"""


def fill(text, out, model):
    return text.replace("OUT", str(out)).replace("MODEL", str(model))


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, overrides, message", [
    ("output_dir: ok\nseed: : 1\n", [], r"malformed YAML at line 2"),
    (GOOD + "learning_rate: 1\n", [], r"learning_rate: unknown key"),
    (GOOD + "trainr: {}\n", [], r"trainr: unknown key \(did you mean 'trainer'\?\)"),
    (GOOD, ["seed=abc"], r"seed: expected an integer, got 'abc'"),
    (GOOD, ["threads=1.5"], r"threads: expected an integer"),
    (GOOD, ["drop_too_easy=maybe"], r"drop_too_easy: expected true or false"),
    (GOOD, ["data.3.name=x"], r"data.3 is not an index of a list of 1"),
    (GOOD, ["data.0.weight=-1"], r"data.0: weight of recipe 'arithmetic' must be positive"),
    (GOOD, ["model.dtype=float8"], r"model: model.dtype must be"),
    (GOOD, ["filters.enabled=[nope]"], r"filters.enabled: unknown filter 'nope'"),
    (GOOD, ["model.preset=qwen9"], r"model.preset: unknown preset 'qwen9'"),
    (GOOD, ["eval.modes=[fast]"], r"eval.modes: unknown mode 'fast'"),
    ("model: {name_or_path: x}\ndata: []\n", [], r"output_dir: required key is missing"),
    ("- a\n- b\n", [], r"expected a mapping of keys at the top level"),
    (GOOD, ["seed"], r"override 'seed' is not of the form key=value"),
])
def test_bad_config_is_a_one_line_error_naming_file_and_key(tmp_path, text, overrides, message):
    path = write(tmp_path, fill(text, tmp_path / "out", tmp_path))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(SFTStageConfig, path, overrides)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load_config(SFTStageConfig, tmp_path / "nope.yaml")


def test_overrides_reach_nested_keys_and_list_items(tmp_path):
    path = write(tmp_path, fill(GOOD, tmp_path, tmp_path))
    cfg = load_config(SFTStageConfig, path, ["data.0.kwargs.n=5000", "trainer.learning_rate=1e-4",
                                             "model.lora.r=4", "eval.sampling.max_new_tokens=7"])
    assert cfg.data[0].kwargs["n"] == 5000
    assert cfg.trainer["learning_rate"] == 1e-4
    assert cfg.model.lora.r == 4
    assert cfg.eval.sampling.max_new_tokens == 7


def test_apply_override_parses_values_as_yaml():
    data = {"a": {"b": [1, 2]}}
    apply_override(data, "a.b.1=[x, y]", "f")
    apply_override(data, "a.c=null", "f")
    assert data == {"a": {"b": [1, ["x", "y"]], "c": None}}


def run_stage(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "stages.sft", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_cli_unknown_trainer_setting_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_moe_dir):
    out = tmp_path / "out"
    path = write(tmp_path, fill(GOOD, out, tiny_moe_dir) + "trainer: {learning_rat: 1.0e-4}\n")
    res = run_stage("--config", str(path))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert "trainer.learning_rat: unknown SFTConfig setting (did you mean 'learning_rate'?)" in res.stderr
    assert res.stderr.startswith(f"error: {path}")
    assert not out.exists()


def test_cli_missing_model_dir_exits_2_naming_it(tmp_path):
    out = tmp_path / "out"
    path = write(tmp_path, fill(GOOD, out, tmp_path / "no_model"))
    res = run_stage("--config", str(path))
    assert res.returncode == 2
    assert "model.name_or_path: model dir" in res.stderr and "does not exist" in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert not out.exists()


def test_cli_unknown_recipe_exits_2_naming_it(tmp_path, tiny_moe_dir):
    out = tmp_path / "out"
    path = write(tmp_path, fill(GOOD, out, tiny_moe_dir).replace("name: arithmetic", "name: arithmetik"))
    res = run_stage("--config", str(path))
    assert res.returncode == 2
    assert "unknown data recipe 'arithmetik'" in res.stderr
    assert not out.exists()
