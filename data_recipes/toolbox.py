"""The offline tool set: small, deterministic tools a model calls during stage-4 rollouts, and that the data
recipes call to know the right answer.

Three tool sets (:data:`TOOLSETS`): ``calculator`` (add, subtract, multiply, divide), ``units``
(convert_units) and ``lookup`` (get_capital, get_population, get_weather, get_time — a fixed table, no
network). Each tool is a plain function with type hints and a Google-style docstring, because that is what
``transformers.utils.get_json_schema`` (and so the chat template and TRL's ``environment_factory``) reads to
show the tool to the model; :func:`tool_schemas` gives the same schemas to the data recipes and the
``tool_call`` reward, so the model is shown exactly the schema its calls are checked against.

The arguments come from model output: a tool checks them and raises ``ValueError`` with a message the model
can read (TRL feeds the error back as the tool's response); nothing here touches files, the network or the
clock, and numbers are bounded so no call can take long.

    >>> multiply(a=12, b=4)
    48
    >>> convert_units(value=2, from_unit="kilometers", to_unit="meters")
    2000
    >>> get_capital(country="Kenya")
    'Nairobi'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

MAX_MAGNITUDE = 1e15  # larger numbers are not arithmetic a tool set for small models needs


def _number(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"{name} must be a finite number of at most {MAX_MAGNITUDE:g} in size, got {value!r}")
    return value


def _tidy(value: float) -> int | float:
    """12.0 -> 12 and 0.1 + 0.2 -> 0.3: results read the way a person writes them."""
    value = round(value, 6)
    return int(value) if value == int(value) else value


# ---------------------------------------------------------------- calculator


def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return _tidy(_number("a", a) + _number("b", b))


def subtract(a: float, b: float) -> float:
    """Subtract b from a.

    Args:
        a: The number to subtract from.
        b: The number to subtract.
    """
    return _tidy(_number("a", a) - _number("b", b))


def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return _tidy(_number("a", a) * _number("b", b))


def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The number to divide.
        b: The number to divide by.
    """
    if _number("b", b) == 0:
        raise ValueError("b must not be zero")
    return _tidy(_number("a", a) / b)


# ---------------------------------------------------------------- unit conversion

# unit -> (dimension, size in the dimension's base unit)
_UNITS = {
    "meters": ("length", 1.0), "kilometers": ("length", 1000.0), "centimeters": ("length", 0.01),
    "miles": ("length", 1609.344), "feet": ("length", 0.3048), "inches": ("length", 0.0254),
    "grams": ("mass", 1.0), "kilograms": ("mass", 1000.0), "pounds": ("mass", 453.59237),
    "seconds": ("time", 1.0), "minutes": ("time", 60.0), "hours": ("time", 3600.0), "days": ("time", 86400.0),
    "liters": ("volume", 1.0), "milliliters": ("volume", 0.001),
    "celsius": ("temperature", None), "fahrenheit": ("temperature", None),
}
UNITS = sorted(_UNITS)


def convert_units(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a value from one unit to another.

    Args:
        value: The value to convert.
        from_unit: The unit of the value. (choices: ["celsius", "centimeters", "days", "fahrenheit", "feet", "grams", "hours", "inches", "kilograms", "kilometers", "liters", "meters", "miles", "milliliters", "minutes", "pounds", "seconds"])
        to_unit: The unit to convert to. (choices: ["celsius", "centimeters", "days", "fahrenheit", "feet", "grams", "hours", "inches", "kilograms", "kilometers", "liters", "meters", "miles", "milliliters", "minutes", "pounds", "seconds"])
    """  # noqa: E501 — get_json_schema reads the choices from the one line
    value = _number("value", value)
    for name, unit in (("from_unit", from_unit), ("to_unit", to_unit)):
        if unit not in _UNITS:
            raise ValueError(f"{name} must be one of {UNITS}, got {unit!r}")
    (source_kind, source_size), (target_kind, target_size) = _UNITS[from_unit], _UNITS[to_unit]
    if source_kind != target_kind:
        raise ValueError(f"cannot convert {source_kind} ({from_unit}) to {target_kind} ({to_unit})")
    if source_kind == "temperature":
        if from_unit == to_unit:
            return _tidy(value)
        return _tidy(value * 9 / 5 + 32 if from_unit == "celsius" else (value - 32) * 5 / 9)
    return _tidy(value * source_size / target_size)


# ---------------------------------------------------------------- lookups (a fixed table)

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Brazil": "Brasilia", "Kenya": "Nairobi", "Canada": "Ottawa",
    "Egypt": "Cairo", "India": "New Delhi", "Mexico": "Mexico City", "Norway": "Oslo", "Peru": "Lima",
    "Spain": "Madrid", "Italy": "Rome", "Chile": "Santiago", "Ghana": "Accra", "Greece": "Athens",
    "Turkey": "Ankara", "Vietnam": "Hanoi", "Poland": "Warsaw", "Sweden": "Stockholm", "Morocco": "Rabat",
    "Nepal": "Kathmandu", "Cuba": "Havana", "Ireland": "Dublin", "Portugal": "Lisbon", "Argentina": "Buenos Aires",
}
# Rounded to the million, as a lookup table of a small world would hold them.
POPULATIONS = {
    "France": 68, "Japan": 124, "Brazil": 216, "Kenya": 55, "Canada": 40, "Egypt": 113, "India": 1429,
    "Mexico": 129, "Norway": 6, "Peru": 34, "Spain": 48, "Italy": 59, "Chile": 20, "Ghana": 34, "Greece": 10,
    "Turkey": 85, "Vietnam": 99, "Poland": 37, "Sweden": 11, "Morocco": 37, "Nepal": 31, "Cuba": 11,
    "Ireland": 5, "Portugal": 10, "Argentina": 46,
}
CITIES = ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Rome", "Madrid", "Berlin", "London", "Nairobi", "Delhi",
          "Sydney", "Toronto", "Dublin", "Athens", "Lisbon", "Seoul", "Bangkok", "Vienna", "Prague", "Warsaw",
          "Havana", "Dakar", "Quito"]
_SKIES = ["sunny", "cloudy", "rainy", "windy", "foggy"]


def _draw(*key: str) -> int:
    """A stable number for a key: the table's 'measurement', the same in every process and run."""
    return int.from_bytes(hashlib.sha256("|".join(key).encode()).digest()[:4], "big")


def _known(name: str, value: Any, known) -> str:
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"{name} must be one of {sorted(known)}, got {value!r}")
    return value


def get_capital(country: str) -> str:
    """Get the capital city of a country.

    Args:
        country: The country, e.g. France.
    """
    return CAPITALS[_known("country", country, CAPITALS)]


def get_population(country: str) -> str:
    """Get the number of people who live in a country.

    Args:
        country: The country, e.g. France.
    """
    return f"{POPULATIONS[_known('country', country, POPULATIONS)]} million"


def get_weather(city: str, unit: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city, e.g. Paris.
        unit: The temperature unit. (choices: ["celsius", "fahrenheit"])
    """
    city = _known("city", city, CITIES)
    unit = _known("unit", unit, ("celsius", "fahrenheit"))
    celsius = _draw("weather", city) % 30 + 2
    degrees = celsius if unit == "celsius" else _tidy(celsius * 9 / 5 + 32)
    return f"{degrees} degrees {unit}, {_SKIES[_draw('sky', city) % len(_SKIES)]}"


def get_time(city: str) -> str:
    """Get the local time in a city.

    Args:
        city: The city, e.g. Paris.
    """
    minutes = _draw("time", _known("city", city, CITIES)) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


TOOLSETS: dict[str, list[Callable]] = {
    "calculator": [add, subtract, multiply, divide],
    "units": [convert_units],
    "lookup": [get_capital, get_weather, get_population, get_time],
}


def tool_schemas(toolset: str) -> list[dict[str, Any]]:
    """The JSON schemas of a tool set, as the chat template shows them to the model (``get_json_schema``).

    >>> [schema["function"]["name"] for schema in tool_schemas("units")]
    ['convert_units']
    """
    from transformers.utils import get_json_schema

    if toolset not in TOOLSETS:
        raise ValueError(f"unknown tool set {toolset!r}; known: {sorted(TOOLSETS)}")
    return [get_json_schema(tool) for tool in TOOLSETS[toolset]]


def run_call(tools: dict[str, Callable], name: str, arguments: Any) -> str:
    """One call's response text from ``tools`` (name -> function): the result, or ``{'error': ...}`` for a call
    that fails (unknown tool, bad arguments, the tool's own check), as TRL reports a failed call. The one place
    a call runs: the data recipes (to know the right answer) and the evaluation's tool loop both come here.

    >>> run_call({"add": add}, "add", {"a": 2, "b": 3})
    '5'
    >>> run_call({"add": add}, "power", {"a": 2})
    "{'error': 'Tool power not found.'}"
    """
    try:
        if name not in tools:
            raise ValueError(f"Tool {name} not found.")
        if not isinstance(arguments, dict):
            raise ValueError(f"arguments must be an object, got {arguments!r}")
        return str(tools[name](**arguments))
    except Exception as e:  # a tool's failure is the model's feedback, never the run's
        return str({"error": str(e)})


def call_tool(toolset: str, name: str, arguments: Any) -> str:
    """:func:`run_call` with a built-in tool set.

    >>> call_tool("calculator", "add", {"a": 2, "b": 3})
    '5'
    """
    return run_call({tool.__name__: tool for tool in TOOLSETS.get(toolset, [])}, name, arguments)
