"""Strong-to-weak distillation through its real entry point on tiny stand-in models: a tiny MoE teacher taught to
answer six queries (four right, two wrong) and a tiny dense student with the same tokenizer. Checks the
vocabulary guard, that the off-policy data holds only verified answers in both modes, a full run (teacher and
student metrics side by side; a rerun does nothing), the resume path (saved data and off-policy student reused,
on-policy training resumed from its checkpoint) and LoRA on the student. Run: pytest tests/stages/test_distill.py"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from stages import distill
from stages.common import STAGE_FILE, write_json_atomic
from stages.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
QUERIES = {"n": 6, "seed": 1, "difficulty": 1}  # the teacher's off-policy queries
WRONG = 2  # the teacher was taught a wrong answer for the last two of them


def teach(model_dir: Path, steps: int = 150) -> None:
    """Overfit the tiny model to answer the query recipe's six prompts in both modes, in Qwen3's format: a short
    thinking block or the empty one, then a boxed answer — right for four prompts, off by one for two."""
    import torch

    from data_recipes.arithmetic import build
    from stages.common import ModelSettings, load_model, load_tokenizer

    tok = load_tokenizer(str(model_dir))
    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    seqs = []
    for i, row in enumerate(build(**QUERIES)):
        answer = row["answer"] + (1 if i >= QUERIES["n"] - WRONG else 0)
        for thinking in (True, False):
            head = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True,
                                           enable_thinking=thinking)
            reply = ("<think>\nadd them up\n</think>\n\n" if thinking else "") + f"\\boxed{{{answer}}}<|im_end|>"
            seqs.append([tok(text, add_special_tokens=False)["input_ids"] for text in (head, reply)])
    width = max(len(h) + len(r) for h, r in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (head, reply) in enumerate(seqs):
        ids[i, :len(head) + len(reply)] = torch.tensor(head + reply)
        labels[i, len(head):len(head) + len(reply)] = torch.tensor(reply)
        mask[i, :len(head) + len(reply)] = 1
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module")
def teacher_dir(tiny_moe_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("distill") / "teacher"
    shutil.copytree(tiny_moe_dir, d)
    teach(d)
    write_json_atomic(d / STAGE_FILE, {"stage": "general_rl"})  # looks like a finished stage 4
    return d


def config(out: Path, teacher, student, *overrides):
    return load_config(distill.DistillConfig, REPO / "configs" / "distill" / "nano.yaml", [
        f"output_dir={out}", f"model.teacher.name_or_path={teacher}", f"model.student.name_or_path={student}",
        "threads=1", f"offpolicy.queries=[{{name: arithmetic, kwargs: {json.dumps(QUERIES)}}}]",
        "offpolicy.think_sampling={do_sample: false, max_new_tokens: 24}",
        "offpolicy.no_think_sampling={do_sample: false, max_new_tokens: 24}",
        "offpolicy.trainer.max_steps=2", "offpolicy.trainer.per_device_train_batch_size=2",
        "onpolicy.prompts=[{name: arithmetic, kwargs: {n: 8, seed: 2, difficulty: 1}}]",
        "onpolicy.trainer.max_steps=2", "onpolicy.trainer.per_device_train_batch_size=2",
        "onpolicy.trainer.max_completion_length=12", "onpolicy.trainer.save_steps=1",
        "onpolicy.trainer.logging_steps=1", "onpolicy.trainer.learning_rate=1e-2",
        "eval.data.kwargs.n=4", "eval.data.kwargs.difficulty=1", "eval.sampling.max_new_tokens=12",
        "eval.batch_size=4",
        "follow.data=[{name: arithmetic, kwargs: {n: 4, seed: 0, difficulty: 1, split: eval}}]",
        "follow.single_turn=3", "follow.dialogs=2", "follow.max_turns=2", "follow.max_new_tokens=12",
        *overrides])


@pytest.fixture(scope="module")
def finished_run(teacher_dir, tiny_dense_dir, tmp_path_factory) -> Path:
    return distill.main(config(tmp_path_factory.mktemp("run") / "out", teacher_dir, tiny_dense_dir))


def test_a_full_run_reports_teacher_and_student_side_by_side_and_a_rerun_does_nothing(
        finished_run, teacher_dir, tiny_dense_dir, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    out = finished_run
    record = json.loads((out / STAGE_FILE).read_text())
    metrics = record["metrics"]
    assert record["stage"] == "distill" and record["teacher_model"] == str(teacher_dir)
    assert metrics["train"]["steps"] == 2 and metrics["train"]["beta"] == 1.0
    assert metrics["offpolicy"]["train"]["steps"] == 2
    for who in (metrics["teacher"], metrics["offpolicy"], metrics):
        assert set(who["eval"]) == {"think", "no_think"} and who["eval"]["think"]["n"] == 4
        assert who["think_follow"]["turns_judged"] == 3 + 2 * 2
    assert set(metrics["comparison"]) == {"teacher", "offpolicy", "student"}
    table = (out / "comparison.md").read_text()
    assert f"teacher ({teacher_dir})" in table and "student after on-policy distillation" in table
    assert "teacher_model" in json.loads((out / "offpolicy" / STAGE_FILE).read_text())
    assert (out / "README.md").read_text().startswith("---") and not (out / "checkpoints").exists()
    # both phases trained: the final student differs from the off-policy one, which differs from the base
    weights = [AutoModelForCausalLM.from_pretrained(d).model.layers[0].self_attn.q_proj.weight
               for d in (tiny_dense_dir, out / "offpolicy", out)]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])

    before = (out / STAGE_FILE).read_bytes()
    capsys.readouterr()
    assert distill.main(config(out, teacher_dir, tiny_dense_dir)) == out
    assert "nothing to do" in capsys.readouterr().out and (out / STAGE_FILE).read_bytes() == before


def test_offpolicy_data_holds_only_verified_answers_in_both_modes(finished_run):
    import datasets

    from data_recipes.arithmetic import build
    from data_recipes.chat_template import EMPTY_THINK
    from rewards import get_reward

    rows = datasets.load_from_disk(str(finished_run / "distill_data" / "rows"))
    replies = [m[-1]["content"] for m in rows["messages"]]
    assert set(rows["mode"]) == {"think", "no_think"}
    assert get_reward("math_accuracy")(replies, solution=rows["solution"]) == [1.0] * len(rows)
    assert get_reward("mode_compliance")(replies, mode=rows["mode"]) == [1.0] * len(rows)
    assert all(r.startswith(EMPTY_THINK) for r, mode in zip(replies, rows["mode"]) if mode == "no_think")
    wrong = [row["prompt"][0]["content"] for row in build(**QUERIES).select(range(QUERIES["n"] - WRONG, QUERIES["n"]))]
    asked = [next(m["content"] for m in msgs if m["role"] == "user") for msgs in rows["messages"]]
    assert not any(q in a for q in wrong for a in asked)  # the user message may carry a flag after the question
    card = json.loads((finished_run / "distill_data" / "card.json").read_text())
    stats = card["rejection_sampling"]
    assert sum(s["dropped_by_filter"]["wrong_answer"] for s in stats.values()) == WRONG
    assert sum(s["samples"] for s in stats.values()) == QUERIES["n"] and card["rows"] == len(rows)


def test_an_interrupted_run_reuses_saved_data_and_offpolicy_student_and_resumes_training(
        teacher_dir, tiny_dense_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(distill, "train_sft", killed)  # 1: killed during off-policy SFT, after the data was saved
    with pytest.raises(KeyboardInterrupt):
        distill.main(config(out, teacher_dir, tiny_dense_dir))
    manifest = (out / "distill_data" / "manifest.json").read_bytes()
    monkeypatch.undo()

    monkeypatch.setattr(distill, "rejection_sample", lambda *a: pytest.fail("the teacher was asked again"))
    monkeypatch.setattr(distill, "save_and_reload", killed)  # 2: killed after on-policy training checkpointed
    with pytest.raises(KeyboardInterrupt):
        distill.main(config(out, teacher_dir, tiny_dense_dir))
    assert "reusing the teacher's answers" in capsys.readouterr().out
    assert (out / "offpolicy" / STAGE_FILE).is_file() and list((out / "checkpoints").glob("checkpoint-*"))
    monkeypatch.undo()

    monkeypatch.setattr(distill, "rejection_sample", lambda *a: pytest.fail("the teacher was asked again"))
    monkeypatch.setattr(distill, "train_sft", lambda *a: pytest.fail("off-policy SFT ran again"))
    distill.main(config(out, teacher_dir, tiny_dense_dir))  # 3: completes
    printed = capsys.readouterr().out
    assert "reusing the off-policy student" in printed and "resuming from the last checkpoint" in printed
    assert (out / STAGE_FILE).is_file() and (out / "distill_data" / "manifest.json").read_bytes() == manifest


def test_lora_on_the_student_trains_in_both_phases_and_is_merged(teacher_dir, tiny_dense_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = distill.main(config(tmp_path / "out", teacher_dir, tiny_dense_dir, "model.student.lora={r: 4, alpha: 8}"))
    dirs = (tiny_dense_dir, out / "offpolicy", out)
    assert not any((d / "adapter_config.json").exists() for d in dirs)  # plain model dirs, adapters merged
    weights = [AutoModelForCausalLM.from_pretrained(d).model.layers[0].self_attn.q_proj.weight for d in dirs]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    mlp = [AutoModelForCausalLM.from_pretrained(d).model.layers[0].mlp.up_proj.weight for d in dirs]
    assert torch.equal(mlp[0], mlp[2])  # not a LoRA target: untouched


def swapped_tokens(src: Path, dst: Path, a: str, b: str) -> Path:
    """A copy of a model dir whose tokenizer has as many tokens, two of them trading ids."""
    shutil.copytree(src, dst)
    tokenizer = json.loads((dst / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (dst / "tokenizer.json").write_text(json.dumps(tokenizer))
    return dst


def extra_token(src: Path, dst: Path) -> Path:
    from transformers import AutoTokenizer

    shutil.copytree(src, dst)
    tokenizer = AutoTokenizer.from_pretrained(dst)
    tokenizer.add_tokens(["<extra>"])
    tokenizer.save_pretrained(dst)
    return dst


def test_teacher_and_student_with_different_vocabularies_are_refused_before_any_work(
        teacher_dir, tiny_dense_dir, tmp_path):
    from transformers import AutoTokenizer

    size = len(AutoTokenizer.from_pretrained(tiny_dense_dir))
    cases = [(swapped_tokens(tiny_dense_dir, tmp_path / "swapped", "Ġeggs", "Ġcards"), size,
              r"tokens that differ: 2 \('Ġ(eggs|cards)': teacher id \d+, student id \d+"),
             (extra_token(tiny_dense_dir, tmp_path / "extra"), size + 1,
              "tokens that differ: 1 .'<extra>': teacher id None")]
    for student, student_size, expect in cases:
        with pytest.raises(ConfigError, match=expect) as error:
            distill.main(config(tmp_path / "out", teacher_dir, student))
        message = str(error.value)
        assert f"model.teacher ({teacher_dir}, vocabulary of {size})" in message
        assert f"model.student ({student}, vocabulary of {student_size})" in message
        assert "trl.experimental.gold" in message and "\n" not in message
        assert not (tmp_path / "out" / "distill_data").exists()


def test_missing_sources_and_bad_shares_are_config_errors(tmp_path, teacher_dir, tiny_dense_dir):
    with pytest.raises(ConfigError, match="offpolicy.queries"):
        config(tmp_path, teacher_dir, tiny_dense_dir, "offpolicy.queries=[]")
    with pytest.raises(ConfigError, match="onpolicy.think_share"):
        config(tmp_path, teacher_dir, tiny_dense_dir, "onpolicy.think_share=1.5")


def test_a_multi_process_launch_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = SimpleNamespace(output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="distill runs in a single process"):
        distill.main(cfg)
    assert not (tmp_path / "out").exists()
