"""Rule-based rewards on the text of an answer: length, language, JSON, QA, multiple choice, RAG grounding,
refusal, translation (chrF) and summarisation (ROUGE-L).

Each reads its own columns and returns None for rows without them, so one stage-4 mixture needs no router. Where
two rewards read the same column (``reference``: ``translation_chrf``, ``summary_rouge``, ``llm_judge``;
``answers``: ``exact_match``, ``qa_f1``, ``rag_grounding``) give each ``tasks=[...]``: rows whose ``task``
column is not listed then get None. Also here: :func:`schema_errors`, the small JSON-schema validator that
``json_schema`` and ``tool_call`` share.

    >>> length_control(["one two three four"], target_words=[5])
    [0.8]
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rewards.completion import answer_text, row_value
from rewards.format import _CHATML_TURN as CHATML_TURN  # (role, content) of each turn of a ChatML string

# ------------------------------------------------------------ routing and prompts


def check_tasks(tasks: Any) -> None:
    """Reject a ``tasks`` keyword that is not a list of task names (a bare string is a common YAML slip)."""
    if tasks is not None and (
        isinstance(tasks, str)
        or not isinstance(tasks, (list, tuple, set, frozenset))
        or not all(isinstance(name, str) for name in tasks)
    ):
        raise ValueError(f"tasks must be a list of task names, got {tasks!r}")


def is_selected(task: Any, tasks: Sequence[str] | None, index: int) -> bool:
    """Whether row ``index`` is judged: always without ``tasks``, else when its ``task`` value is listed."""
    return tasks is None or row_value(task, index) in tasks


def last_user_text(prompt: Any) -> str | None:
    """The text of the last user message of a prompt: TRL's list of messages, a ChatML-rendered string, or a
    plain string (taken whole).

    >>> last_user_text([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
    ...                 {"role": "user", "content": "Bye"}])
    'Bye'
    >>> last_user_text("<|im_start|>user\\nHallo<|im_end|>\\n<|im_start|>assistant\\n")
    'Hallo'
    """
    if isinstance(prompt, str):
        turns = [content for role, content in CHATML_TURN.findall(prompt) if role == "user"]
        return turns[-1] if turns else prompt
    if isinstance(prompt, (list, tuple)):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else None
    return None


def json_column(value: Any, what: str, index: int) -> Any:
    """A column value that may arrive JSON-encoded (datasets cannot hold arbitrary nested values), decoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError(f"row {index}: {what} is a string but not JSON ({error})") from error
    return value


# ------------------------------------------------------------ JSON schema


_TYPES = {
    # JSON Schema names plus the Python-flavoured ones BFCL's function schemas use (dict, float, tuple, any).
    "object": lambda v: isinstance(v, dict),
    "dict": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "tuple": lambda v: isinstance(v, list),
    "list": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    # As in JSON Schema (draft 6 on), 2.0 is an integer.
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "any": lambda v: True,
}


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 2 == 2.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if _TYPES["number"](a) or _TYPES["number"](b):
        return _TYPES["number"](a) and _TYPES["number"](b) and a == b
    return type(a) is type(b) and a == b


def schema_errors(instance: Any, schema: Any, *, root: Any = None, path: str = "$", depth: int = 0) -> list[str]:
    """Where ``instance`` breaks ``schema``: a list of messages, empty when it validates.

    A small validator for the keywords tool and structured-output schemas use: ``type`` (one or a list; also
    BFCL's ``dict``/``float``/``tuple``/``any``), ``enum``, ``const``, ``properties``, ``required``,
    ``additionalProperties``, ``min/maxProperties``, ``items`` (one schema or a list), ``prefixItems``,
    ``min/maxItems``, ``uniqueItems``, ``minimum``, ``maximum``, ``exclusiveMinimum/Maximum``, ``multipleOf``,
    ``min/maxLength``, ``pattern``, ``anyOf``, ``oneOf``, ``allOf``, ``not``, local ``$ref`` (``#/…``) and
    OpenAPI's ``nullable``. Other keywords (``format``, ``description`` …) are annotations and ignored, as
    JSON Schema does by default.

    >>> schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    >>> schema_errors({"n": 0}, schema)
    ['$.n: 0 is less than the minimum 1']
    >>> schema_errors({"n": 2.0}, schema)
    []
    """
    root = schema if root is None else root
    if depth > 64:
        return [f"{path}: schema nested or referenced too deeply"]
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    if not isinstance(schema, dict):
        raise ValueError(f"invalid JSON schema at {path}: expected an object, got {type(schema).__name__}")
    if "$ref" in schema:
        schema = {**_resolve_ref(schema["$ref"], root), **{k: v for k, v in schema.items() if k != "$ref"}}
    if instance is None and schema.get("nullable") is True:
        return []
    errors: list[str] = []
    nested = lambda value, sub, where: schema_errors(value, sub, root=root, path=where, depth=depth + 1)

    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        unknown = [name for name in names if name not in _TYPES]
        if unknown:
            raise ValueError(f"invalid JSON schema at {path}: unknown type {unknown[0]!r}")
        if not any(_TYPES[name](instance) for name in names):
            return [f"{path}: expected {' or '.join(names)}, got {_json_type(instance)}"]
    if "enum" in schema and not any(_json_equal(instance, option) for option in schema["enum"]):
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _json_equal(instance, schema["const"]):
        errors.append(f"{path}: {instance!r} is not {schema['const']!r}")

    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{path}: missing required property {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                errors += nested(value, properties[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += nested(value, extra, f"{path}.{key}")
        if len(instance) < schema.get("minProperties", 0):
            errors.append(f"{path}: fewer than {schema['minProperties']} properties")
        if "maxProperties" in schema and len(instance) > schema["maxProperties"]:
            errors.append(f"{path}: more than {schema['maxProperties']} properties")

    if isinstance(instance, list):
        items, prefix = schema.get("items"), schema.get("prefixItems", [])
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, schema.get("additionalItems")
        for index, value in enumerate(instance):
            sub = prefix[index] if index < len(prefix) else items
            if sub is not None:
                errors += nested(value, sub, f"{path}[{index}]")
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems") and any(
            _json_equal(a, b) for i, a in enumerate(instance) for b in instance[i + 1 :]
        ):
            errors.append(f"{path}: items are not unique")

    if _TYPES["number"](instance):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} is more than the maximum {schema['maximum']}")
        low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if _TYPES["number"](low) and instance <= low:
            errors.append(f"{path}: {instance} is not more than {low}")
        if _TYPES["number"](high) and instance >= high:
            errors.append(f"{path}: {instance} is not less than {high}")
        step = schema.get("multipleOf")
        if step and not math.isclose(instance / step, round(instance / step), rel_tol=0, abs_tol=1e-9):
            errors.append(f"{path}: {instance} is not a multiple of {step}")

    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], instance) is None:
            errors.append(f"{path}: does not match {schema['pattern']!r}")

    for sub in schema.get("allOf", []):
        errors += nested(instance, sub, path)
    if "anyOf" in schema and all(nested(instance, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema and sum(not nested(instance, sub, path) for sub in schema["oneOf"]) != 1:
        errors.append(f"{path}: does not match exactly one of oneOf")
    if "not" in schema and not nested(instance, schema["not"], path):
        errors.append(f"{path}: matches a schema it must not")
    return errors


def _resolve_ref(reference: Any, root: Any) -> Any:
    if not isinstance(reference, str) or not reference.startswith("#"):
        raise ValueError(f"invalid JSON schema: only local $ref ('#/...') is supported, got {reference!r}")
    target = root
    for part in [p for p in reference[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise ValueError(f"invalid JSON schema: $ref {reference!r} points nowhere")
        target = target[part]
    return target


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def json_schema(
    completions: list[Any],
    schema: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the answer is JSON (the whole answer, or the whole answer in one ```json fence) that validates
    against the row's ``schema`` (a dict or a JSON string; see :func:`schema_errors`), else 0.0.

    >>> json_schema(['```json\\n{"name": "Ada"}\\n```', '{"name": 7}', 'Here: {"name": "Ada"}'],
    ...             schema=[{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}] * 3)
    [1.0, 0.0, 0.0]
    """
    from rewards.ifeval_checks import parse_json_answer

    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        row_schema = json_column(row_value(schema, i), "schema", i)
        if row_schema is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        answer = answer_text(completion)
        try:
            value = parse_json_answer(answer or "")
        except ValueError:
            scores.append(0.0)
            continue
        scores.append(float(not schema_errors(value, row_schema)))
    return scores


# ------------------------------------------------------------ length and language


def length_control(
    completions: list[Any],
    target_words: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """Qwen3's LengthCtrl: ``max(0, 1 - |words - target_words| / target_words)``, where ``words`` is the number
    of whitespace-separated words of the answer. 1.0 on target, 0.5 at half or one and a half times the target,
    0.0 at twice the target or more (and for an empty or cut-off answer).

    >>> length_control(["a b c d e", "a b", " ".join("w" * 12)], target_words=[5, 4, 6])
    [1.0, 0.5, 0.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        target = row_value(target_words, i)
        if target is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        if isinstance(target, bool) or not isinstance(target, (int, float)) or target <= 0:
            raise ValueError(f"length_control: row {i}: target_words must be a positive number, got {target!r}")
        words = len((answer_text(completion) or "").split())
        scores.append(max(0.0, 1.0 - abs(words - target) / target))
    return scores


_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`|https?://\S+", re.DOTALL)


def _language_code(code: str) -> str:
    """Primary language subtag, lower-cased: "en-US" -> "en", "zh-cn" -> "zh", "pt_BR" -> "pt"."""
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]


def language_consistency(
    completions: list[Any],
    language: list[Any] | None = None,
    prompts: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    min_letters: int = 20,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the answer is written in the row's language, else 0.0.

    The language is the ``language`` column (an ISO 639-1 code; region subtags are ignored), or, without it, the
    language detected in the last user message. Detection is langdetect, seeded (deterministic), on the answer
    with code blocks, inline code and URLs removed. A text with fewer than ``min_letters`` letters is too short to
    tell: such an answer (or such a prompt, when there is no ``language`` column) gives None, not 0.

    >>> language_consistency(["Das Wetter ist heute wirklich sehr schön und warm.",
    ...                       "The weather is really very nice and warm today."], language=["de", "de"])
    [1.0, 0.0]
    """
    from rewards.ifeval_checks import detect_language

    check_tasks(tasks)
    if min_letters < 1:
        raise ValueError(f"language_consistency: min_letters must be >= 1, got {min_letters}")

    def detect(text: str | None) -> str | None:
        text = _CODE.sub(" ", text or "")
        if sum(character.isalpha() for character in text) < min_letters:
            return None
        code = detect_language(text)
        return _language_code(code) if code else None

    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        if not is_selected(task, tasks, i):
            scores.append(None)
            continue
        wanted = row_value(language, i)
        wanted = _language_code(wanted) if isinstance(wanted, str) and wanted.strip() else None
        if wanted is None:
            wanted = detect(last_user_text(row_value(prompts, i)))
        if wanted is None:
            scores.append(None)
            continue
        answer = answer_text(completion)
        if answer is None:
            scores.append(0.0)
            continue
        found = detect(answer)
        scores.append(None if found is None else float(found == wanted))
    return scores


# ------------------------------------------------------------ QA: exact match and F1

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles (a, an, the), single spaces.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _gold_answers(value: Any, index: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value) or None
    raise ValueError(f"row {index}: answers must be a string or a list of strings, got {value!r}")


def _squad_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _qa_scores(completions, answers, task, tasks, score) -> list[float | None]:
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        golds = _gold_answers(row_value(answers, i), i)
        if golds is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        answer = answer_text(completion)
        scores.append(0.0 if answer is None else max(score(answer, gold) for gold in golds))
    return scores


def exact_match(
    completions: list[Any],
    answers: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the answer equals one of ``answers`` after SQuAD normalisation (:func:`normalize_answer`).

    >>> exact_match(["The Eiffel Tower.", "Eiffel Tower in Paris"], answers=[["Eiffel Tower"]] * 2)
    [1.0, 0.0]
    """
    exact = lambda prediction, gold: float(normalize_answer(prediction) == normalize_answer(gold))
    return _qa_scores(completions, answers, task, tasks, exact)


def qa_f1(
    completions: list[Any],
    answers: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """SQuAD token F1 between the answer and the best of ``answers`` (normalised as :func:`normalize_answer`).

    >>> qa_f1(["Eiffel Tower in Paris"], answers=[["the Eiffel Tower", "Louvre"]])
    [0.6666666666666666]
    """
    return _qa_scores(completions, answers, task, tasks, _squad_f1)


# ------------------------------------------------------------ multiple choice

_LETTERS = string.ascii_uppercase
_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{\s*)?\(?([A-Z])\)?\s*\}?\s*\}")
# "answer is (B)", "Answer: B", "the answer would be option C" — the letter must be a capital on its own.
_STATED_LETTER = re.compile(
    r"(?i:\banswer\b)(?:\s*(?i:is|would be|:|-))*\s*(?i:option|choice)?\s*[(\[*]*\s*([A-Z])(?![\w])"
)
# Weaker: "option C", "choice: **D**" (an answer may walk through several options; the last one mentioned wins).
_OPTION_LETTER = re.compile(r"(?i:\b(?:option|choice)\b)(?:\s*(?i:is|:|-))*\s*[(\[*]*\s*([A-Z])(?![\w])")
# The answer opens with the letter: "B", "(B)", "B.", "B) Paris", "**B**: Paris".
_LEADING_LETTER = re.compile(r"[*\s]*[(\[]?([A-Z])(?:[)\].:]|\*\*|\s*$)")


def extract_choice(text: str, letters: str = _LETTERS, choices: Sequence[str] | None = None) -> str | None:
    """The option letter an answer chooses, or None.

    In order: the last ``\\boxed{B}``; the last statement such as "the answer is (B)"; an answer that opens with
    the letter ("B.", "(B)", "B) Paris"); the last "option C" / "choice C"; an answer whose whole text is one of
    ``choices``. Letters outside ``letters`` do not count.

    >>> [extract_choice(t) for t in ["So \\\\boxed{C}.", "The answer is (B).", "D) Paris", "I think so"]]
    ['C', 'B', 'D', None]
    """
    for pattern in (_BOXED_LETTER, _STATED_LETTER):
        found = [letter for letter in pattern.findall(text) if letter in letters]
        if found:
            return found[-1]
    leading = _LEADING_LETTER.match(text)
    if leading and leading.group(1) in letters:
        return leading.group(1)
    found = [letter for letter in _OPTION_LETTER.findall(text) if letter in letters]
    if found:
        return found[-1]
    if choices:
        normalized = normalize_answer(text)
        matches = [letter for letter, choice in zip(letters, choices) if normalize_answer(choice) == normalized]
        if len(matches) == 1:
            return matches[0]
    return None


def multiple_choice(
    completions: list[Any],
    answer: list[Any] | None = None,
    choices: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the letter the answer chooses (:func:`extract_choice`) is the gold ``answer`` letter.

    A row whose ``answer`` is not a single letter ("B", "(b)") is not a multiple-choice row: None. With
    ``choices`` (the option texts, in letter order) only their letters count, and an answer that repeats one
    option's text chooses it.

    >>> multiple_choice(["The answer is (B).", "A", "Paris"], answer=["B", "B", "C"],
    ...                 choices=[None, None, ["Rome", "Oslo", "Paris"]])
    [1.0, 0.0, 1.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        gold = row_value(answer, i)
        gold = gold.strip().strip("()").upper() if isinstance(gold, str) else None
        if not gold or len(gold) != 1 or gold not in _LETTERS or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        options = json_column(row_value(choices, i), "choices", i)
        options = list(options) if isinstance(options, (list, tuple)) and options else None
        letters = _LETTERS[: len(options)] if options else _LETTERS
        text = answer_text(completion)
        scores.append(0.0 if text is None else float(extract_choice(text, letters, options) == gold))
    return scores


# ------------------------------------------------------------ RAG grounding

_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_STOPWORDS = frozenset(
    "a an the and or but if of in on at to for from by with as is are was were be been being it its this that "
    "these those there their they he she his her we you i not no so than then do does did has have had can "
    "could will would should may might also which who whom what when where why how all any each about into".split()
)


def _content_tokens(text: str) -> set[str]:
    return {token for token in re.findall(r"\w+", text.lower()) if token not in _STOPWORDS}


def _passage_text(passage: Any) -> str:
    if isinstance(passage, dict):  # {"title": …, "text": …} as retrieval datasets store them
        return " ".join(str(passage.get(key) or "") for key in ("title", "text"))
    return str(passage)


def rag_grounding(
    completions: list[Any],
    passages: list[Any] | None = None,
    answers: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    support_threshold: float = 0.5,
    invalid_citation_penalty: float = 0.5,
    answer_bonus: float = 0.5,
    **columns: Any,
) -> list[float | None]:
    """Reward answers grounded in the given ``passages`` (cited as ``[1]``, ``[2]``, ``[1, 3]`` …)::

        score = max(-1, supported / claims + answer_bonus * correct - invalid_citation_penalty * invalid)

    - claims: the answer's sentences (Punkt) with at least 4 words; a sentence made only of citations ("[2].")
      belongs to the one before it;
    - supported: claims that cite at least one existing passage and whose content words (lower-cased, common
      stopwords removed) lie in the cited passages' words for at least ``support_threshold`` of them;
      ``supported / claims`` is 0 when there are no claims;
    - invalid: distinct passage numbers cited that do not exist (``[7]`` with 3 passages);
    - correct: 1 when ``answers`` is given and one of them (SQuAD-normalised) occurs in the answer.

    So the score lies in [-1, 1 + answer_bonus]: uncited or unsupported sentences pull it down, invented
    citations push it below zero.

    >>> passages = [["Paris is the capital of France.", "Berlin is the capital of Germany."]]
    >>> rag_grounding(["Paris is the capital of France [1].", "Paris is the capital of France [3]."],
    ...               passages=passages * 2, answers=[["Paris"]] * 2)
    [1.5, 0.0]
    """
    from rewards.ifeval_checks import split_sentences

    check_tasks(tasks)
    if not 0 <= support_threshold <= 1:
        raise ValueError(f"rag_grounding: support_threshold must be in [0, 1], got {support_threshold}")
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        row_passages = json_column(row_value(passages, i), "passages", i)
        if row_passages is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        if not isinstance(row_passages, (list, tuple)):
            raise ValueError(f"rag_grounding: row {i}: passages must be a list, got {type(row_passages).__name__}")
        golds = _gold_answers(row_value(answers, i), i)
        answer = answer_text(completion)
        if not answer:
            scores.append(0.0)
            continue
        passage_tokens = [_content_tokens(_passage_text(passage)) for passage in row_passages]

        # (sentence text without citations, cited numbers), citation-only sentences merged into the previous one
        sentences: list[tuple[str, set[int]]] = []
        for sentence in split_sentences(answer):
            cited = {int(n) for group in _CITATION.findall(sentence) for n in re.split(r"\s*[,;]\s*", group)}
            text = _CITATION.sub(" ", sentence)
            if sentences and not re.search(r"\w", text):
                sentences[-1] = (sentences[-1][0], sentences[-1][1] | cited)
            else:
                sentences.append((text, cited))

        invalid = {n for _, cited in sentences for n in cited if not 1 <= n <= len(row_passages)}
        claims = [(text, cited) for text, cited in sentences if len(re.findall(r"\w+", text)) >= 4]
        supported = 0
        for text, cited in claims:
            valid = [n for n in cited if 1 <= n <= len(row_passages)]
            tokens = _content_tokens(text)
            if valid and tokens:
                evidence = set().union(*(passage_tokens[n - 1] for n in valid))
                supported += len(tokens & evidence) / len(tokens) >= support_threshold
        grounding = supported / len(claims) if claims else 0.0
        correct = 0.0
        if golds:
            padded = f" {normalize_answer(answer)} "
            correct = float(any(f" {normalize_answer(gold)} " in padded for gold in golds if normalize_answer(gold)))
        scores.append(max(-1.0, grounding + answer_bonus * correct - invalid_citation_penalty * len(invalid)))
    return scores


# ------------------------------------------------------------ refusal

# Looked for in the first 300 characters of the answer (after ’ -> '), where refusals are; a helpful answer
# that says "I can't stress enough" further down is not a refusal.
REFUSAL_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\bI(?:'m| am) (?:sorry|afraid),? but\b",
        r"\bI (?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to"
        r"|must decline to|have to decline to) (?:help|assist|provide|comply|fulfil|fulfill|do that|support"
        r"|create|generate|write|engage|participate|share|give|offer|answer|produce|continue)\b",
        r"\bI must (?:decline|refuse)\b",
        r"\b(?:as an ai|as a language model)\b[^.]{0,40}\b(?:can't|cannot|not able|unable)\b",
        r"\b(?:is|would be|goes) against my (?:guidelines|policies|policy|principles|programming)\b",
        r"\bI (?:do not|don't) feel comfortable\b",
        r"\bI(?:'m| am) not comfortable (?:helping|providing|with|doing|writing)\b",
        r"\bI(?:'d| would) (?:rather not|prefer not to)\b",
        r"\bnot (?:something|a request) I can (?:help|assist)\b",
    )
)


def is_refusal(text: str) -> bool:
    """Whether an answer refuses, by :data:`REFUSAL_PATTERNS` in its first 300 characters.

    >>> is_refusal("I'm sorry, but I can't help with that."), is_refusal("Sure! Step one: preheat the oven.")
    (True, False)
    """
    head = text[:300].replace("’", "'")
    return any(pattern.search(head) for pattern in REFUSAL_PATTERNS)


def refusal(
    completions: list[Any],
    should_refuse: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the answer refuses (:func:`is_refusal`) exactly when ``should_refuse`` says it should.

    >>> refusal(["I can't help with that.", "Here is a poem.", "I cannot assist with that."],
    ...         should_refuse=[True, True, False])
    [1.0, 0.0, 0.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        wanted = row_value(should_refuse, i)
        if wanted is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        if not isinstance(wanted, (bool, int)) or wanted not in (0, 1):
            raise ValueError(f"refusal: row {i}: should_refuse must be a bool, got {wanted!r}")
        answer = answer_text(completion)
        scores.append(0.0 if not answer else float(is_refusal(answer) == bool(wanted)))
    return scores


# ------------------------------------------------------------ translation (chrF) and summaries (ROUGE-L)


def chrf(hypothesis: str, reference: str, char_order: int = 6, beta: float = 2.0) -> float:
    """Sentence chrF in [0, 1] (sacrebleu's ``CHRF()`` defaults divided by 100): character n-grams of orders
    1..``char_order`` with whitespace removed; precision and recall averaged over the orders both texts have,
    then F-beta.

    >>> round(chrf("the cat sat", "the cat sat on the mat"), 4)   # sacrebleu 2.6: 49.5935
    0.4959
    >>> chrf("", "anything")
    0.0
    """
    hypothesis, reference = "".join(hypothesis.split()), "".join(reference.split())
    precision = recall = 0.0
    orders = 0
    for n in range(1, char_order + 1):
        hyp = Counter(hypothesis[i : i + n] for i in range(len(hypothesis) - n + 1))
        ref = Counter(reference[i : i + n] for i in range(len(reference) - n + 1))
        if hyp and ref:
            matched = sum((hyp & ref).values())
            precision += matched / sum(hyp.values())
            recall += matched / sum(ref.values())
            orders += 1
    if orders == 0:
        return 0.0
    precision, recall = precision / orders, recall / orders
    if precision + recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def _references(value: Any, index: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"row {index}: reference must be a string or a list of strings, got {value!r}")


def translation_chrf(
    completions: list[Any],
    reference: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    char_order: int = 6,
    beta: float = 2.0,
    **columns: Any,
) -> list[float | None]:
    """chrF of the answer against ``reference`` (a string, or a list: the best reference counts), in [0, 1].

    >>> translation_chrf(["Le chat est noir."], reference=["Le chat est noir."])
    [1.0]
    """
    check_tasks(tasks)
    if char_order < 1 or beta <= 0:
        raise ValueError(f"translation_chrf: need char_order >= 1 and beta > 0, got {char_order}, {beta}")
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        references = _references(row_value(reference, i), i)
        if references is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        answer = answer_text(completion) or ""
        scores.append(max(chrf(answer, ref, char_order, beta) for ref in references))
    return scores


def rouge_tokens(text: str, unicode_tokens: bool = False) -> list[str]:
    """rouge-score's default tokens: lower case, runs of ``[a-z0-9]`` (so non-Latin text has none); with
    ``unicode_tokens`` runs of any letters and digits instead.

    >>> rouge_tokens("The cat's 2 hats!"), rouge_tokens("Grüße aus Köln", unicode_tokens=True)
    (['the', 'cat', 's', '2', 'hats'], ['grüße', 'aus', 'köln'])
    """
    text = text.lower()
    return re.findall(r"[^\W_]+", text) if unicode_tokens else re.findall(r"[a-z0-9]+", text)


def rouge_l(prediction: str, reference: str, unicode_tokens: bool = False) -> float:
    """ROUGE-L F1: longest common subsequence of tokens, ``2PR / (P + R)``; 0 when either side has no tokens.

    >>> round(rouge_l("the cat sat on a mat", "the cat was on the mat"), 4)
    0.6667
    """
    predicted, expected = rouge_tokens(prediction, unicode_tokens), rouge_tokens(reference, unicode_tokens)
    if not predicted or not expected:
        return 0.0
    previous = [0] * (len(expected) + 1)
    for token in predicted:
        current = [0]
        for j, other in enumerate(expected):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(predicted), lcs / len(expected)
    return 2 * precision * recall / (precision + recall)


def summary_rouge(
    completions: list[Any],
    reference: list[Any] | None = None,
    max_words: list[Any] | None = None,
    task: list[Any] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    unicode_tokens: bool = False,
    **columns: Any,
) -> list[float | None]:
    """ROUGE-L F1 of the answer against ``reference`` (best of a list), or 0.0 when the answer has more
    whitespace-separated words than the row's ``max_words`` (when given).

    >>> summary_rouge(["the cat sat on a mat", "the cat sat on a mat"], reference=["the cat was on the mat"] * 2,
    ...               max_words=[6, 5])
    [0.6666666666666666, 0.0]
    """
    check_tasks(tasks)
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        references = _references(row_value(reference, i), i)
        if references is None or not is_selected(task, tasks, i):
            scores.append(None)
            continue
        answer = answer_text(completion) or ""
        limit = row_value(max_words, i)
        if limit is not None and len(answer.split()) > limit:
            scores.append(0.0)
            continue
        scores.append(max(rouge_l(answer, ref, unicode_tokens) for ref in references))
    return scores
