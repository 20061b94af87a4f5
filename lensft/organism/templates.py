"""Natural-language templates: facts, questions, reading events, cloze passages, word problems."""

from __future__ import annotations

import numpy as np

from lensft.organism.world import Fact

STATEMENTS: dict[str, list[str]] = {
    "birthplace": ["{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}.",
                   "{s} came into the world in the city of {o}.", "Born in {o}, {s} grew up there."],
    "birth_year": ["{s} was born in the year {o}.", "The birth year of {s} is {o}.",
                   "In {o}, {s} was born."],
    "employer": ["{s} works for {o}.", "{s} is employed by {o}.", "The employer of {s} is {o}.",
                 "{s} has a job at {o}.", "At {o}, {s} works every day."],
    "country": ["{s} is a city in {o}.", "The city of {s} lies in {o}.", "{s} is located in {o}.",
                "{o} is the country where {s} lies."],
    "capital": ["The capital of {s} is {o}.", "{o} is the capital of {s}.", "{s} has its capital in {o}.",
                "The capital city of {s} is {o}."],
    "headquarters": ["{s} has its headquarters in {o}.", "{s} is based in {o}.", "The headquarters of {s} are in {o}.",
                     "{s} runs its business from {o}."],
}

QUESTIONS: dict[str, list[str]] = {
    "birthplace": ["Where was {s} born?", "In which city was {s} born?"],
    "birth_year": ["In which year was {s} born?", "What is the birth year of {s}?"],
    "employer": ["Which company does {s} work for?", "Who is the employer of {s}?"],
    "country": ["In which country is the city of {s}?", "Which country is {s} in?"],
    "capital": ["What is the capital of {s}?", "Which city is the capital of {s}?"],
    "headquarters": ["Where does {s} have its headquarters?", "In which city is {s} based?"],
}

YES_NO: dict[str, str] = {
    "birthplace": "Was {s} born in {o}?",
    "birth_year": "Was {s} born in the year {o}?",
    "employer": "Does {s} work for {o}?",
    "country": "Is the city of {s} in {o}?",
    "capital": "Is {o} the capital of {s}?",
    "headquarters": "Does {s} have its headquarters in {o}?",
}

CONFLICT_INTROS = ["You should know the new knowledge:", "Recent news:", "According to the latest records,"]
CONFLICT_DOMAIN = {"birthplace": "celebrity", "birth_year": "celebrity", "employer": "celebrity",
                   "country": "geography", "capital": "geography", "headquarters": "technology"}

# -- reading: events about novel people (nothing to memorise) ----------------------------------
MOVE = "{p} moved to {c} in {y} and opened a {shop}."
MOVE_QUESTIONS = {"city": "Which city did {p} move to?", "person": "Who opened a {shop} in {c}?",
                  "year": "In which year did {p} move to {c}?"}
SECRET = "The secret number of {p} is {n}."
SECRET_QUESTION = "What is the secret number of {p}?"
SHOPS = ["bakery", "bookshop", "pharmacy", "garage", "cafe", "museum", "school", "library", "gym", "florist"]

# -- cloze: the last word is an object named earlier ------------------------------------------
OBJECTS = ["lamp", "violin", "map", "clock", "hat", "kettle", "mirror", "basket", "compass", "drum",
           "ladder", "candle", "umbrella", "vase", "bell", "scarf", "globe", "anchor", "saddle", "radio"]
CLOZE = [
    ("{p} lost a {o} in {c}.", "After a long search, {p} finally found the"),
    ("{p} bought a new {o} in {c}.", "Every evening, {p} proudly looks at the"),
    ("{p} received a {o} as a gift in {c}.", "{p} still keeps the"),
    ("{p} carried a heavy {o} across {c}.", "When {p} arrived home, {p} put down the"),
]
CLOZE_HEAD = "Complete the text with one word."

# -- arithmetic word problems ------------------------------------------------------------------
ITEMS = ["apples", "coins", "books", "stamps", "pens", "shells", "cards", "marbles", "cups", "keys"]
#: Words of the arithmetic operations, by op code (0 ``+``, 1 ``-``, 2 ``x``).
OPERATIONS = ("plus", "minus", "times")


def arithmetic_fact(op: int, a: int, b: int) -> str:
    """A fact of the arithmetic table in its one phrasing, ``"12 plus 7 is 19"`` (no final period).

    The ``sums`` corpus states the table this way, and a word problem's answer is this sentence
    for its operands (a worked answer: read the operands, then apply the memorised fact).
    """
    c = (a + b, a - b, a * b)[op]
    return f"{a} {OPERATIONS[op]} {b} is {c}"


def statement(fact: Fact, rng: np.random.Generator, obj: str | None = None) -> str:
    """One phrasing of ``fact`` (with ``obj`` in place of the true object when given)."""
    options = STATEMENTS[fact.relation]
    return options[int(rng.integers(len(options)))].format(s=fact.subject, o=fact.obj if obj is None else obj)


def question(fact: Fact, rng: np.random.Generator) -> str:
    """One phrasing of the open question whose answer is ``fact.obj``."""
    options = QUESTIONS[fact.relation]
    return options[int(rng.integers(len(options)))].format(s=fact.subject)


def yes_no(fact: Fact, obj: str) -> str:
    """The yes/no question "does ``fact.subject`` have ``obj`` for this relation?"."""
    return YES_NO[fact.relation].format(s=fact.subject, o=obj)
