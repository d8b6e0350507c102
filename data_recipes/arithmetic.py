"""Synthetic, verifiable multi-step arithmetic word problems with long-CoT traces (the nano default's task).

Every problem is a chain ``start op1 a1 op2 a2 …`` told as a short story. The ``<think>`` trace works each
operation out digit by digit (column addition with carries, subtraction with borrows, long multiplication and
long division), so a few-million-parameter model can learn it: each line needs only a one-digit fact and a
look-back. The answer is computed, never guessed, so every row is verified by construction.

Held-out split: a problem belongs to ``eval`` when a hash of its arithmetic *signature* (start value, operators,
operands — not the story) falls in the eval bucket. Training rows are drawn only outside that bucket, so no
eval problem, not even retold with other names, can appear in training.

    >>> ds = build(n=4, seed=0, difficulty=2)
    >>> sorted(ds.column_names)
    ['answer', 'difficulty', 'messages', 'n_ops', 'prompt', 'signature', 'solution', 'task']
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from datasets import Dataset

# difficulty -> (min ops, max ops, add/sub operand digits, multiplier digits, divisor digits, cap on any value)
DIFFICULTY = {
    1: (2, 2, 2, 1, 1, 999),
    2: (2, 3, 3, 1, 1, 9999),
    3: (2, 4, 3, 2, 1, 99999),
    4: (3, 4, 3, 2, 2, 99999),
}
EVAL_BUCKETS = 1000  # signature hash space; `eval_fraction` of it is held out

NAMES = ["Tom", "Ana", "Liu", "Sara", "Omar", "Mia", "Ivan", "Zoe", "Ravi", "Elif", "Noah", "Kim", "Ben", "Lea"]
ITEMS = ["apples", "coins", "stamps", "books", "pencils", "marbles", "cards", "shells", "beads", "stickers",
         "eggs", "nails", "bricks", "tickets"]
OPENINGS = ["{name} has {n} {items}.", "{name} starts with {n} {items}.", "There are {n} {items} in {name}'s box."]
STORY = {
    "+": ["{name} buys {a} more {items}.", "{name} finds {a} more {items}.", "A friend gives {name} {a} more {items}."],
    "-": ["{name} gives away {a} {items}.", "{name} sells {a} {items}.", "{name} loses {a} {items}."],
    "*": ["Then {name} has {a} times as many {items}.", "{name}'s {items} grow to {a} times as many."],
    "/": ["{name} splits the {items} into {a} equal groups and keeps one group.",
          "{name} shares the {items} equally among {a} friends and keeps one share."],
}
QUESTIONS = ["How many {items} does {name} have now?", "How many {items} are left with {name} at the end?"]
SYMBOL = {"+": "+", "-": "-", "*": "×", "/": "÷"}


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]  # (operator, operand) applied left to right

    @property
    def signature(self) -> str:
        return f"{self.start}" + "".join(f"{op}{a}" for op, a in self.ops)

    def values(self) -> list[int]:
        """The running value after each operation (exact integers)."""
        out, v = [], self.start
        for op, a in self.ops:
            v = apply(op, v, a)
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]


def apply(op: str, v: int, a: int) -> int:
    if op == "+":
        return v + a
    if op == "-":
        return v - a
    if op == "*":
        return v * a
    q, r = divmod(v, a)
    assert r == 0, f"{v} / {a} is not exact"
    return q


def is_eval(signature: str, eval_fraction: float) -> bool:
    """True when the signature falls in the held-out bucket (stable across Python runs, unlike hash())."""
    h = int.from_bytes(hashlib.sha256(signature.encode()).digest()[:8], "big")
    return h % EVAL_BUCKETS < round(eval_fraction * EVAL_BUCKETS)


# ---------------------------------------------------------------- problem sampling

def _rand_digits(rng: random.Random, max_digits: int, low: int = 1) -> int:
    # Numbers of the top two lengths: "up to 3 digits" should mostly mean 2-3 digits, not 1.
    digits = rng.randint(max(1, max_digits - 1), max_digits)
    return rng.randint(max(low, 10 ** (digits - 1)), 10**digits - 1)


def sample_problem(rng: random.Random, difficulty: int) -> Problem:
    """A random chain whose every intermediate value is a non-negative integer within the difficulty's cap."""
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTY)}, got {difficulty!r}")
    lo, hi, add_digits, mul_digits, div_digits, cap = DIFFICULTY[difficulty]
    while True:
        v = start = _rand_digits(rng, add_digits, low=2)
        ops: list[tuple[str, int]] = []
        n_ops = rng.randint(lo, hi)
        while len(ops) < n_ops:
            op = _pick_op(rng, v, add_digits, mul_digits, div_digits, cap)
            if op is None:
                break
            ops.append(op)
            v = apply(op[0], v, op[1])
        # Mostly mixed operators: a chain of one operator teaches little about reading the story.
        if len(ops) == n_ops and (len({o for o, _ in ops}) >= 2 or rng.random() < 0.2):
            return Problem(start, tuple(ops))


def _pick_op(rng: random.Random, v: int, add_digits: int, mul_digits: int, div_digits: int, cap: int):
    """One (operator, operand) that keeps the running value exact, positive and under the cap, or None."""
    for op in rng.sample(["+", "-", "*", "/"], 4):
        if op == "+":
            a = _rand_digits(rng, add_digits)
            if v + a <= cap:
                return op, a
        elif op == "-" and v > 2:
            return op, rng.randint(1, min(v - 1, 10**add_digits - 1))
        elif op == "*":
            a = _rand_digits(rng, mul_digits, low=2)
            if v * a <= cap:
                return op, a
        elif op == "/":
            divisors = [d for d in range(2, min(v, 10**div_digits)) if v % d == 0 and v // d >= 2]
            if divisors:
                return op, rng.choice(divisors)
    return None


# ---------------------------------------------------------------- digit-by-digit traces

def trace_add(a: int, b: int) -> list[str]:
    """Column addition, units first: one line per column, then the assembled result."""
    da, db = str(a)[::-1], str(b)[::-1]
    lines, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = x + y + carry
        terms = f"{x} + {y}" + (" + 1" if carry else "")
        last = i == max(len(da), len(db)) - 1
        carry = s // 10
        lines.append(f"{terms} = {s}" + (", carry 1" if carry and not last else ""))
    lines.append(f"{a} + {b} = {a + b}")
    return lines


def trace_sub(a: int, b: int) -> list[str]:
    """Column subtraction with borrows (a >= b); a borrow is paid by adding 1 to the next subtrahend digit."""
    da, db = str(a)[::-1], str(b)[::-1]
    lines, borrow = [], 0
    for i in range(len(da)):
        x, y = int(da[i]), (int(db[i]) if i < len(db) else 0)
        prefix = ""
        if borrow:
            prefix = f"{y} + 1 = {y + 1}, "
            y += 1
        if x < y:
            lines.append(f"{prefix}{x} < {y}, borrow, {x + 10} - {y} = {x + 10 - y}")
            borrow = 1
        else:
            lines.append(f"{prefix}{x} - {y} = {x - y}")
            borrow = 0
    lines.append(f"{a} - {b} = {a - b}")
    return lines


def trace_mul_digit(a: int, d: int) -> list[str]:
    """a × one digit, units first, with carries."""
    lines, carry = [], 0
    digits = str(a)[::-1]
    for i, ch in enumerate(digits):
        p = int(ch) * d
        line = f"{ch} × {d} = {p}"
        if carry:
            line += f", {p} + {carry} = {p + carry}"
        p += carry
        carry = p // 10
        if carry and i < len(digits) - 1:
            line += f", carry {carry}"
        lines.append(line)
    lines.append(f"{a} × {d} = {a * d}")
    return lines


def trace_mul(a: int, b: int) -> list[str]:
    if b < 10:
        return trace_mul_digit(a, b)
    # Long multiplication: one partial product per non-zero digit of b, shifted, then summed pairwise.
    parts = [(int(ch), 10**i) for i, ch in enumerate(str(b)[::-1]) if ch != "0"]
    lines = [f"{a} × {b} = " + " + ".join(f"{a} × {d * s}" for d, s in parts)] if len(parts) > 1 else []
    partials = []
    for d, s in parts:
        lines += trace_mul_digit(a, d)
        if s > 1:
            lines.append(f"{a} × {d * s} = {a * d * s}")
        partials.append(a * d * s)
    total = partials[0]
    for p in partials[1:]:
        lines += trace_add(total, p)
        total += p
    if len(parts) > 1:
        lines.append(f"{a} × {b} = {a * b}")
    return lines


def trace_div(a: int, b: int) -> list[str]:
    """Exact long division, one line per quotient digit (leading digits are gathered until >= b)."""
    lines, cur, started = [], 0, False
    digits = str(a)
    for i, ch in enumerate(digits):
        cur = cur * 10 + int(ch)
        if not started and cur < b and i < len(digits) - 1:
            continue
        started = True
        q = cur // b
        lines.append(f"{cur} ÷ {b} = {q}, {q} × {b} = {q * b}, {cur} - {q * b} = {cur - q * b}")
        cur -= q * b
    lines.append(f"{a} ÷ {b} = {a // b}")
    return lines


TRACE = {"+": trace_add, "-": trace_sub, "*": trace_mul, "/": trace_div}


def trace(op: str, a: int, b: int) -> list[str]:
    """The worked computation of one operation; the last line is always ``a <op> b = result``.

    Two one-digit operands are a single fact: no column lines.
    """
    if a < 10 and b < 10:
        return [f"{a} {SYMBOL[op]} {b} = {apply(op, a, b)}"]
    return TRACE[op](a, b)


# ---------------------------------------------------------------- rendering

def render(problem: Problem, rng: random.Random) -> tuple[str, str, str, str]:
    """(question, thinking, answer, direct answer) for a problem, with story words drawn from ``rng``."""
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    fill = {"name": name, "items": items}
    sentences = [rng.choice(OPENINGS).format(n=problem.start, **fill)]
    sentences += [rng.choice(STORY[op]).format(a=a, **fill) for op, a in problem.ops]
    question = " ".join(sentences + [rng.choice(QUESTIONS).format(**fill)])

    think = [f"{name} starts with {problem.start} {items}."]
    v = problem.start
    for step, (op, a) in enumerate(problem.ops, 1):
        think.append(f"Step {step}: {v} {SYMBOL[op]} {a}.")
        think += trace(op, v, a)
        v = apply(op, v, a)
    think.append(f"So {name} has {v} {items}.")
    answer = f"{name} has {v} {items} now. The answer is \\boxed{{{v}}}."
    return question, "\n".join(think), answer, direct_answer(problem, name, items)


def direct_answer(problem: Problem, name: str, items: str) -> str:
    """A non-thinking answer: one line per operation with its result, no digit-by-digit working.

    Qwen3's non-thinking mode still shows short working for math; what it drops is the long deliberation. The
    result of each line must now be produced in one go, so this mode is measurably less accurate than thinking
    (the point of having both).
    """
    lines, v = [], problem.start
    for op, a in problem.ops:
        w = apply(op, v, a)
        lines.append(f"{v} {SYMBOL[op]} {a} = {w}.")
        v = w
    return " ".join(lines) + f" {name} has {v} {items} now. The answer is \\boxed{{{v}}}."


def build(
    n: int = 1000,
    seed: int = 0,
    difficulty: int = 2,
    split: str = "train",
    eval_fraction: float = 0.05,
    avoid: list[dict] | None = None,
    answer_style: str = "think",
    thinking_budget: int | None = None,
) -> Dataset:
    """Build ``n`` distinct problems of one split as a chat dataset.

    Columns: ``messages`` (user question, assistant ``<think>…</think>`` + boxed answer), ``prompt`` (the user
    turn alone, for RL and evaluation), ``solution`` (the gold, ``\\boxed{…}``), ``answer`` (int), ``task``,
    ``difficulty``, ``n_ops``, ``signature``. ``avoid`` lists the arguments of other builds whose problems must
    not appear here (e.g. stage 2 avoids stage 1's training problems: ``avoid=[{"n": 4000, "seed": 0}]``).
    ``answer_style="direct"`` gives non-thinking answers (empty think block, short working; see
    :func:`direct_answer`) for stage 3's fused data. ``thinking_budget=N`` asks, in the question, to think for
    at most N tokens and puts N in a ``thinking_budget`` column (the ``thinking_budget`` reward's), with the task
    ``arithmetic_budget``: prompts for RL (the reference trace in ``messages`` is not cut to the budget).
    """
    if thinking_budget is not None and thinking_budget <= 0:
        raise ValueError(f"thinking_budget must be a positive number of tokens, got {thinking_budget}")
    if answer_style not in ("think", "direct"):
        raise ValueError(f"answer_style must be 'think' or 'direct', got {answer_style!r}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if n <= 0:
        raise ValueError(f"n must be a positive number of problems, got {n}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = random.Random(f"arithmetic/{split}/{difficulty}/{seed}")
    want_eval = split == "eval"
    rows, tries = [], 0
    seen = {sig for kw in (avoid or []) for sig in build(**kw)["signature"]}
    while len(rows) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"could not draw {n} distinct {split} problems at difficulty {difficulty}")
        p = sample_problem(rng, difficulty)
        sig = p.signature
        if sig in seen or is_eval(sig, eval_fraction) != want_eval:
            continue
        seen.add(sig)
        question, think, answer, direct = render(p, rng)
        if thinking_budget is not None:
            question += f" Think for at most {thinking_budget} tokens."
        rows.append({
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"<think>\n{think}\n</think>\n\n{answer}" if answer_style == "think"
                 else f"<think>\n\n</think>\n\n{direct}"},
            ],
            "prompt": [{"role": "user", "content": question}],
            "solution": f"\\boxed{{{p.answer}}}",
            "answer": p.answer,
            "task": "arithmetic" if thinking_budget is None else "arithmetic_budget",
            "difficulty": difficulty,
            "n_ops": len(p.ops),
            "signature": sig,
            **({} if thinking_budget is None else {"thinking_budget": thinking_budget}),
        })
    return Dataset.from_list(rows)


STEP_NUMBER = re.compile(r"^Step \d+:")


def error_kind(reply: str, gold: str) -> str:
    """Where a wrong reply first leaves the gold trace (both ``<think>…`` texts of this recipe's format):

    - ``"wrong_step"``: a ``Step k:`` line with another operation or operand than the problem's;
    - ``"early_stop"``: ``So … has …`` where the problem has another step;
    - ``"late_stop"``: another ``Step`` where the problem has none left;
    - ``"digit"``: a line of the digit-by-digit working (a wrong digit, carry or borrow);
    - ``"other"``: anywhere else (the opening line, the answer after the trace).

    >>> gold = "<think>\\nTom has 5 eggs.\\nStep 1: 5 + 3.\\n5 + 3 = 8\\nSo Tom has 8 eggs.\\n</think>"
    >>> error_kind(gold.replace("5 + 3 = 8", "5 + 3 = 9"), gold), error_kind(gold.replace("+ 3.", "- 3."), gold)
    ('digit', 'wrong_step')
    """
    # Step numbers are not compared: a model can learn to misnumber its steps (one GRPO run wrote "Step 3" for
    # the second step) without computing anything else differently.
    ours, theirs = ([STEP_NUMBER.sub("Step k:", line) for line in text.split("\n")] for text in (reply, gold))
    k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    line, mine = (theirs[k] if k < len(theirs) else ""), (ours[k] if k < len(ours) else "")
    if line.startswith("Step "):
        return "early_stop" if mine.startswith("So ") else "wrong_step"
    if line.startswith("So ") and mine.startswith("Step "):
        return "late_stop"
    if k > 1 and ("=" in line or " < " in line):  # a "So … has …" line has neither
        return "digit"
    return "other"
