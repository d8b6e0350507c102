"""The `instruction_following` reward, called as a trainer calls it, against hand-checked verdicts for each of
Google IFEval's 25 instruction ids (and a few `instruction_following_loose` cases).

Every expected verdict below was worked out by hand from the official checker (google-research
`instruction_following_eval/instructions.py` and `evaluation_lib.py`), not by running our code. Cases sit near
the boundaries of each rule (exactly N, N-1, off-by-one bullets, case, stray punctuation).

Run: .venv/bin/python -m pytest -q tests/rewards/test_ifeval_hand_checked.py
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from rewards import get_reward
from rewards.ifeval_checks import IFEVAL_CHECKS

AT_LEAST, LESS = "at least", "less than"

GARDEN_TIP = "Give me a gardening tip. Include keywords garden, water."
DOG_DAY = "Describe a dog's day. Include keywords bone, dog, walk."
HAIKU = "Write a haiku about rain."
REPEAT = HAIKU + (
    " First repeat the request word for word without change, then give your answer (1. do not say any words or"
    " characters before repeating the request; 2. the request you need to repeat does not include this sentence)"
)
ANY_QUESTIONS = {"end_phrase": "Any other questions?"}
ENGLISH_UPPER = "THE WEATHER IS LOVELY TODAY, SO WE WILL WALK TO THE PARK AFTER LUNCH."
ENGLISH_LOWER = "the weather is lovely today, so we will walk to the park after lunch."
GERMAN_UPPER = "DAS WETTER IST HEUTE SEHR SCHÖN, UND WIR GEHEN NACH DEM ESSEN IN DEN PARK."
GERMAN_LOWER = "das wetter ist heute sehr schön, und wir gehen nach dem essen in den park."

# (instruction id, kwargs, prompt, response, expected: followed?)
CASES: list[tuple[str, dict[str, Any], str, str, bool]] = [
    # ------------------------------------------------ keywords:existence — every keyword, re.search, any case
    ("keywords:existence", {"keywords": ["garden", "water"]}, GARDEN_TIP,
     "Water your garden early in the morning.", True),
    ("keywords:existence", {"keywords": ["garden", "water"]}, GARDEN_TIP,
     "Mulch keeps the garden cool.", False),
    # Substring and case-blind: "WATERING" contains "water", "Gardens" contains "garden".
    ("keywords:existence", {"keywords": ["garden", "water"]}, GARDEN_TIP,
     "WATERING Gardens at dawn saves a lot.", True),
    ("keywords:existence", {"keywords": ["bone", "dog", "walk"]}, DOG_DAY,
     "The dog chewed a bone and slept.", False),
    # ------------------------------------------------ keywords:frequency — re.findall count, any case
    ("keywords:frequency", {"keyword": "rain", "frequency": 3, "relation": AT_LEAST},
     "Write a chant. Use the word rain at least 3 times.", "Rain, rain, go away; come back when the rain has gone.",
     True),
    ("keywords:frequency", {"keyword": "rain", "frequency": 3, "relation": AT_LEAST},
     "Write a chant. Use the word rain at least 3 times.", "Rain, rain, go away.", False),  # 2 is one short
    ("keywords:frequency", {"keyword": "sea", "frequency": 2, "relation": LESS},
     "Describe a beach. The word sea should appear less than 2 times.", "We swam in the sea at noon.", True),
    # Substrings count: "season" holds "sea", so 2 occurrences, not less than 2.
    ("keywords:frequency", {"keyword": "sea", "frequency": 2, "relation": LESS},
     "Describe a beach. The word sea should appear less than 2 times.", "The season by the sea is short.", False),
    # ------------------------------------------------ keywords:forbidden_words — whole words (\b), any case
    ("keywords:forbidden_words", {"forbidden_words": ["sad", "angry"]}, "How do you feel? Do not say sad or angry.",
     "I feel great today.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["sad", "angry"]}, "How do you feel? Do not say sad or angry.",
     "Honestly, a bit SAD.", False),
    # "Saddle" is not the word "sad".
    ("keywords:forbidden_words", {"forbidden_words": ["sad", "angry"]}, "How do you feel? Do not say sad or angry.",
     "Ready to saddle up and ride.", True),
    # A hyphen is a word boundary: "angry-looking" contains the word "angry".
    ("keywords:forbidden_words", {"forbidden_words": ["sad", "angry"]}, "How do you feel? Do not say sad or angry.",
     "Just an angry-looking cloud outside.", False),
    # ------------------------------------------------ keywords:letter_frequency — lower-cased character count
    # "Eleven trees": E, e, e + e, e = 5 (the capital counts).
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 5, "let_relation": AT_LEAST},
     "Name a number. The letter e should appear at least 5 times.", "Eleven trees", True),
    # Exactly 5 is not less than 5.
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 5, "let_relation": LESS},
     "Name a number. The letter e should appear less than 5 times.", "Eleven trees", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 1, "let_relation": LESS},
     "Say hi. The letter z should appear less than 1 times.", "Hello, nice to meet you.", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": AT_LEAST},
     "Name a fruit. The letter a should appear at least 4 times.", "Banana", False),  # three a's
    # ------------------------------------------------ language:response_language — langdetect code
    ("language:response_language", {"language": "fr"}, "Describe your evening. Answer in French only.",
     "Le chat dort sur le canapé pendant que nous préparons le dîner.", True),
    ("language:response_language", {"language": "fr"}, "Describe your evening. Answer in French only.",
     "The cat sleeps on the sofa while we cook dinner for everyone.", False),
    ("language:response_language", {"language": "es"}, "Describe your evening. Answer in Spanish only.",
     "El gato duerme en el sofá mientras preparamos la cena para todos.", True),
    ("language:response_language", {"language": "es"}, "Describe your evening. Answer in Spanish only.",
     "Der Hund schläft auf dem Sofa, während wir das Abendessen kochen.", False),
    # ------------------------------------------------ length_constraints:number_sentences — Punkt sentences
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS},
     "Describe a rainy day in less than 3 sentences.", "It rained. We stayed in.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS},
     "Describe a rainy day in less than 3 sentences.", "It rained. We stayed in. We read.", False),  # 3, not < 3
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": AT_LEAST},
     "Describe a rainy day in at least 3 sentences.", "It rained. We stayed in. We read.", True),  # exactly 3
    # Punkt knows "Mr." is an abbreviation: one sentence.
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST},
     "Tell me about Mr. Smith in at least 2 sentences.", "Mr. Smith left early.", False),
    # ------------------------------------------------ length_constraints:number_paragraphs — split on ***
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "Write 3 paragraphs separated by ***.", "Spring is here.\n***\nSummer follows.\n***\nThen autumn.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "Write 3 paragraphs separated by ***.", "Spring is here.\n***\nSummer follows.", False),
    # Empty pieces at either end are dropped: leading and trailing dividers are fine.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "Write 2 paragraphs separated by ***.", "***\nSpring is here.\n***\nSummer follows.\n***", True),
    # An empty paragraph in the middle fails outright.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "Write 2 paragraphs separated by ***.", "Spring is here.\n***\n\n***\nSummer follows.", False),
    # Blank lines are not dividers: this is one paragraph.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "Write 2 paragraphs separated by ***.", "Spring is here.\n\nSummer follows.", False),
    # Bold-italic "***Note***" is read as two dividers: pieces "", "Note", "keep it short." -> 2 paragraphs.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 1},
     "Write 1 paragraph.", "***Note*** keep it short.", False),
    # ------------------------------------------------ length_constraints:number_words — \w+ runs
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS},
     "Answer with less than 5 words: what do you like?", "I like green apples.", True),  # 4
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS},
     "Answer with less than 5 words: what do you like?", "I like green apples too.", False),  # exactly 5
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST},
     "Answer with at least 5 words: what do you like?", "I like green apples too.", True),  # exactly 5
    # "Don't" is two \w+ runs (Don, t): 5 words.
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST},
     "Answer with at least 5 words: any advice?", "Don't stop me now.", True),
    # Well, known, e, mail: 4 words, one short of 5.
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST},
     "Answer with at least 5 words: what is it?", "Well-known e-mail.", False),
    # ------------------------------------------------ length_constraints:nth_paragraph_first_word — "\n\n" paragraphs
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "however"},
     "Write 3 paragraphs; paragraph 2 must start with however.",
     "We planned a picnic.\n\nHowever, it rained all day.\n\nWe ate indoors.", True),  # "However," -> "however"
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "however"},
     "Write 3 paragraphs; paragraph 2 must start with however.",
     "We planned a picnic.\n\nBut it rained all day.\n\nWe ate indoors.", False),
    # Right first word, wrong paragraph count (3, not 2).
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "finally"},
     "Write 2 paragraphs; paragraph 2 must start with finally.", "We waited.\n\nFinally, the bus came.\n\nIt was late.",
     False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "finally"},
     "Write 2 paragraphs; paragraph 2 must start with finally.", "We waited.\n\nFinally, the bus came.", True),
    # Four newlines give pieces "We waited.", "", "Finally...": the count (2) skips the empty piece but the 2nd
    # piece looked up is the empty one, so it fails.
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "finally"},
     "Write 2 paragraphs; paragraph 2 must start with finally.", "We waited.\n\n\n\nFinally, the bus came.", False),
    # Leading quote is stripped and the word stops at the closing quote: "summer".
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "summer"},
     "Write 2 paragraphs; paragraph 1 must start with summer.", '"Summer" is my season.\n\nIt is warm.', True),
    # ------------------------------------------------ detectable_content:number_placeholders — [..] at least N
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Write a letter template with at least 2 placeholders like [name].",
     "Dear [name], your order ships to [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Write a letter template with at least 2 placeholders like [name].", "Dear [name], thanks for your order.", False),
    # Empty brackets still match \[.*?\]: three placeholders.
    ("detectable_content:number_placeholders", {"num_placeholders": 3},
     "Write a form with at least 3 placeholders.", "Name: [] Age: [] City: []", True),
    # Curly braces are not square brackets.
    ("detectable_content:number_placeholders", {"num_placeholders": 1},
     "Write a greeting with at least 1 placeholder.", "Hello {name}, welcome!", False),
    # ------------------------------------------------ detectable_content:postscript — marker, any case
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Write a note. End with a P.S.",
     "See you at six.\n\nP.S. Bring snacks.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Write a note. End with a P.S.",
     "See you at six.\n\nPS: Bring snacks.", False),  # "PS:" lacks the dots of p\.\s?s\.
    # Lower case and one space are allowed by p\.\s?s\.
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Write a note. End with a P.S.",
     "See you at six.\n\np. s. bring snacks.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Write a note. End with a P.P.S",
     "See you at six.\n\nP.S. Bring snacks.\nP.P.S Bring cups too.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Write a note. End with a P.P.S",
     "See you at six.\n\nP.S. Bring snacks.", False),
    # The pattern is not anchored to a line start: a marker mid-sentence counts.
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Write a note. End with a P.S.",
     "I will add a P.S. next time.", True),
    # ------------------------------------------------ detectable_format:number_bullet_lists — exactly N "*"/"-" lines
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "List 3 fruits as markdown bullets.",
     "* Apples\n* Pears\n* Plums", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "List 3 fruits as markdown bullets.",
     "* Apples\n* Pears", False),  # one short
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "List 3 fruits as markdown bullets.",
     "* Apples\n* Pears\n* Plums\n* Figs", False),  # one over: exactly N
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "List 3 fruits as markdown bullets.",
     "- Apples\n- Pears\n  * Plums", True),  # dashes and indented stars both count
    # "**Fruits**" starts with "**", which is not a bullet: 2 bullets.
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "List 2 fruits as markdown bullets.",
     "**Fruits**\n* Apples\n* Pears", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "List 2 fruits as markdown bullets.",
     "1. Apples\n2. Pears", False),  # numbered lists are not bullets
    # Any line starting with "-" counts, "-5 at night" too: 3 bullets, not 2.
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "List 2 temperatures as markdown bullets.",
     "- Low: 2 degrees\n- High: 9 degrees\n-5 at night", False),
    # ------------------------------------------------ detectable_format:constrained_response — one of 3 exact strings
    ("detectable_format:constrained_response", {}, "Is the sky blue? Answer with one of: My answer is yes./no./maybe.",
     "My answer is yes.", True),
    # Case-sensitive substring: "Yes" is not "yes".
    ("detectable_format:constrained_response", {}, "Is the sky blue? Answer with one of: My answer is yes./no./maybe.",
     "My answer is Yes.", False),
    # Contained anywhere in the response is enough.
    ("detectable_format:constrained_response", {}, "Will it rain? Answer with one of: My answer is yes./no./maybe.",
     "Hard to say. My answer is maybe. Check later.", True),
    ("detectable_format:constrained_response", {}, "Will it rain? Answer with one of: My answer is yes./no./maybe.",
     "My answer is no", False),  # no final period
    # ------------------------------------------------ detectable_format:number_highlighted_sections — at least N
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "Explain in steps; highlight at least 2 sections with *markdown*.", "First *boil water*, then *add tea*.", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "Explain in steps; highlight at least 2 sections with *markdown*.", "First *boil water*, then add tea.", False),
    # "**Bold**" counts once (as a double highlight; the single pattern only finds the empty "**" pairs).
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "Explain in steps; highlight at least 2 sections with *markdown*.", "**Boil water** then add tea.", False),
    # "*a*", "*b*" as singles plus "**c**" as a double: 3.
    ("detectable_format:number_highlighted_sections", {"num_highlights": 3},
     "Name three things; highlight at least 3 sections.", "*milk* and *sugar* and **lemon**", True),
    # Bullets are not highlights: a single-star span cannot cross a newline.
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1},
     "Name two things; highlight at least 1 section.", "* milk\n* sugar", False),
    # ------------------------------------------------ detectable_format:multiple_sections — "<spliter> <digits>"
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Write 2 sections marked Section X.", "Section 1\nThe plan.\nSection 2\nThe budget.", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3},
     "Write 3 sections marked Section X.", "Section 1\nThe plan.\nSection 2\nThe budget.", False),  # 2 < 3
    # At least N: 3 sections satisfy num_sections 2.
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Write 2 sections marked Section X.", "Section 1: plan.\nSection 2: budget.\nSection 3: risks.", True),
    # The spliter is matched case-sensitively: only "SECTION 1" counts.
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "Write 2 sections marked SECTION X.", "SECTION 1\nThe plan.\nSection 2\nThe budget.", False),
    # A number is required after the spliter.
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Write 2 sections marked Section X.", "Section one\nThe plan.\nSection two\nThe budget.", False),
    # ------------------------------------------------ detectable_format:json_format — json.loads after ``` fences
    ("detectable_format:json_format", {}, "Describe Ann as JSON.", '{"name": "Ann", "age": 30}', True),
    ("detectable_format:json_format", {}, "Describe Ann as JSON.", '```json\n{"name": "Ann", "age": 30}\n```', True),
    ("detectable_format:json_format", {}, "Describe Ann as JSON.", 'Here it is: {"name": "Ann", "age": 30}', False),
    ("detectable_format:json_format", {}, "Describe Ann as JSON.", "{'name': 'Ann', 'age': 30}", False),  # not JSON
    # Any JSON value parses, a bare number too.
    ("detectable_format:json_format", {}, "How old is Ann? Wrap the answer in JSON.", "30", True),
    # ------------------------------------------------ detectable_format:title — <<non-empty title>> on one line
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "<<Ode to Rain>>\nDrops on the roof.", True),
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "Ode to Rain\nDrops on the roof.", False),
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "<< >>\nDrops on the roof.", False),  # blank title
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "<<Ode to\nRain>>\nDrops on the roof.", False),  # a title cannot span lines
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "Here is my poem, <<Rain>>, in two lines.\nDrops on the roof.", True),  # anywhere in the text
    # ------------------------------------------------ combination:two_responses — two different, split by ******
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello there!\n******\nGood morning!", True),
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello there!\n******\nHello there!", False),  # the same response twice
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello!\n******\nHi!\n******\nHey!", False),  # three responses
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello!\n***\nHi!", False),  # three asterisks do not separate responses
    # An empty piece is allowed only at either end: a leading separator is fine.
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "******\nHello!\n******\nHi!", True),
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello!\n******\n\n******\nHi!", False),  # an empty response in the middle
    # Seven asterisks split into "Hello!\n" and "*\nHi!": two different non-empty pieces.
    ("combination:two_responses", {}, "Give two different greetings separated by ******.",
     "Hello!\n*******\nHi!", True),
    # ------------------------------------------------ combination:repeat_prompt — starts with prompt_to_repeat
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "Write a haiku about rain.\nDrops on the tin roof\nsoft drums in the quiet night\nthe garden drinks deep", True),
    # Case-insensitive prefix.
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "WRITE A HAIKU ABOUT RAIN.\nDrops on the tin roof", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "Sure! Write a haiku about rain.\nDrops on the tin roof", False),  # words before the repeat
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "Write a haiku about the rain.\nDrops on the tin roof", False),  # not word for word
    # prompt_to_repeat wins over the full prompt (which also holds the repeat instruction).
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "Write a haiku about rain. Drops on the tin roof", True),
    # ------------------------------------------------ startend:end_checker — ends with the phrase (quotes stripped)
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     "Rome is the capital of Italy. Any other questions?", True),
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     "Rome is the capital of Italy. Any other questions? Thanks!", False),  # words after the phrase
    # Surrounding double quotes are stripped before the check.
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     '"Rome is the capital of Italy. Any other questions?"', True),
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     "Rome is the capital of Italy. any other questions?", True),  # case-insensitive
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     "Rome is the capital of Italy. Any other questions", False),  # missing "?"
    # ------------------------------------------------ startend:quotation — first and last char are '"'
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     '"Hello there, friend."', True),
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     "Hello there, friend.", False),
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     '"Hello there, friend."  \n\n', True),  # trailing whitespace is stripped
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     "\u201cHello there, friend.\u201d", False),  # typographic quotes are not '"'
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     "'Hello there, friend.'", False),  # single quotes
    # Only the first and last characters matter: two quoted parts still "wrap" the response.
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     '"Hello." and "goodbye."', True),
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.", '"', False),
    # ------------------------------------------------ change_case:capital_word_frequency — word_tokenize, isupper
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST},
     "Name two space agencies; use at least 2 all-capital words.", "The NASA and ESA teams met.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": AT_LEAST},
     "Name space agencies; use at least 3 all-capital words.", "The NASA and ESA teams met.", False),  # 2 < 3
    # "I" is an all-capital word: 1 < 2.
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS},
     "Do you agree? Use less than 2 all-capital words.", "I think so.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS},
     "Where do you live? Use less than 2 all-capital words.", "I love NYC.", False),  # I, NYC: 2
    # Treebank splits "DON'T" into "DO" and "N'T": two capital words.
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST},
     "Give advice; use at least 2 all-capital words.", "DON'T stop.", True),
    # ------------------------------------------------ change_case:english_capital — isupper and English
    ("change_case:english_capital", {}, "Describe your plans in English, all capital letters.", ENGLISH_UPPER, True),
    ("change_case:english_capital", {}, "Describe your plans in English, all capital letters.",
     "THE WEATHER IS LOVELY TODAY, so we will walk to the park after lunch.", False),
    # Digits and punctuation have no case: still all upper case.
    ("change_case:english_capital", {}, "Describe your pets in English, all capital letters.",
     "I HAVE 3 CATS, 2 DOGS AND 1 FISH! THEY ALL LIVE WITH ME IN A SMALL HOUSE.", True),
    ("change_case:english_capital", {}, "Describe your plans in English, all capital letters.", GERMAN_UPPER,
     False),  # upper case, but German
    # ------------------------------------------------ change_case:english_lowercase — islower and English
    ("change_case:english_lowercase", {}, "Describe your plans in English, all lowercase.", ENGLISH_LOWER, True),
    ("change_case:english_lowercase", {}, "Describe your plans in English, all lowercase.",
     "The weather is lovely today, so we will walk to the park after lunch.", False),  # one capital
    # Digits, "&", "-" and "!" have no case.
    ("change_case:english_lowercase", {}, "Describe your pets in English, all lowercase.",
     "we have 3 cats, 2 dogs & 1 fish at home - that is plenty for a small flat!", True),
    ("change_case:english_lowercase", {}, "Describe a trip in English, all lowercase.",
     "i visited the eiffel tower in Paris last summer with my family.", False),  # "Paris"
    ("change_case:english_lowercase", {}, "Describe your plans in English, all lowercase.", GERMAN_LOWER,
     False),  # lower case, but German
    # ------------------------------------------------ punctuation:no_comma — no ASCII ","
    ("punctuation:no_comma", {}, "Name two colors without using commas.", "Red and blue are my favorites.", True),
    ("punctuation:no_comma", {}, "Name two colors without using commas.", "Red, and blue.", False),
    ("punctuation:no_comma", {}, "Name a big number without using commas.", "One thousand is 1,000.", False),
    # Only the ASCII comma is checked: the full-width "，" is not ",".
    ("punctuation:no_comma", {}, "Name two colors without using commas.", "红色\uff0c蓝色", True),
]

# (instruction id, kwargs, prompt, response, strict verdict, loose verdict)
LOOSE_CASES: list[tuple[str, dict[str, Any], str, str, bool, bool]] = [
    # Without the first line the response is '"Hello there."'.
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     'Sure, here it is:\n"Hello there."', False, True),
    # With every "*" removed: '"Hello there."'.
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     '**"Hello there."**', False, True),
    # Without the first line: all lowercase English.
    ("change_case:english_lowercase", {}, "Describe your plans in English, all lowercase.",
     "Sure! Here you go:\n" + ENGLISH_LOWER, False, True),
    # Without the last line the response ends with the phrase.
    ("startend:end_checker", ANY_QUESTIONS, "What is the capital of Italy? End with: Any other questions?",
     "Rome is the capital of Italy. Any other questions?\nHave a nice day!", False, True),
    # With "*" removed: "My answer is yes."
    ("detectable_format:constrained_response", {}, "Is the sky blue? Answer with one of: My answer is yes./no./maybe.",
     "My answer is **yes**.", False, True),
    ("detectable_format:json_format", {}, "Describe Ann as JSON.", 'Here is the JSON:\n{"name": "Ann"}', False, True),
    ("combination:repeat_prompt", {"prompt_to_repeat": HAIKU}, REPEAT,
     "Sure, I will repeat it first.\nWrite a haiku about rain.\nDrops on the tin roof", False, True),
    # Both ends removed: "Red and blue." (first and last lines hold the commas).
    ("punctuation:no_comma", {}, "Name two colors without using commas.",
     "Sure, here you go:\nRed and blue.\nHope that helps, friend!", False, True),
    # Every variant keeps a comma: removing one line or both ends still leaves "Red, blue." or the other comma.
    ("punctuation:no_comma", {}, "Name two colors without using commas.", "Sure, here:\nRed, blue.\nBye, now.", False,
     False),
    # No variant has a title (removing "*" does not make one).
    ("detectable_format:title", {}, "Write a poem with a title in <<double angular brackets>>.",
     "Sure:\n**Ode to Rain**\nDrops on the roof.", False, False),
    # Removing the first line cannot fix a quote that is never closed.
    ("startend:quotation", {}, "Wrap your entire response in double quotation marks. Greet me.",
     'Sure:\n"Hello there.\nBye.', False, False),
]

# Cases where we believe our reward departs from the official checker: (instruction id, response) -> reason.
KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {}


def _score(name: str, instruction_id: str, kwargs: dict[str, Any], prompt: str, response: str) -> list:
    fn = get_reward(name)
    return fn(
        [response],
        instruction_id_list=[[instruction_id]],
        kwargs=[[kwargs]],
        prompts=[[{"role": "user", "content": prompt}]],
    )


def _params() -> list:
    seen: Counter[str] = Counter()
    params = []
    for case in CASES:
        instruction_id, _, _, response, expected = case
        i = seen[instruction_id]
        seen[instruction_id] += 1
        reason = KNOWN_DISAGREEMENTS.get((instruction_id, response))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(
            pytest.param(*case, marks=marks, id=f"{instruction_id}-{i}-{'followed' if expected else 'not_followed'}")
        )
    return params


@pytest.mark.parametrize("instruction_id, kwargs, prompt, response, expected", _params())
def test_hand_checked_strict(instruction_id: str, kwargs: dict, prompt: str, response: str, expected: bool) -> None:
    assert _score("instruction_following", instruction_id, kwargs, prompt, response) == [1.0 if expected else 0.0]


@pytest.mark.parametrize(
    "instruction_id, kwargs, prompt, response, strict, loose",
    [
        pytest.param(*case, id=f"{case[0]}-{i}-{'loose_followed' if case[5] else 'loose_not_followed'}")
        for i, case in enumerate(LOOSE_CASES)
    ],
)
def test_hand_checked_loose(
    instruction_id: str, kwargs: dict, prompt: str, response: str, strict: bool, loose: bool
) -> None:
    assert _score("instruction_following", instruction_id, kwargs, prompt, response) == [1.0 if strict else 0.0]
    assert _score("instruction_following_loose", instruction_id, kwargs, prompt, response) == [1.0 if loose else 0.0]


def test_loose_never_below_strict_on_the_table() -> None:
    # Loose tries the response itself first, so a strictly followed case stays followed.
    for instruction_id, kwargs, prompt, response, expected in CASES:
        if expected:
            assert _score("instruction_following_loose", instruction_id, kwargs, prompt, response) == [1.0]


def test_table_covers_every_official_id_both_ways() -> None:
    official = sorted(name for name in IFEVAL_CHECKS if not name.startswith("train:"))
    assert len(official) == 25
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for instruction_id, _, _, _, expected in CASES:
        assert instruction_id in IFEVAL_CHECKS, instruction_id
        outcomes[instruction_id].append(expected)
    missing = [name for name in official if name not in outcomes]
    assert not missing, f"no cases for {missing}"
    thin = {name: len(verdicts) for name, verdicts in outcomes.items() if len(verdicts) < 3}
    assert not thin, f"fewer than 3 cases: {thin}"
    one_sided = [name for name, verdicts in outcomes.items() if set(verdicts) != {True, False}]
    assert not one_sided, f"only one outcome: {one_sided}"
