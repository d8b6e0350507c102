"""Load real datasets — local files or Hugging Face hub datasets — into the chat schema the stages train on.

    local_file(path="data/cot.jsonl", prompt_column="question", response_column="answer",
               reasoning_column="thinking", solution_column="gold")
    hub_dataset(name="open-r1/OpenR1-Math-220k", split="train", prompt_column="problem",
                response_column="solution", solution_column="answer", limit=20000)

Output columns: ``messages`` (user turn; assistant turn = ``<think>\\n{reasoning}\\n</think>\\n\\n{response}``
when a reasoning column is mapped, else the response as is), ``prompt`` (the user turn alone) and, when mapped,
``solution``. A dataset that already has a ``messages`` column can be passed through with
``messages_column="messages"``. Every problem names the file (and line) and the column.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset


def _to_chat(rows: list[dict], where: str, prompt_column: str | None, response_column: str | None,
             reasoning_column: str | None, solution_column: str | None, messages_column: str | None,
             system_prompt: str | None) -> Dataset:
    if not rows:
        raise ValueError(f"{where}: the dataset is empty")
    needed = [c for c in (messages_column,) if c] or [c for c in (prompt_column, response_column) if c]
    needed += [c for c in (reasoning_column, solution_column) if c]
    out = []
    for i, row in enumerate(rows):
        for col in needed:
            if col not in row:
                raise ValueError(f"{where}: row {i}: missing required column {col!r} (columns: {sorted(row)})")
        if messages_column:
            messages = row[messages_column]
            if not (isinstance(messages, list) and all(isinstance(m, dict) and "role" in m and "content" in m
                                                        for m in messages)):
                raise ValueError(f"{where}: row {i}: column {messages_column!r} must be a list of "
                                 "{role, content} messages")
            prompt = [m for m in messages if m["role"] != "assistant"][:1]
        else:
            for col in (prompt_column, response_column, reasoning_column):
                if col and not isinstance(row[col], str):
                    raise ValueError(f"{where}: row {i}: column {col!r} must be a string, got "
                                     f"{type(row[col]).__name__}")
            response = row[response_column]
            if reasoning_column:
                response = f"<think>\n{row[reasoning_column].strip()}\n</think>\n\n{response.strip()}"
            prompt = [{"role": "user", "content": row[prompt_column]}]
            if system_prompt:
                prompt = [{"role": "system", "content": system_prompt}, *prompt]
            messages = [*prompt, {"role": "assistant", "content": response}]
        rec = {"messages": messages, "prompt": prompt}
        if solution_column:
            gold = row[solution_column]
            rec["solution"] = None if gold is None else str(gold)
        out.append(rec)
    return Dataset.from_list(out)


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list of objects) or .parquet file; malformed JSON names its line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: dataset file not found")
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path)).to_list()
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: unsupported dataset format {path.suffix!r}; use .jsonl, .json or .parquet")
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def local_file(path: str, prompt_column: str = "prompt", response_column: str = "response",
               reasoning_column: str | None = None, solution_column: str | None = None,
               messages_column: str | None = None, system_prompt: str | None = None,
               limit: int | None = None) -> Dataset:
    """A local .jsonl / .json / .parquet file mapped into the chat schema (see module docstring)."""
    rows = read_rows(path)[:limit]
    return _to_chat(rows, str(path), prompt_column, response_column, reasoning_column, solution_column,
                    messages_column, system_prompt)


def hub_dataset(name: str, split: str = "train", config: str | None = None, prompt_column: str = "prompt",
                response_column: str = "response", reasoning_column: str | None = None,
                solution_column: str | None = None, messages_column: str | None = None,
                system_prompt: str | None = None, limit: int | None = None, data_dir: str | None = None) -> Dataset:
    """A Hugging Face hub dataset (or a local dataset folder / script) mapped into the chat schema.

    Offline (HF_HUB_OFFLINE=1) it works from the local cache only and says so when the dataset is missing.
    """
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    try:
        ds = load_dataset(name, config, split=split, data_dir=data_dir)
    except (DatasetNotFoundError, FileNotFoundError, ConnectionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"hub dataset {name!r} (split {split!r}) could not be loaded: {first}") from None
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return _to_chat(ds.to_list(), f"hub dataset {name!r}", prompt_column, response_column, reasoning_column,
                    solution_column, messages_column, system_prompt)
