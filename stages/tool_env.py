"""Multi-turn tool use in stage 4: the environments whose tools run during rollouts, and the same loop for
evaluation.

A row whose ``environment`` column names a tool set is rolled out with those tools: TRL's GRPOTrainer
(``environment_factory``) shows their schemas in the prompt, parses the ``<tool_call>`` blocks the model writes,
runs each call, appends the tool's response and lets the model continue — up to
``trainer.max_tool_calling_iterations`` rounds. The tools' responses are masked out of the loss; the rewards
judge the whole exchange (rewards/completion.py). :func:`generate_with_tools` runs the same loop for the held-out
evaluation, which generates with our own helper rather than the trainer.

An environment is what TRL's ``environment_factory`` takes: a class whose public methods are the tools (type
hints and a Google-style docstring give their schemas) and whose ``reset(**row)`` starts an episode. Built-in
tool sets come from data_recipes/toolbox.py by name; a user's environment is a dotted path
(``my_pkg.envs:SqlEnv``). Rows without an environment run with :class:`NoTools`: a call the model makes there gets
an error back, as a call to a tool that does not exist would.
"""

from __future__ import annotations

import inspect
import pkgutil
from typing import Any

NO_TOOLS = "none"  # the environment of rows that name none

# How TRL parses a rollout turn into a message: only the tool calls come out; the think block stays in the
# content. TRL's own Qwen3 template also splits the thinking off, and then a reply cut off while thinking
# ("<think>..." with no "</think>") reads the same as a finished one, which the rewards must tell apart.
TOOL_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open": "<tool_call>", "close_pattern": r"</tool_call>\s*", "repeats": True, "content": "json",
                       "transform": {"type": "function", "function": "{content}"}},
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}


class NoTools:
    """The environment of rows without tools: nothing to call."""

    def reset(self, **row: Any) -> None:
        return None


def parse_tool_calls_in_rollouts(tokenizer) -> None:
    """Give ``tokenizer`` the response template TRL's tool loop parses turns with (unless it has one)."""
    if getattr(tokenizer, "response_template", None) is None:
        tokenizer.response_template = TOOL_RESPONSE_TEMPLATE


def toolset_environment(toolset: str) -> type:
    """A TRL environment class whose tools are the built-in tool set ``toolset`` (data_recipes/toolbox.py)."""
    from data_recipes.toolbox import TOOLSETS

    if toolset not in TOOLSETS:
        raise ValueError(f"unknown tool set {toolset!r}; built-in: {sorted(TOOLSETS)}")
    methods = {tool.__name__: staticmethod(tool) for tool in TOOLSETS[toolset]}
    return type(f"{toolset.title()}Tools", (NoTools,), {**methods, "__doc__": f"The {toolset} tool set."})


def load_environments(specs: dict[str, str], key: str = "environments") -> dict[str, Any]:
    """``{name: factory}`` for TRL from ``{name: built-in tool set or dotted path}``, plus :data:`NO_TOOLS`."""
    from stages.config import ConfigError

    factories: dict[str, Any] = {NO_TOOLS: NoTools}
    for name, spec in specs.items():
        if name == NO_TOOLS:
            raise ConfigError(f"{key}.{name}: {NO_TOOLS!r} is the name of rows without tools; pick another")
        try:
            factory = _import(spec) if ":" in spec else toolset_environment(spec)
        except ValueError as e:
            raise ConfigError(f"{key}.{name}: {e}") from None
        if not callable(getattr(factory, "reset", None)):
            raise ConfigError(f"{key}.{name}: {spec!r} is not an environment (a class with a reset method)")
        factories[name] = factory
    return factories


def _import(path: str) -> Any:
    try:
        return pkgutil.resolve_name(path)  # "package.module:Name"
    except ImportError as e:
        raise ValueError(f"cannot import module {path.partition(':')[0]!r} ({e})") from None
    except AttributeError:
        raise ValueError(f"module {path.partition(':')[0]!r} has no {path.partition(':')[2]!r}") from None


def route_rows(ds, factories: dict[str, Any], key: str = "data"):
    """``ds`` with an ``environment`` on every row (:data:`NO_TOOLS` where it names none); a row naming an
    environment that is not configured is an error."""
    from stages.config import ConfigError

    names = ds["environment"] if "environment" in ds.column_names else [None] * len(ds)
    for i, name in enumerate(names):
        if name is not None and name not in factories:
            task = f" (task {ds['task'][i]!r})" if "task" in ds.column_names else ""
            raise ConfigError(f"{key}: row {i}{task} names environment {name!r}, which is not configured; "
                              f"environments: {sorted(set(factories) - {NO_TOOLS})}")
    routed = [name or NO_TOOLS for name in names]
    if "environment" in ds.column_names:
        ds = ds.remove_columns("environment")
    return ds.add_column("environment", routed)


def environment_tools(environment: Any) -> dict[str, Any]:
    """The tools of an environment instance, by name — its public methods but ``reset`` and ``get_reward``,
    the rule TRL applies."""
    return {name: getattr(environment, name)
            for name, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction)
            if name not in ("reset", "get_reward") and not name.startswith("_")}


def run_call(tools: dict[str, Any], call: dict[str, Any]) -> str:
    """One parsed call (``{"name", "arguments"}``) run against an environment's tools (data_recipes.toolbox)."""
    from data_recipes.toolbox import run_call as run

    return run(tools, call["name"], call["arguments"])


def generate_with_tools(model, tokenizer, prompts: list[list[dict]], environments: list[str],
                        factories: dict[str, Any], max_rounds: int, show_tools: bool = True,
                        **generate_kwargs) -> list[Any]:
    """Replies to ``prompts`` where each row's tools run: a reply with ``<tool_call>`` blocks gets the tools'
    responses and is continued, up to ``max_rounds`` rounds. A row that called no tool gets its reply as a
    string; one that did, the message list a rollout gives (assistant turns and tool responses).
    ``show_tools=False`` leaves the tool schemas out of the prompts (the chat template's ``show_tools``)."""
    from rewards.completion import answer_text
    from rewards.tools import parse_tool_calls
    from stages.generation import generate

    if len(environments) != len(prompts):
        raise ValueError(f"generate_with_tools: {len(prompts)} prompts but {len(environments)} environments")
    instances = [factories[name]() for name in environments]
    for environment in instances:
        environment.reset()
    tools = [environment_tools(environment) for environment in instances]
    schemas = [(list(t.values()) or None) if show_tools else None for t in tools]  # shown as in a rollout
    dialogs: list[list[dict]] = [[] for _ in prompts]
    todo = list(range(len(prompts)))
    for round_ in range(max_rounds + 1):
        texts = generate(model, tokenizer, [list(prompts[i]) + dialogs[i] for i in todo],
                         tools=[schemas[i] for i in todo], **generate_kwargs)
        again = []
        for i, text in zip(todo, texts, strict=True):
            dialogs[i].append({"role": "assistant", "content": text})
            answer = answer_text(text)
            calls = parse_tool_calls(answer) if answer else None
            if calls and round_ < max_rounds:
                dialogs[i] += [{"role": "tool", "content": run_call(tools[i], call)} for call in calls]
                again.append(i)
        todo = again
        if not todo:
            break
    return [d[0]["content"] if len(d) == 1 else d for d in dialogs]
