"""Build ``conflict_default.jsonl``, lensft's real-world knowledge-conflict set, and ``conflict_example.jsonl``.

    python lensft/probes/data/make_conflict_default.py

Six relations, each a table of true facts (subject, object, aliases of the object) checked by hand
for 2025: country capitals, country currencies, official languages (only countries whose
constitution or language law names one national official language), chemical symbols, authors of
famous books and the cities of landmarks. Facts whose answer changed recently or is disputed
(e.g. the capitals of Bolivia, Kazakhstan, Indonesia and Egypt, whose government moved to its new
administrative capital; Croatia's and Bulgaria's currencies; Iran's, which is being redenominated; the
official languages of Mali, Mexico or the United States) are left out on purpose.

Every fact becomes one ``conflict`` item:

- ``context``: the fact restated with a **counterfactual object**, the object of another fact of
  the same relation (the first fact, cyclically from half the table away, whose object and
  aliases share no whole word with this one's; Longpre et al. 2021's same-type substitution);
- ``prompt`` = context + question; ``closed_book_prompt`` = the question alone;
- ``memory_answer`` = the true object, ``context_answer`` = the counterfactual one;
  ``meta.memory_aliases`` / ``meta.context_aliases`` hold accepted spellings (``Kiev``, surnames of
  authors, currency names + "s") used when matching generated answers;
- a yes/no form ``"{context} {yes/no question} Answer 'Yes' or 'No'."`` that asks about the true
  object on even positions of each relation (``yn_label`` = True: memory says yes) and about the
  counterfactual object on odd positions (``yn_label`` = False), so labels are balanced within
  every relation.

Items are interleaved across relations (round robin), so any prefix of the file (a study's
``max_items``) covers every relation with near-balanced yes/no labels. The example file holds the
first 8 items. Deterministic: no randomness anywhere.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lensft.prompts import ConflictItem, PromptSet, make_prompt_set
from lensft.prompts.io import write_prompt_set

VERSION = "2"
YN = "Answer 'Yes' or 'No'."

# (subject, object, aliases of the object)
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("the United Kingdom", "London"), ("Ireland", "Dublin"), ("Belgium", "Brussels"), ("Austria", "Vienna"),
    ("Poland", "Warsaw"), ("the Czech Republic", "Prague"), ("Hungary", "Budapest"), ("Greece", "Athens"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
    ("Iceland", "Reykjavik", "Reykjavík"), ("Russia", "Moscow"), ("Ukraine", "Kyiv", "Kiev"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Slovakia", "Bratislava"),
    ("Lithuania", "Vilnius"), ("Latvia", "Riga"), ("Estonia", "Tallinn"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("North Korea", "Pyongyang"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("the Philippines", "Manila"), ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"),
    ("Afghanistan", "Kabul"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"),
    ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Turkey", "Ankara"),
    ("Kenya", "Nairobi"), ("Ethiopia", "Addis Ababa"), ("Nigeria", "Abuja"), ("Ghana", "Accra"),
    ("Morocco", "Rabat"), ("Algeria", "Algiers"), ("Senegal", "Dakar"), ("Canada", "Ottawa"),
    ("the United States", "Washington, D.C.", "Washington"), ("Mexico", "Mexico City"), ("Cuba", "Havana"),
    ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Venezuela", "Caracas"), ("Chile", "Santiago"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Brazil", "Brasília", "Brasilia"),
    ("India", "New Delhi"),
]

CURRENCIES = [
    ("Japan", "yen"), ("the United States", "dollar"), ("Canada", "dollar"), ("Australia", "dollar"),
    ("New Zealand", "dollar"), ("the United Kingdom", "pound", "pound sterling"), ("Egypt", "pound"),
    ("India", "rupee"), ("Pakistan", "rupee"), ("Nepal", "rupee"), ("Sri Lanka", "rupee"), ("Mexico", "peso"),
    ("Argentina", "peso"), ("Chile", "peso"), ("Colombia", "peso"), ("the Philippines", "peso", "piso"),
    ("Brazil", "real", "reais"), ("South Africa", "rand"), ("Nigeria", "naira"), ("Kenya", "shilling"),
    ("Uganda", "shilling"), ("Tanzania", "shilling"), ("Sweden", "krona", "kronor"), ("Norway", "krone", "kroner"),
    ("Denmark", "krone", "kroner"), ("Switzerland", "franc"), ("Poland", "zloty", "złoty"), ("Hungary", "forint"),
    ("the Czech Republic", "koruna"), ("Turkey", "lira"), ("Saudi Arabia", "riyal"), ("Qatar", "riyal"),
    ("the United Arab Emirates", "dirham"), ("Morocco", "dirham"), ("Kuwait", "dinar"), ("Jordan", "dinar"),
    ("Iraq", "dinar"), ("Algeria", "dinar"), ("Tunisia", "dinar"), ("Serbia", "dinar"), ("Thailand", "baht"),
    ("Vietnam", "dong", "đồng"), ("Indonesia", "rupiah"), ("Malaysia", "ringgit"), ("Israel", "shekel", "new shekel"),
    ("Romania", "leu", "lei"), ("Ukraine", "hryvnia"), ("Bangladesh", "taka"), ("Ethiopia", "birr"),
    ("Ghana", "cedi"), ("Zambia", "kwacha"), ("Botswana", "pula"), ("Russia", "ruble", "rouble"),
    ("South Korea", "won"), ("Germany", "euro"), ("France", "euro"), ("Italy", "euro"), ("Spain", "euro"),
    ("the Netherlands", "euro"), ("Greece", "euro"),
]

LANGUAGES = [
    ("France", "French"), ("Germany", "German"), ("Austria", "German"), ("Italy", "Italian"), ("Spain", "Spanish"),
    ("Portugal", "Portuguese"), ("Brazil", "Portuguese"), ("Angola", "Portuguese"), ("Mozambique", "Portuguese"),
    ("Poland", "Polish"), ("Hungary", "Hungarian"), ("Slovakia", "Slovak", "Slovakian"), ("Romania", "Romanian"),
    ("Bulgaria", "Bulgarian"), ("Turkey", "Turkish"), ("Russia", "Russian"), ("Ukraine", "Ukrainian"),
    ("Lithuania", "Lithuanian"), ("Latvia", "Latvian"), ("Estonia", "Estonian"), ("Iceland", "Icelandic"),
    ("Croatia", "Croatian"), ("Serbia", "Serbian"), ("Albania", "Albanian"), ("Armenia", "Armenian"),
    ("Azerbaijan", "Azerbaijani", "Azeri"), ("South Korea", "Korean"), ("Vietnam", "Vietnamese"),
    ("Indonesia", "Indonesian", "Bahasa Indonesia"), ("Iran", "Persian", "Farsi"), ("Saudi Arabia", "Arabic"),
    ("Egypt", "Arabic"), ("Syria", "Arabic"), ("Jordan", "Arabic"), ("Colombia", "Spanish"), ("Cuba", "Spanish"),
    ("Costa Rica", "Spanish"), ("Guatemala", "Spanish"), ("Honduras", "Spanish"), ("Panama", "Spanish"),
    ("the Dominican Republic", "Spanish"), ("Nepal", "Nepali", "Nepalese"), ("Mongolia", "Mongolian"),
    ("Uzbekistan", "Uzbek"), ("Cambodia", "Khmer"), ("Laos", "Lao", "Laotian"), ("Sweden", "Swedish"),
    ("the Netherlands", "Dutch"),
]

SYMBOLS = [
    ("hydrogen", "H"), ("lithium", "Li"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"), ("fluorine", "F"),
    ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"),
    ("phosphorus", "P"), ("chlorine", "Cl"), ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"),
    ("titanium", "Ti"), ("chromium", "Cr"), ("manganese", "Mn"), ("iron", "Fe"), ("cobalt", "Co"), ("nickel", "Ni"),
    ("copper", "Cu"), ("zinc", "Zn"), ("selenium", "Se"), ("bromine", "Br"), ("krypton", "Kr"), ("strontium", "Sr"),
    ("silver", "Ag"), ("tin", "Sn"), ("xenon", "Xe"), ("barium", "Ba"), ("tungsten", "W"), ("platinum", "Pt"),
    ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"), ("radon", "Rn"), ("uranium", "U"), ("plutonium", "Pu"),
    ("boron", "B"),
]

AUTHORS = [
    ("Pride and Prejudice", "Jane Austen", "Austen"), ("Nineteen Eighty-Four", "George Orwell", "Orwell"),
    ("War and Peace", "Leo Tolstoy", "Tolstoy"), ("Crime and Punishment", "Fyodor Dostoevsky", "Dostoevsky", "Dostoyevsky"),
    ("Hamlet", "William Shakespeare", "Shakespeare"), ("Don Quixote", "Miguel de Cervantes", "Cervantes"),
    ("Moby-Dick", "Herman Melville", "Melville"), ("The Great Gatsby", "F. Scott Fitzgerald", "Scott Fitzgerald", "Fitzgerald"),
    ("To Kill a Mockingbird", "Harper Lee"), ("The Adventures of Tom Sawyer", "Mark Twain", "Twain"),
    ("Great Expectations", "Charles Dickens", "Dickens"), ("Jane Eyre", "Charlotte Brontë", "Charlotte Bronte"),
    ("Wuthering Heights", "Emily Brontë", "Emily Bronte"), ("Frankenstein", "Mary Shelley"),
    ("Dracula", "Bram Stoker", "Stoker"), ("The Odyssey", "Homer"), ("Les Misérables", "Victor Hugo", "Hugo"),
    ("The Old Man and the Sea", "Ernest Hemingway", "Hemingway"),
    ("One Hundred Years of Solitude", "Gabriel García Márquez", "Gabriel Garcia Marquez", "García Márquez",
     "Garcia Marquez"),
    ("The Catcher in the Rye", "J. D. Salinger", "Salinger"), ("Brave New World", "Aldous Huxley", "Huxley"),
    ("The Hobbit", "J. R. R. Tolkien", "Tolkien"),
    ("Harry Potter and the Philosopher's Stone", "J. K. Rowling", "Rowling"),
    ("The Divine Comedy", "Dante Alighieri", "Dante"), ("Faust", "Johann Wolfgang von Goethe", "Goethe"),
    ("The Metamorphosis", "Franz Kafka", "Kafka"), ("the novel Ulysses", "James Joyce", "Joyce"),
    ("Madame Bovary", "Gustave Flaubert", "Flaubert"), ("On the Origin of Species", "Charles Darwin", "Darwin"),
    ("A Brief History of Time", "Stephen Hawking", "Hawking"),
    ("Alice's Adventures in Wonderland", "Lewis Carroll", "Carroll"),
    ("Treasure Island", "Robert Louis Stevenson", "Stevenson"),
    ("The Picture of Dorian Gray", "Oscar Wilde", "Wilde"), ("Robinson Crusoe", "Daniel Defoe", "Defoe"),
    ("Gulliver's Travels", "Jonathan Swift", "Swift"),
    ("The Little Prince", "Antoine de Saint-Exupéry", "Antoine de Saint-Exupery", "Saint-Exupéry", "Saint-Exupery"),
    ("The Call of the Wild", "Jack London"), ("The Grapes of Wrath", "John Steinbeck", "Steinbeck"),
    ("Lolita", "Vladimir Nabokov", "Nabokov"), ("The Count of Monte Cristo", "Alexandre Dumas", "Dumas"),
    ("Fahrenheit 451", "Ray Bradbury", "Bradbury"), ("Around the World in Eighty Days", "Jules Verne", "Verne"),
    ("The War of the Worlds", "H. G. Wells", "Wells"), ("Murder on the Orient Express", "Agatha Christie", "Christie"),
    ("The Prince", "Niccolò Machiavelli", "Niccolo Machiavelli", "Machiavelli"), ("Candide", "Voltaire"),
    ("The Canterbury Tales", "Geoffrey Chaucer", "Chaucer"), ("Paradise Lost", "John Milton", "Milton"),
    ("Little Women", "Louisa May Alcott", "Alcott"), ("The Scarlet Letter", "Nathaniel Hawthorne", "Hawthorne"),
    ("Mrs Dalloway", "Virginia Woolf", "Woolf"), ("Doctor Zhivago", "Boris Pasternak", "Pasternak"),
    ("Things Fall Apart", "Chinua Achebe", "Achebe"), ("The Jungle Book", "Rudyard Kipling", "Kipling"),
    ("Heart of Darkness", "Joseph Conrad", "Conrad"), ("Lord of the Flies", "William Golding", "Golding"),
    ("Anna Karenina", "Leo Tolstoy", "Tolstoy"), ("Oliver Twist", "Charles Dickens", "Dickens"),
    ("The Iliad", "Homer"), ("Romeo and Juliet", "William Shakespeare", "Shakespeare"),
]

LANDMARKS = [
    ("the Eiffel Tower", "Paris"), ("the Colosseum", "Rome"), ("Big Ben", "London"),
    ("the Statue of Liberty", "New York City", "New York"), ("the Brandenburg Gate", "Berlin"),
    ("the Sagrada Família", "Barcelona"), ("the Parthenon", "Athens"), ("the Taj Mahal", "Agra"),
    ("the Forbidden City", "Beijing"), ("the Golden Gate Bridge", "San Francisco"),
    ("the Christ the Redeemer statue", "Rio de Janeiro", "Rio"), ("the Burj Khalifa", "Dubai"),
    ("Saint Basil's Cathedral", "Moscow"), ("Hagia Sophia", "Istanbul"), ("the Louvre", "Paris"),
    ("the Alhambra", "Granada"), ("the CN Tower", "Toronto"), ("the Space Needle", "Seattle"),
    ("the Atomium", "Brussels"), ("the Little Mermaid statue", "Copenhagen"), ("the Prado Museum", "Madrid"),
    ("the Uffizi Gallery", "Florence"), ("the Rijksmuseum", "Amsterdam"), ("Red Square", "Moscow"),
    ("the Hollywood Sign", "Los Angeles"), ("the Charles Bridge", "Prague"), ("the Trevi Fountain", "Rome"),
    ("Schönbrunn Palace", "Vienna"), ("Table Mountain", "Cape Town"), ("the Empire State Building", "New York City", "New York"),
    ("Buckingham Palace", "London"), ("the Blue Mosque", "Istanbul"), ("the Gateway of India", "Mumbai"),
    ("the Golden Temple", "Amritsar"), ("the Hermitage Museum", "Saint Petersburg", "St. Petersburg"),
    ("the Alamo", "San Antonio"), ("the Liberty Bell", "Philadelphia"), ("Marina Bay Sands", "Singapore"),
    ("the Shwedagon Pagoda", "Yangon", "Rangoon"),
]


@dataclass(frozen=True)
class Relation:
    """How one relation's facts are worded (``s`` = subject, ``o`` = object)."""

    name: str
    facts: list[tuple[str, ...]]
    statement: Callable[[str, str], str]
    question: Callable[[str], str]
    yn_question: Callable[[str, str], str]
    plural_alias: bool = False  # accept the object + "s" ("dollars") when matching answers


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


RELATIONS = [
    Relation("capital", CAPITALS, lambda s, o: f"The capital of {s} is {o}.", lambda s: f"What is the capital of {s}?",
             lambda s, o: f"Is the capital of {s} {o}?"),
    Relation("currency", CURRENCIES, lambda s, o: f"The currency of {s} is the {o}.",
             lambda s: f"What is the currency of {s}?", lambda s, o: f"Is the currency of {s} the {o}?", True),
    Relation("language", LANGUAGES, lambda s, o: f"The official language of {s} is {o}.",
             lambda s: f"What is the official language of {s}?", lambda s, o: f"Is the official language of {s} {o}?"),
    Relation("symbol", SYMBOLS, lambda s, o: f"The chemical symbol of {s} is {o}.",
             lambda s: f"What is the chemical symbol of {s}?", lambda s, o: f"Is the chemical symbol of {s} {o}?"),
    Relation("author", AUTHORS, lambda s, o: f"{_cap(s)} was written by {o}.", lambda s: f"Who wrote {s}?",
             lambda s, o: f"Was {s} written by {o}?"),
    Relation("landmark", LANDMARKS, lambda s, o: f"{_cap(s)} is in {o}.", lambda s: f"In which city is {s}?",
             lambda s, o: f"Is {s} in {o}?"),
]


def _words(s: str) -> str:
    """Lowercase, punctuation to spaces, single spaces, padded: for whole-word containment."""
    return " " + " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split()) + " "


def _clash(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when any spelling of one answer occurs as whole words in a spelling of the other."""
    return any(_words(x) in _words(y) or _words(y) in _words(x) for x in a for y in b)


def counterfactual(objects: list[tuple[str, ...]], i: int) -> tuple[str, ...]:
    """The object (with aliases) of the first fact from ``i + n // 2`` on, cyclically, that does not clash with
    fact ``i``'s (half the table away, so runs of facts sharing an object get different counterfactuals)."""
    n = len(objects)
    for k in range(n // 2, n // 2 + n):
        cand = objects[(i + k) % n]
        if not _clash(objects[i], cand):
            return cand
    raise ValueError(f"no counterfactual for {objects[i]}")


def _slug(s: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower().removeprefix("the ")).strip("-")


def relation_items(rel: Relation) -> list[ConflictItem]:
    """One conflict item per fact of a relation (module docstring)."""
    objects = [tuple(f[1:]) + ((f[1] + "s",) if rel.plural_alias else ()) for f in rel.facts]
    items = []
    for i, (subject, *_ignored) in enumerate(rel.facts):
        mem, ctx = objects[i], counterfactual(objects, i)
        context, question = rel.statement(subject, ctx[0]), rel.question(subject)
        asks_memory = i % 2 == 0
        yn = f"{context} {rel.yn_question(subject, mem[0] if asks_memory else ctx[0])} {YN}"
        items.append(ConflictItem(
            id=f"{rel.name}-{_slug(subject)}", domain=rel.name, context=context, question=question,
            prompt=f"{context} {question}", closed_book_prompt=question, memory_answer=mem[0], context_answer=ctx[0],
            yn_prompt=yn, yn_label=asks_memory,
            meta={"relation": rel.name, "subject": subject, "memory_aliases": list(mem[1:]),
                  "context_aliases": list(ctx[1:])}))
    return items


def build() -> list[ConflictItem]:
    """Every relation's items, interleaved round robin (so prefixes cover every relation)."""
    per = [relation_items(r) for r in RELATIONS]
    out = [lists[k] for k in range(max(map(len, per))) for lists in per if k < len(lists)]
    ids = [it.id for it in out]
    assert len(set(ids)) == len(ids), "duplicate item ids"
    return out


def prompt_sets() -> tuple[PromptSet, PromptSet]:
    """(the full real-world set, the 8-item example)."""
    items = build()
    counts = ", ".join(f"{r.name} {len(r.facts)}" for r in RELATIONS)
    full = make_prompt_set("conflict_default", VERSION, "conflict", items, chat=True,
                           description=f"real-world knowledge conflicts, {len(items)} true facts with counterfactual "
                                       f"contexts ({counts}); balanced yes/no labels")
    example = make_prompt_set("conflict_example", VERSION, "conflict", items[:8], chat=True,
                              description="the first 8 items of the built-in real-world conflict set")
    return full, example


def main(out_dir: Path) -> None:
    full, example = prompt_sets()
    write_prompt_set(full, out_dir / "conflict_default.jsonl")
    write_prompt_set(example, out_dir / "conflict_example.jsonl")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
