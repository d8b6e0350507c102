"""Stage 3's fused dataset: thinking and non-thinking samples in one set, tagged the way users switch modes.

Qwen3's thinking-mode fusion teaches one model both behaviours. The pieces, each a plain function here:

- :func:`rejection_sample` — thinking samples made by the stage-2 model: ``k`` samples per query, keep the ones
  the verifier accepts *and* that pass stage 1's response filters, at most ``cap`` per query.
- non-thinking samples come from recipes that answer with an empty think block (``arithmetic`` with
  ``answer_style: direct``, ``instructions``), each checked by its rule when the recipe builds it.
- :func:`single_turn` — puts ``/think`` or ``/no_think`` in the user or the system message; some thinking
  samples carry no flag at all (thinking is the default), and some non-thinking ones carry none either but get
  their empty think block given, as ``enable_thinking=False`` gives it (the hard switch).
- :func:`multi_turn` — dialogs with several random flags where every assistant turn follows the last flag seen.
  History turns lose their reasoning when rendered (Qwen3's template), so a dialog of n turns becomes n samples,
  one per assistant turn, each trained only on its last reply (the template's generation markers) — exactly
  what the model sees at inference.
- :func:`dataset_card` — counts per source, mode, flag placement and turn count, plus the rejection statistics.

A row of the fused set: ``messages``, ``mode`` (the mode the last reply must follow), ``source``, ``placement``
(``user`` / ``system`` / ``none`` / ``hard_switch``: where the deciding flag sits), ``turns`` (assistant turns
in the sample).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rewards.format import prompt_mode

FLAGS = {"think": "/think", "no_think": "/no_think"}
MODES = tuple(FLAGS)


@dataclass
class FlagSettings:
    user_share: float = 0.6  # flagged samples whose flag is in the user message (the rest: the system message)
    unflagged_think_share: float = 0.3  # thinking samples with no flag at all
    # Non-thinking samples with no flag whose empty think block is given, not trained: the hard switch,
    # enable_thinking=False, which puts the block in the prompt. Without them the model never saw an empty
    # block it had not chosen, and after one given without a flag it went on to think in the answer.
    hard_switch_share: float = 0.25
    system_prompts: list[str] = field(default_factory=lambda: [
        "You are a helpful assistant.", "You are a careful assistant. Keep answers short.", ""])

    def __post_init__(self):
        for key in ("user_share", "unflagged_think_share", "hard_switch_share"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"flags.{key} must be in [0, 1], got {getattr(self, key)}")
        if not self.system_prompts:
            raise ValueError("flags.system_prompts: give at least one (an empty string is allowed)")


@dataclass
class MultiTurnSettings:
    dialogs: int = 200  # dialogs; each gives one sample per assistant turn
    min_turns: int = 2
    max_turns: int = 3
    flag_share: float = 0.7  # a user turn carries a (random) flag with this probability; else the last one holds
    system_flag_share: float = 0.2  # dialogs that open with a flag in the system message
    # History replies left broken, as a model's own replies come back to it after it ran to its token limit: cut
    # off mid-thought (never closed) or stuck in a loop. Only clean dialogs in training, and the nano model, whose
    # first reply to an instruction task often loops for 512 tokens, went on to loop or copy that text in the next
    # turns instead of opening its think block (most of its multi-turn ThinkFollow misses).
    broken_history_share: float = 0.0
    # A broken reply's length cap in tokens (characters where no tokenizer is given): at inference a looping reply
    # comes back exactly max_new_tokens long. The sample must still fit model.max_length.
    broken_max_tokens: int = 512

    def __post_init__(self):
        if self.dialogs < 0:
            raise ValueError(f"multi_turn.dialogs must be >= 0, got {self.dialogs}")
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError(f"multi_turn: need 1 <= min_turns <= max_turns, got {self.min_turns}, {self.max_turns}")
        if not 0 <= self.broken_history_share <= 1:
            raise ValueError(f"multi_turn.broken_history_share must be in [0, 1], got {self.broken_history_share}")
        if self.broken_max_tokens < 20:
            raise ValueError(f"multi_turn.broken_max_tokens must be >= 20, got {self.broken_max_tokens}")


def mode_of(content: str) -> str:
    """``no_think`` for a reply whose think block is empty, else ``think``."""
    head, sep, _ = content.partition("</think>")
    return "no_think" if sep and not head.replace("<think>", "").strip() else "think"


def expected_mode(messages: list[dict]) -> str:
    """The mode the next reply must use: the last flag in a user or system message; thinking when there is none."""
    return prompt_mode(messages) or "think"


def with_flag(question: str, mode: str | None) -> str:
    return f"{question} {FLAGS[mode]}" if mode else question


def single_turn(rows: list[dict], source: str, settings: FlagSettings, rng: random.Random) -> list[dict]:
    """Flag each (user, assistant) row for the mode its reply shows, in the user or the system message."""
    out = []
    for row in rows:
        user, replies = _exchange(row["messages"])
        mode = mode_of(replies[0]["content"])
        unflagged = rng.random() < (settings.unflagged_think_share if mode == "think" else settings.hard_switch_share)
        if unflagged:
            placement, messages = "none" if mode == "think" else "hard_switch", []
            system = rng.choice(settings.system_prompts)
            if system and rng.random() < 0.5:
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": user})
            if mode == "no_think":  # rendered as enable_thinking=False renders the prompt (and each tool response)
                replies = [{**m, "think_prefilled": True} if m["role"] == "assistant" else m for m in replies]
        elif rng.random() < settings.user_share:
            placement, messages = "user", []
            system = rng.choice(settings.system_prompts)
            if system and rng.random() < 0.5:
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": with_flag(user, mode)})
        else:
            placement = "system"
            system = with_flag(rng.choice(settings.system_prompts), mode).strip()
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        assert placement == "hard_switch" or expected_mode(messages) == mode  # our flag decides the mode
        out.append({"messages": messages + replies, "mode": mode, "source": source, "placement": placement,
                    "turns": 1})
    return out


def multi_turn(pools: dict[str, list[dict]], settings: MultiTurnSettings, flags: FlagSettings,
               rng: random.Random, truncate: Callable[[str, int], str] | None = None) -> list[dict]:
    """Dialogs with random flags, one sample per assistant turn (see module docstring).

    ``pools`` maps each mode to rows (``messages`` = user, assistant) whose reply shows that mode; every turn
    draws an exchange of the mode its last flag demands. ``truncate(text, n)`` keeps the first ``n`` tokens of a
    text (broken history replies are measured with it); characters when None.
    """
    for mode in MODES:
        if not pools.get(mode):
            raise ValueError(f"multi_turn: no {mode} rows to build dialogs from")
    out = []
    for _ in range(settings.dialogs):
        messages: list[dict] = []
        placement = "none"
        if rng.random() < settings.system_flag_share:
            placement = "system"
            system = with_flag(rng.choice(flags.system_prompts), rng.choice(MODES)).strip()
            messages.append({"role": "system", "content": system})
        for turn in range(1, rng.randint(settings.min_turns, settings.max_turns) + 1):
            flag = rng.choice(MODES) if rng.random() < settings.flag_share else None
            placement = "user" if flag else placement
            mode = flag or expected_mode(messages)  # this turn's flag, else the last one seen, else thinking
            user, replies = _exchange(rng.choice(pools[mode])["messages"])  # a question answered in that mode
            messages.append({"role": "user", "content": with_flag(user, flag)})
            messages += replies
            out.append({"messages": [dict(m) for m in messages], "mode": mode, "source": "multi_turn",
                        "placement": placement, "turns": turn})
            if len(replies) == 1 and rng.random() < settings.broken_history_share:  # what the next turns see
                broken = broken_reply(replies[0]["content"], rng, settings.broken_max_tokens, truncate)
                messages[-1] = {"role": "assistant", "content": broken}
    return out


def first_chars(text: str, n: int) -> str:
    return text[:n]


def broken_reply(content: str, rng: random.Random, max_len: int,
                 truncate: Callable[[str, int], str] | None = None) -> str:
    """``content`` as a model that ran to its token limit leaves it: cut off (a thinking reply is left unclosed),
    or cut off after falling into a loop that repeats its last few characters until it is ``max_len / 2`` to
    ``max_len`` long. Lengths are in the units of ``truncate(text, n)`` (keep the first n tokens; characters when
    None).

    >>> broken_reply("<think>\\nAna has 3.\\n</think>\\n\\n3", random.Random(1), 40)
    '<think>\\nAn\\nAn\\nAn\\nAn\\nAn\\nAn\\nAn'
    """
    truncate = truncate or first_chars
    head = truncate(content, rng.randint(8, max(8, max_len // 2)))
    if rng.random() < 0.5:
        return head
    loop = head[-rng.randint(2, 12):] or "."
    # a token is rarely longer than 16 characters: enough repeats for max_len tokens
    return truncate(head + loop * (16 * max_len // len(loop) + 1), rng.randint(max_len // 2, max_len))


def rejection_sample(rows: list[dict], generate_fn: Callable[[list[list[dict]]], list[str]], k: int, cap: int,
                     response_filter: Callable[[list[dict]], tuple[list[int], dict]]) -> tuple[list[dict], dict]:
    """Thinking samples from a model: ``k`` completions per query row, the accepted ones, at most ``cap`` each.

    ``rows`` carry ``prompt`` (chat messages) and the verifier's columns (e.g. ``solution``). ``generate_fn``
    maps prompts to completions (the stage-2 model, sampling). ``response_filter`` takes candidate rows
    (``messages`` = prompt + completion, plus the query's columns) and returns (indices kept, drop counts) —
    stage 1's filters, the verifier among them. Returns the kept rows and the statistics for the dataset card.
    """
    if k < 1 or cap < 1:
        raise ValueError(f"rejection sampling needs samples_per_query >= 1 and max_per_query >= 1, got {k}, {cap}")
    prompts = [row["prompt"] for row in rows for _ in range(k)]
    completions = generate_fn(prompts)
    candidates = []
    for i, text in enumerate(completions):
        row = rows[i // k]
        cand = {key: value for key, value in row.items() if key not in ("messages", "prompt")}
        cand["messages"] = [*row["prompt"], {"role": "assistant", "content": text}]
        cand["query"] = i // k
        candidates.append(cand)
    kept_idx, dropped = response_filter(candidates)
    per_query: Counter = Counter()
    kept, seen = [], set()
    for i in kept_idx:
        cand = candidates[i]
        reply = cand["messages"][-1]["content"]
        if per_query[cand["query"]] >= cap or (cand["query"], reply) in seen:
            continue  # the cap, and identical samples of one query (sampling repeats itself on easy problems)
        per_query[cand["query"]] += 1
        seen.add((cand["query"], reply))
        kept.append(cand)
    stats = {
        "queries": len(rows),
        "samples_per_query": k,
        "max_per_query": cap,
        "samples": len(candidates),
        "passed_filters": len(kept_idx),
        "dropped_by_filter": dropped,
        "kept": len(kept),
        "queries_with_a_kept_sample": len(per_query),
        "acceptance_rate": round(len(kept_idx) / max(1, len(candidates)), 4),
    }
    return kept, stats


def dataset_card(rows: list[dict], rejection: dict | None = None) -> dict:
    """Counts per source, mode, flag placement, turn count and their crossings, plus rejection statistics."""
    return {
        "rows": len(rows),
        "per_source": dict(Counter(r["source"] for r in rows)),
        "per_mode": dict(Counter(r["mode"] for r in rows)),
        "per_placement": dict(Counter(r["placement"] for r in rows)),
        "per_turn_count": {str(k): v for k, v in sorted(Counter(r["turns"] for r in rows).items())},
        "per_mode_and_placement": {f"{m}/{p}": v for (m, p), v in
                                   sorted(Counter((r["mode"], r["placement"]) for r in rows).items())},
        "rejection_sampling": rejection or {},
    }


def card_markdown(card: dict, title: str) -> str:
    """The dataset card as a short README."""
    lines = [f"# {title}", "", f"{card['rows']} training samples.", ""]
    for key in ("per_source", "per_mode", "per_placement", "per_turn_count", "per_mode_and_placement"):
        lines += [f"## {key.replace('_', ' ')}", "", "| value | rows |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in card[key].items()] + [""]
    rej = card.get("rejection_sampling") or {}
    if rej:
        lines += ["## rejection sampling (thinking samples from the stage-2 model)", ""]
        lines += [f"- {k}: {v}" for k, v in rej.items()] + [""]
    return "\n".join(lines)


def _exchange(messages: list[dict]) -> tuple[str, list[dict]]:
    """(user question, the reply) of a single-query row; the reply is the assistant message, or for a tool-use
    row the assistant's calls, the tools' responses and its final message."""
    messages = [m for m in messages if m["role"] != "system"]
    if len(messages) < 2 or messages[0]["role"] != "user" or messages[1]["role"] != "assistant" \
            or messages[-1]["role"] != "assistant" or any(m["role"] not in ("assistant", "tool") for m in messages[1:]):
        raise ValueError("expected a user message then the assistant's reply (with tool responses in it), got roles "
                         f"{[m['role'] for m in messages]}")
    return messages[0]["content"], [{"role": m["role"], "content": m["content"]} for m in messages[1:]]
