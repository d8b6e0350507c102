"""Chat with any stage's model dir in the terminal: multi-turn, Qwen3's /think and /no_think, a thinking budget.

    make chat MODEL=runs/nano/01_sft ARGS='--thinking-budget 64'
    python -m stages.chat --model checkpoints/nano-moe-base --greedy --system "You are terse."
    printf 'What is 2 + 3? /no_think\\nAnd 4 + 4?\\n' | python -m stages.chat --model runs/nano/01_sft --greedy

One user message per line. ``/think`` or ``/no_think`` anywhere in a message (or in ``--system``) switches the
mode from that turn on: the flag stays in the text, and the last one in the conversation decides (Qwen3's soft
switch; none seen = thinking). Thinking is shown dimmed above the answer (plain ``thinking:`` text when stdout
is not a terminal or NO_COLOR is set). ``/reset`` clears the history (the system message stays); ``/exit`` or
end of input quits. Replies come from :func:`stages.generation.generate`, the helper evaluation uses, so what you
read here is what the evaluator scores. A missing or broken model dir is a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TextIO

from rewards.completion import THINK_CLOSE, THINK_OPEN, answer_text
from rewards.format import prompt_mode
from stages.common import ModelSettings, load_model, load_tokenizer, set_threads
from stages.generation import SamplingSettings, generate

COMMANDS = ("/reset", "/exit")
DIM, RESET = "\x1b[2m", "\x1b[0m"
THINKING_LABEL = "thinking: "


@dataclass
class ChatSettings:
    """How each reply is generated. Sampling defaults to Qwen3's recommended settings (``--greedy`` for
    deterministic replies, as the nano evaluation decodes)."""

    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(do_sample=True))
    thinking_budget: int | None = None  # thinking tokens before the stop-thinking sentence is forced
    system: str | None = None

    def __post_init__(self):
        if self.thinking_budget is not None and self.thinking_budget < 0:
            raise ValueError(f"--thinking-budget must be 0 or more, got {self.thinking_budget}")
        if self.sampling.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be positive, got {self.sampling.max_new_tokens}")
        if self.sampling.do_sample and self.sampling.temperature <= 0:
            raise ValueError(f"--temperature must be positive (use --greedy for greedy decoding), "
                             f"got {self.sampling.temperature}")
        if self.sampling.do_sample and not 0 < self.sampling.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.sampling.top_p}")


@dataclass
class ChatConfig:
    model: ModelSettings
    chat: ChatSettings = field(default_factory=ChatSettings)
    threads: int = 2


# ---------------------------------------------------------------- pure helpers

def last_flag(messages: list[dict]) -> Literal["think", "no_think"] | None:
    """The last /think or /no_think in the user and system messages, or None when there is none (the same rule
    the mode-compliance reward and the fused data use).

    >>> last_flag([{"role": "user", "content": "2 + 3? /no_think"}, {"role": "user", "content": "and 4 + 4?"}])
    'no_think'
    """
    return prompt_mode(messages)


def split_reply(text: str) -> tuple[str, str]:
    """(thinking, answer) of an assistant reply as ``generate`` returns it; either may be "".

    The answer is what the rewards judge (:func:`rewards.completion.answer_text`); a reply cut off while thinking
    is all thinking and no answer.

    >>> split_reply("<think>\\nadd them\\n</think>\\n\\n5")
    ('add them', '5')
    """
    answer = answer_text(text)
    if answer is None:  # opened <think> and never closed it
        return text.split(THINK_OPEN, 1)[1].strip(), ""
    if THINK_CLOSE not in text:
        return "", answer
    thinking = text[: text.rfind(THINK_CLOSE)].split(THINK_OPEN, 1)[-1].strip()
    return thinking, answer


def render_reply(thinking: str, answer: str, color: bool) -> str:
    """The reply as printed: a ``thinking:`` block (dimmed when ``color``) above the answer."""
    lines = []
    if thinking:
        block = THINKING_LABEL + thinking.replace("\n", "\n" + " " * len(THINKING_LABEL))
        lines.append(f"{DIM}{block}{RESET}" if color else block)
    lines.append(answer or "(no answer)")
    return "\n".join(lines)


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


# ---------------------------------------------------------------- the loop

def chat_loop(model, tokenizer, lines: Iterable[str], out: TextIO, settings: ChatSettings,
              color: bool = False) -> list[dict]:
    """Answer each line as a user message, printing replies to ``out``; return the final history.

    History keeps each assistant reply whole (thinking included): the chat template drops the reasoning of
    earlier turns when it renders the next prompt, as Qwen3 does.

        history = chat_loop(model, tok, ["What is 2 + 3? /no_think", "And 4 + 4?"], sys.stdout, ChatSettings())
        len(history)   # 4
    """
    start = [{"role": "system", "content": settings.system}] if settings.system else []
    messages = list(start)
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            messages = list(start)
            print("(history cleared)\n", file=out, flush=True)
            continue
        messages.append({"role": "user", "content": text})
        reply = generate(model, tokenizer, [messages], enable_thinking=last_flag(messages) != "no_think",
                         thinking_budget=settings.thinking_budget, sampling=settings.sampling)[0]
        messages.append({"role": "assistant", "content": reply})
        print(render_reply(*split_reply(reply), color=color) + "\n", file=out, flush=True)
    return messages


def terminal_lines(prompt: str = "> ") -> Iterator[str]:
    """Lines typed at a terminal, with line editing; Ctrl-D or Ctrl-C at the prompt ends them."""
    import readline  # noqa: F401  (importing it gives input() line editing and history)

    while True:
        try:
            yield input(prompt)
        except (EOFError, KeyboardInterrupt):
            print()
            return


# ---------------------------------------------------------------- entry point

def parse_args(argv: list[str]) -> ChatConfig:
    defaults = SamplingSettings()
    p = argparse.ArgumentParser(prog="python -m stages.chat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model dir (any stage's output) or a cached hub id")
    p.add_argument("--system", default=None, help="system message (may hold /think or /no_think)")
    p.add_argument("--thinking-budget", type=int, default=None, help="cap thinking at N tokens")
    p.add_argument("--temperature", type=float, default=defaults.temperature)
    p.add_argument("--top-p", type=float, default=defaults.top_p)
    p.add_argument("--top-k", type=int, default=defaults.top_k)
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="per reply, thinking included")
    p.add_argument("--greedy", action="store_true", help="greedy decoding (deterministic) instead of sampling")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    a = p.parse_args(argv)
    sampling = SamplingSettings(do_sample=not a.greedy, temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
                                max_new_tokens=a.max_new_tokens)
    return ChatConfig(model=ModelSettings(name_or_path=a.model),
                      chat=ChatSettings(sampling=sampling, thinking_budget=a.thinking_budget, system=a.system),
                      threads=a.threads)


def main(cfg: ChatConfig, lines: Iterable[str] | None = None, out: TextIO = sys.stdout) -> list[dict]:
    set_threads(cfg.threads)
    tokenizer = load_tokenizer(cfg.model.name_or_path, key="--model")  # first: it checks the path, cheaply
    model = load_model(cfg.model)
    interactive = lines is None and sys.stdin.isatty()
    if interactive:
        print(f"chatting with {cfg.model.name_or_path}: /think or /no_think in a message switches mode, "
              "/reset clears the history, /exit or Ctrl-D quits", file=sys.stderr)
    if lines is None:
        lines = terminal_lines() if interactive else sys.stdin
    return chat_loop(model, tokenizer, lines, out, cfg.chat, color=use_color(out))


def cli(argv: list[str] | None = None) -> None:
    """Like stages.config.run_cli (user errors exit 2 in one line), for flags instead of a YAML config."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = None
    try:
        cfg = parse_args(argv)
        main(cfg)
    except (ValueError, OSError) as e:  # OSError: transformers' hub and file errors
        if os.environ.get("POSTTRAIN_TRACEBACK"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if cfg is not None and cfg.model.name_or_path not in message:
            message = f"--model {cfg.model.name_or_path!r}: {message}"  # hub errors name the site, not the model
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C while a reply is generated: quit without a traceback
        print(file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    cli()
