"""Local and hub loaders map real data into the chat schema; bad files name the line and column.
Run: pytest tests/data_recipes/test_loaders.py"""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from data_recipes.loaders import hub_dataset, local_file


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"q": "2+3?", "a": "It is \\boxed{5}.", "t": "add", "gold": "5"},
        {"q": "2+4?", "a": "It is \\boxed{6}.", "t": "add again", "gold": "6"}]


def test_jsonl_with_reasoning_column_becomes_think_block(tmp_path):
    ds = local_file(str(write_jsonl(tmp_path / "d.jsonl", ROWS)), prompt_column="q", response_column="a",
                    reasoning_column="t", solution_column="gold")
    assert ds[0]["messages"] == [{"role": "user", "content": "2+3?"},
                                 {"role": "assistant", "content": "<think>\nadd\n</think>\n\nIt is \\boxed{5}."}]
    assert ds[1]["solution"] == "6" and ds[0]["prompt"] == [{"role": "user", "content": "2+3?"}]


def test_parquet_and_json_load_the_same(tmp_path):
    Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    a = local_file(str(tmp_path / "d.parquet"), prompt_column="q", response_column="a")
    b = local_file(str(tmp_path / "d.json"), prompt_column="q", response_column="a")
    assert a["messages"] == b["messages"]


def test_messages_column_passes_through(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "ans": 1}]
    ds = local_file(str(write_jsonl(tmp_path / "m.jsonl", rows)), messages_column="messages",
                    solution_column="ans")
    assert ds[0]["messages"][1]["content"] == "yo" and ds[0]["solution"] == "1"


@pytest.mark.parametrize("content, message", [
    ('{"q": "a", "a": "b"}\n{"q": "a", "a": \n', r"line 2: malformed JSON"),
    ('{"q": "a"}\n', r"row 0: missing required column 'a'"),
    ('{"q": 3, "a": "b"}\n', r"row 0: column 'q' must be a string, got int"),
    ("\n", r"the dataset is empty"),
    ("[1, 2]\n", r"line 1: expected a JSON object, got list"),
])
def test_bad_local_file_names_file_and_line_or_column(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        local_file(str(path), prompt_column="q", response_column="a")
    assert str(path) in str(err.value)


def test_missing_and_unsupported_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="dataset file not found"):
        local_file(str(tmp_path / "none.jsonl"))
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported dataset format '.csv'"):
        local_file(str(tmp_path / "d.csv"))


def test_hub_loader_runs_the_real_load_dataset_path_on_a_local_stand_in(tmp_path):
    # A folder laid out like a hub dataset repo: datasets resolves it through the same load_dataset() call.
    repo = tmp_path / "org__math"
    (repo / "data").mkdir(parents=True)
    write_jsonl(repo / "data" / "train.jsonl", ROWS)
    ds = hub_dataset(str(repo), split="train", prompt_column="q", response_column="a", solution_column="gold",
                     limit=1)
    assert len(ds) == 1 and ds[0]["messages"][0]["content"] == "2+3?"


def test_hub_loader_offline_without_cache_is_one_clear_error():
    with pytest.raises(ValueError, match="hub dataset 'someone/not-cached-anywhere'.*could not be loaded"):
        hub_dataset("someone/not-cached-anywhere")
