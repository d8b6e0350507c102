"""Stage 3 through its real entry point on a tiny model: builds and saves the fused dataset with its card,
trains, evaluates modes, ThinkFollow and the thinking-budget curve (table + PNG), and a rerun after a crash
reuses the saved dataset instead of sampling again. Run: pytest tests/stages/test_thinking_fusion.py"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stages import thinking_fusion
from stages.common import STAGE_FILE, write_json_atomic
from stages.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def finished_input(tmp_path, model_dir) -> Path:
    """A copy of the tiny model that looks like a finished stage-2 dir."""
    d = tmp_path / "stage2"
    shutil.copytree(model_dir, d)
    write_json_atomic(d / STAGE_FILE, {"stage": "reasoning_rl"})
    return d


# A stage-3 run on a tiny model in seconds (also used by the multi-process tests).
TINY_ARGS = [
    "threads=1", "rejection.queries.0.kwargs.n=4", "rejection.samples_per_query=2",
    "rejection.sampling.max_new_tokens=16",
    "thinking=[{name: arithmetic, kwargs: {n: 8, seed: 5, difficulty: 1}}]",
    "non_thinking=[{name: arithmetic, kwargs: {n: 8, seed: 3, difficulty: 1, answer_style: direct}}]",
    "multi_turn.dialogs=3", "eval.data.kwargs.n=4", "eval.sampling.max_new_tokens=12", "eval.batch_size=4",
    "follow.data=[{name: arithmetic, kwargs: {n: 4, seed: 0, difficulty: 1, split: eval}}]",
    "follow.single_turn=3", "follow.dialogs=2", "follow.max_turns=2", "follow.max_new_tokens=12",
    "budgets=[0, 4, null]", "trainer.max_steps=2", "trainer.logging_steps=1"]


def config(tmp_path, model_dir, *overrides):
    return load_config(thinking_fusion.FusionStageConfig, REPO / "configs" / "stage3_fusion" / "nano.yaml", [
        f"output_dir={tmp_path / 'out'}", f"model.name_or_path={model_dir}", *TINY_ARGS,
        "trainer.per_device_train_batch_size=2", *overrides])


def test_stage3_builds_the_fused_data_trains_and_reports_modes_follow_and_budgets(tmp_path, tiny_moe_dir):
    out = thinking_fusion.main(config(tmp_path, finished_input(tmp_path, tiny_moe_dir), "model.max_length=160"))
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["stage"] == "thinking_fusion" and record["metrics"]["train"]["steps"] == 2
    card = record["data"]["card"]
    # 8 thinking + 8 non-thinking single-turn rows, the dialogs' turns, and whatever rejection sampling kept
    assert card["per_source"]["thinking/arithmetic"] == card["per_source"]["non_thinking/arithmetic"] == 8
    assert card["per_source"]["multi_turn"] >= 6
    assert card["rejection_sampling"]["samples"] == 8 and set(card["per_mode"]) == {"think", "no_think"}
    assert json.loads((out / "fused_data" / "card.json").read_text()) == card
    assert (out / "fused_data" / "README.md").read_text().startswith("# Stage-3 fused dataset")
    metrics = record["metrics"]
    assert set(metrics["eval"]) == {"think", "no_think"} and "eval_before" in metrics
    follow = metrics["think_follow"]
    assert follow["turns_judged"] == 3 + 2 * 2 and 0 <= follow["think_follow"] <= 1
    assert follow["think_follow_well_formed"] <= follow["think_follow"]  # well-formed AND obeying
    assert [r["budget"] for r in metrics["thinking_budget"]] == [0, 4, None]
    assert (out / "thinking_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # only rejection samples pass the over_length filter: longer rows of the other sources are counted (TRL cuts them)
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    rows = datasets.load_from_disk(str(out / "fused_data" / "rows"))
    over = sum(len(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]) > 160
               for m in rows["messages"])
    assert 0 < over < len(rows)
    assert record["data"]["over_length"] == {"max_length": 160, "truncated": over,
                                             "dropped": card["rejection_sampling"]["dropped_by_filter"]["over_length"]}


def test_a_rerun_after_a_crash_reuses_the_saved_fused_dataset(tmp_path, tiny_moe_dir, monkeypatch, capsys):
    src = finished_input(tmp_path, tiny_moe_dir)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill during training")

    monkeypatch.setattr(thinking_fusion, "train_sft", crash)
    with pytest.raises(KeyboardInterrupt):
        thinking_fusion.main(config(tmp_path, src, "eval_before=false"))
    manifest = tmp_path / "out" / "fused_data" / "manifest.json"
    first = manifest.read_bytes()
    monkeypatch.undo()
    monkeypatch.setattr(thinking_fusion, "rejection_rows", lambda *a: pytest.fail("sampled again"))
    out = thinking_fusion.main(config(tmp_path, src, "eval_before=false", "budgets=[null]"))
    assert "reusing the fused dataset" in capsys.readouterr().out
    assert manifest.read_bytes() == first and (out / STAGE_FILE).exists()


def test_an_unfinished_input_stage_is_refused_before_any_work(tmp_path, tiny_moe_dir):
    half = tmp_path / "half"
    shutil.copytree(tiny_moe_dir, half)
    (half / "train_log.jsonl").write_text("")  # a stage dir whose stage.json was never written
    with pytest.raises(ConfigError, match="not a finished stage"):
        thinking_fusion.main(config(tmp_path, half))
    assert not (tmp_path / "out" / "fused_data").exists()


def test_bad_budgets_and_missing_sources_are_config_errors(tmp_path, tiny_moe_dir):
    with pytest.raises(ValueError, match="budgets"):
        config(tmp_path, tiny_moe_dir, "budgets=[-1]")
    with pytest.raises(ValueError, match="non_thinking"):
        config(tmp_path, tiny_moe_dir, "non_thinking=[]")


def test_broken_history_replies_are_cut_to_whole_tokens_of_the_models_tokenizer(tiny_moe_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_moe_dir)
    truncate = thinking_fusion.first_tokens(tokenizer)
    text = "<think>\nAna has 12 apples. 12 + 30 = 42\n</think>\n\nThe answer is \\boxed{42}." * 5
    for n in (1, 7, 40):
        head = truncate(text, n)
        assert text.startswith(head) and len(tokenizer(head, add_special_tokens=False)["input_ids"]) == n
    assert truncate(text, 10_000) == text
