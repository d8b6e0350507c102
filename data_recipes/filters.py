"""Qwen3's stage-1 data filters, rule-based, each reporting what it dropped and why.

Query filters:  ``unverifiable`` (no gold answer). The model-based "too easy" query filter lives in the stage,
                since it needs the model (stages/sft.py).
Response filters: ``wrong_answer`` (verified by the same checker as the stage-2 reward), ``repetition``
                (substantial repeated n-grams), ``think_answer_disagree`` (the thinking's conclusion is not the
                final answer), ``script_mixing`` (letters from more than one writing system), ``eval_overlap``
                (an n-gram shared with a held-out eval item), ``over_length`` (longer than the training length;
                dropped, never silently truncated).

    kept, report = apply_filters(dataset, FilterSettings(), eval_prompts=[...], count_tokens=len)
    report["dropped"]   # {"wrong_answer": 3, "repetition": 0, ...}
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from datasets import Dataset

FILTERS = ("unverifiable", "wrong_answer", "repetition", "think_answer_disagree", "script_mixing",
           "eval_overlap", "over_length")


@dataclass
class FilterSettings:
    enabled: list[str] = field(default_factory=lambda: list(FILTERS))
    verifier: str = "math_accuracy"  # a reward name or dotted path: 1.0 = the response's answer matches the gold
    repetition_ngram: int = 12  # words per n-gram for the repetition check
    max_repeated_fraction: float = 0.3  # drop when more than this share of n-grams are repeats
    overlap_ngram: int = 13  # words per n-gram for eval decontamination (GPT-3 used 13)
    # Near-duplicate = more than this share of a prompt's n-grams occur in eval prompts. Any single shared
    # 13-gram (GPT-3's rule) is too strict for templated data: stories share whole sentences of boilerplate.
    max_overlap_fraction: float = 0.5
    max_minor_script_fraction: float = 0.05  # letters outside the main script allowed before "mixing"
    examples_per_filter: int = 2

    def __post_init__(self):
        unknown = [f for f in self.enabled if f not in FILTERS]
        if unknown:
            raise ValueError(f"filters.enabled: unknown filter {unknown[0]!r}; known: {list(FILTERS)}")


_WORD = re.compile(r"\w+|[^\w\s]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def split_response(text: str) -> tuple[str, str]:
    """(thinking, answer) of an assistant response; thinking is '' when there is no think block."""
    if "</think>" in text:
        head, _, answer = text.rpartition("</think>")
        return head.split("<think>", 1)[-1].strip(), answer.strip()
    return "", text.strip()


def repeated_fraction(text: str, n: int) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (0 = no repetition)."""
    words = _WORD.findall(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def script_of(ch: str) -> str | None:
    """The writing system of a letter (LATIN, CYRILLIC, CJK, …), None for non-letters."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("CJK") or name.startswith(("HIRAGANA", "KATAKANA")):
        return "CJK"
    return name.split(" ", 1)[0] if name else None


def minor_script_fraction(text: str) -> float:
    counts = Counter(s for s in map(script_of, text) if s)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return 1.0 - counts.most_common(1)[0][1] / total


def final_value(text: str) -> str | None:
    """The value a text concludes with: its last ``\\boxed{}``, else its last number."""
    from rewards.math import last_boxed  # the same extraction the verifier uses

    boxed = last_boxed(text)
    if boxed:
        return boxed
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _think_answer_disagreements(rows: list[dict], verdict: dict, settings: FilterSettings) -> set[int]:
    """Rows whose thinking concludes with a value the final answer does not state (judged by the verifier,
    so ``0.5`` and ``\\frac{1}{2}`` agree)."""
    from rewards import get_reward

    pairs = []
    for i, r in enumerate(rows):
        if i in verdict:
            continue
        thinking, answer = split_response(_assistant_text(r["messages"]))
        concluded, stated = final_value(thinking), final_value(answer)
        if thinking and concluded is not None and stated is not None and concluded != stated:
            pairs.append((i, concluded, stated))
    if not pairs:
        return set()
    verify = get_reward(settings.verifier)
    scores = verify([f"\\boxed{{{c}}}" for _, c, _ in pairs], solution=[f"\\boxed{{{s}}}" for _, _, s in pairs])
    return {i for (i, _, _), score in zip(pairs, scores) if score is not None and score < 1.0}


def overlap_fraction(text: str, eval_grams: set, n: int) -> float:
    """Share of ``text``'s word n-grams that also occur in the eval set (a text shorter than n: whole-text match)."""
    grams = ngrams(text, n) or {tuple(w.lower() for w in _WORD.findall(text))}
    return len(grams & eval_grams) / len(grams) if grams else 0.0


def _user_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] in ("user", "system"))


def _assistant_text(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")


def apply_filters(
    dataset: Dataset,
    settings: FilterSettings,
    eval_prompts: Iterable[str] = (),
    count_tokens: Callable[[list[dict]], int] | None = None,
    max_tokens: int | None = None,
) -> tuple[Dataset, dict]:
    """Run the enabled filters in order; return (kept rows, report). A row is dropped by its first failing filter.

    ``count_tokens(messages)`` and ``max_tokens`` drive ``over_length``; ``eval_prompts`` drive ``eval_overlap``.
    """
    enabled = [f for f in FILTERS if f in settings.enabled]
    rows = dataset.to_list()
    verdict: dict[int, str] = {}
    has_solution = "solution" in dataset.column_names

    def drop(i: int, why: str) -> None:
        verdict.setdefault(i, why)

    if "unverifiable" in enabled:
        for i, r in enumerate(rows):
            if not has_solution or r.get("solution") in (None, ""):
                drop(i, "unverifiable")

    if "wrong_answer" in enabled and has_solution:
        from rewards import get_reward

        verify = get_reward(settings.verifier)
        todo = [i for i in range(len(rows)) if i not in verdict]
        scores = verify([_assistant_text(rows[i]["messages"]) for i in todo],
                        solution=[rows[i]["solution"] for i in todo],
                        prompts=[rows[i].get("prompt") for i in todo])
        for i, s in zip(todo, scores):
            if s is not None and s < 1.0:
                drop(i, "wrong_answer")

    eval_grams: set = set()
    if "eval_overlap" in enabled:
        for p in eval_prompts:
            eval_grams |= ngrams(p, settings.overlap_ngram)

    disagree = _think_answer_disagreements(rows, verdict, settings) if "think_answer_disagree" in enabled else set()
    for i, r in enumerate(rows):
        if i in verdict:
            continue
        response = _assistant_text(r["messages"])
        if "repetition" in enabled and repeated_fraction(response, settings.repetition_ngram) > \
                settings.max_repeated_fraction:
            drop(i, "repetition")
        elif i in disagree:
            drop(i, "think_answer_disagree")
        elif "script_mixing" in enabled and minor_script_fraction(response) > settings.max_minor_script_fraction:
            drop(i, "script_mixing")
        elif "eval_overlap" in enabled and eval_grams and \
                overlap_fraction(_user_text(r["messages"]), eval_grams, settings.overlap_ngram) > \
                settings.max_overlap_fraction:
            drop(i, "eval_overlap")
        elif "over_length" in enabled and count_tokens and max_tokens and count_tokens(r["messages"]) > max_tokens:
            drop(i, "over_length")

    dropped = Counter(verdict.values())
    examples: dict[str, list] = {}
    for i, why in sorted(verdict.items()):
        if len(examples.setdefault(why, [])) < settings.examples_per_filter:
            examples[why].append(_user_text(rows[i]["messages"])[:300])
    kept_idx = [i for i in range(len(rows)) if i not in verdict]
    report = {
        "rows_in": len(rows),
        "rows_kept": len(kept_idx),
        "dropped": {f: dropped.get(f, 0) for f in enabled},
        "dropped_examples": examples,
    }
    return dataset.select(kept_idx), report
