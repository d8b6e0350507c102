"""Multi-turn tool use (stages/tool_env.py): environments from the config, rows routed to them, TRL's tool loop
running our tools inside a real GRPO step, and the same loop in evaluation.
Run: pytest tests/stages/test_tool_env.py"""

from __future__ import annotations

import json
import re

import pytest

from data_recipes.chat_template import EMPTY_THINK
from data_recipes.instructions import build
from stages.config import ConfigError
from stages.tool_env import (
    NO_TOOLS,
    environment_tools,
    generate_with_tools,
    load_environments,
    route_rows,
    run_call,
)

TOOLSETS = {"calculator": "calculator", "units": "units", "lookup": "lookup"}


class CounterEnv:
    """A user's environment, loaded by dotted path (tests.stages.test_tool_env:CounterEnv)."""

    def reset(self, **row):
        self.count = 0

    def increment(self, by: int) -> int:
        """Add to the counter.

        Args:
            by: How much to add.
        """
        self.count += by
        return self.count


def test_environments_come_from_builtin_tool_sets_or_dotted_paths():
    factories = load_environments({**TOOLSETS, "counter": "tests.stages.test_tool_env:CounterEnv"})
    assert set(factories) == {NO_TOOLS, *TOOLSETS, "counter"}
    assert sorted(environment_tools(factories["calculator"]())) == ["add", "divide", "multiply", "subtract"]
    assert environment_tools(factories[NO_TOOLS]()) == {}
    counter = factories["counter"]()
    counter.reset()
    assert run_call(environment_tools(counter), {"name": "increment", "arguments": {"by": 2}}) == "2"


@pytest.mark.parametrize("specs, message", [
    ({"calc": "calculatr"}, r"environments\.calc: unknown tool set 'calculatr'"),
    ({"x": "no_such_pkg.envs:Env"}, r"environments\.x: cannot import module 'no_such_pkg.envs'"),
    ({"x": "tests.stages.test_tool_env:NoSuchEnv"}, r"environments\.x: module .* has no 'NoSuchEnv'"),
    ({"x": "tests.stages.test_tool_env:TOOLSETS"}, r"environments\.x: .* is not an environment"),
    ({NO_TOOLS: "calculator"}, r"environments\.none: 'none' is the name of rows without tools"),
])
def test_a_bad_environment_is_a_config_error_naming_it(specs, message):
    with pytest.raises(ConfigError, match=message):
        load_environments(specs)


def test_rows_are_routed_to_their_tool_set_and_the_rest_to_no_tools():
    ds = build(n=6, seed=0, tasks=["tool_calc", "sort_numbers", "tool_lookup"])
    routed = route_rows(ds, load_environments(TOOLSETS))
    assert routed["environment"] == ["calculator", NO_TOOLS, "lookup"] * 2
    with pytest.raises(ConfigError, match=r"data: row 2 \(task 'tool_lookup'\) names environment 'lookup', "
                                          r"which is not configured; environments: \['calculator'\]"):
        route_rows(ds, load_environments({"calculator": "calculator"}))


def test_a_failing_call_answers_with_an_error_as_trl_does():
    tools = environment_tools(load_environments(TOOLSETS)["calculator"]())
    assert run_call(tools, {"name": "divide", "arguments": {"a": 1, "b": 0}}) == "{'error': 'b must not be zero'}"
    assert run_call(tools, {"name": "power", "arguments": {}}) == "{'error': 'Tool power not found.'}"
    assert "unexpected keyword argument 'c'" in run_call(tools, {"name": "add", "arguments": {"c": 1}})


def test_evaluation_runs_the_calls_and_continues_the_reply(monkeypatch):
    """generate_with_tools: a reply with a call gets the tool's response and is continued; one without is
    returned as it is; a row keeps calling at most max_rounds times."""
    seen = []

    def fake_generate(model, tokenizer, prompts, tools=None, **kwargs):
        seen.append([p[-1] for p in prompts])
        replies = []
        for prompt in prompts:
            question, last = prompt[0]["content"], prompt[-1]
            if "times" in question and last["role"] == "user":
                replies.append(EMPTY_THINK + '<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}'
                               '\n</tool_call>')
            elif "times" in question:
                replies.append(EMPTY_THINK + f"It is {last['content']}.")
            elif "loop" in question:  # calls forever: stopped after max_rounds
                replies.append(EMPTY_THINK + '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 1}}\n'
                               '</tool_call>')
            else:
                replies.append(EMPTY_THINK + "Hello.")
        return replies

    monkeypatch.setattr("stages.generation.generate", fake_generate)
    prompts = [[{"role": "user", "content": "What is 6 times 7?"}], [{"role": "user", "content": "Hi"}],
               [{"role": "user", "content": "loop"}]]
    out = generate_with_tools(None, None, prompts, ["calculator", NO_TOOLS, "calculator"],
                              load_environments(TOOLSETS), max_rounds=2)
    assert out[0][1] == {"role": "tool", "content": "42"} and out[0][2]["content"] == EMPTY_THINK + "It is 42."
    assert out[1] == EMPTY_THINK + "Hello."
    assert [m["role"] for m in out[2]] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert len(seen) == 3 and len(seen[1]) == 2 and len(seen[2]) == 1

    from rewards import get_reward

    assert get_reward("exact_match")([out[0]], answers=[["It is 42."]]) == [1.0]


def test_trl_tool_loop_runs_our_tools_and_the_rewards_judge_the_whole_exchange(tmp_path, tiny_moe_dir, monkeypatch):
    """A real GRPO step with our environments: the model's call (canned here: a tiny random model does not call
    tools) is parsed by our response template, run by the calculator, its response reaches the model's next
    turn, and the rewards see the whole exchange and score it."""
    from trl import GRPOConfig, GRPOTrainer

    from rewards import get_reward
    from stages.common import ModelSettings, load_model, load_tokenizer
    from stages.tool_env import parse_tool_calls_in_rollouts

    tokenizer = load_tokenizer(str(tiny_moe_dir))
    model = load_model(ModelSettings(name_or_path=str(tiny_moe_dir)))
    parse_tool_calls_in_rollouts(tokenizer)
    environments = load_environments(TOOLSETS)
    row = route_rows(build(n=1, seed=3, tasks=["tool_answer_calc"]), environments)
    call = json.loads(row["ground_truth"][0])[0]
    train = row.select([0, 0])

    def canned(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        replies = []
        for ids in prompt_ids:
            shown = tokenizer.decode(ids)
            response = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", shown)
            text = EMPTY_THINK + (f"{response[-1]}<|im_end|>" if response else
                                  f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>")
            replies.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        return replies, None

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", canned)
    judged = []

    def recorder(completions, **columns):
        judged.extend(completions)
        return [0.0] * len(completions)

    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=96, max_steps=1, report_to="none",
                      save_strategy="no", logging_steps=1, max_tool_calling_iterations=2,
                      chat_template_kwargs={"show_tools": False})
    scores = {}

    def scored(name):
        fn = get_reward(name)

        def reward(completions, **columns):
            scores[name] = fn(completions, **columns)
            return scores[name]

        reward.__name__ = name
        return reward

    trainer = GRPOTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=train,
                          reward_funcs=[scored("exact_match"), scored("tool_call"), recorder],
                          environment_factory=environments)
    trainer.train()
    first = judged[0]
    assert [m["role"] for m in first] == ["assistant", "tool", "assistant"]
    assert first[0]["tool_calls"][0]["function"] == call  # parsed out of the model's text by our template
    assert first[1]["content"] == row["answers"][0][0]  # the calculator really ran
    assert first[2]["content"] == EMPTY_THINK + row["answers"][0][0]
    assert scores == {"exact_match": [1.0, 1.0], "tool_call": [1.0, 1.0]}
    assert trainer.state.log_history[0]["tools/call_frequency"] == 1.0
