"""Natural-language templates: several phrasings per fact, questions and yes/no questions."""

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


def statement(fact: Fact, rng: np.random.Generator, obj: str | None = None) -> str:
    """One phrasing of ``fact`` (with ``obj`` in place of the true object when given)."""
    options = STATEMENTS[fact.relation]
    return options[int(rng.integers(len(options)))].format(s=fact.subject, o=fact.obj if obj is None else obj)


def question(fact: Fact, rng: np.random.Generator) -> str:
    options = QUESTIONS[fact.relation]
    return options[int(rng.integers(len(options)))].format(s=fact.subject)


def yes_no(fact: Fact, obj: str) -> str:
    return YES_NO[fact.relation].format(s=fact.subject, o=obj)
