"""The synthetic world: countries, cities, companies and people with consistent attributes.

Every city lies in one country, every country's capital is one of its own cities, every company
has its headquarters in a city and every person has a birthplace city, a birth year and an
employer. Facts are ``(subject, relation, object)`` triples; :mod:`lensft.organism.templates`
turns them into sentences and questions. Names are runs of syllables (:mod:`lensft.organism.names`).

A share of the subjects is *held out*: their facts are stated in the pretraining corpus like
every other fact, but no training example ever asks about them, so closed-book questions about
them test recall of facts learnt from text alone (the evaluation's ``fact_recall`` set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from lensft.organism import names
from lensft.organism.config import WorldConfig

COMPANY_SUFFIXES = ("Labs", "Works", "Systems", "Foods", "Motors", "Mining", "Bank", "Media")


@dataclass(frozen=True)
class Fact:
    """One piece of parametric knowledge: ``subject`` ``relation`` ``obj``."""

    subject: str
    relation: str
    obj: str
    heldout: bool = False


@dataclass
class World:
    """The entities and their attributes; every name is unique across the world."""

    countries: list[str]
    cities: list[str]
    companies: list[str]
    people: list[str]
    city_country: dict[str, str]
    capital: dict[str, str]
    headquarters: dict[str, str]
    birthplace: dict[str, str]
    birth_year: dict[str, int]
    employer: dict[str, str]
    heldout: set[str] = field(default_factory=set)

    def facts(self) -> list[Fact]:
        """All facts, in a fixed order."""
        out: list[Fact] = []
        for p in self.people:
            h = p in self.heldout
            out += [Fact(p, "birthplace", self.birthplace[p], h), Fact(p, "birth_year", str(self.birth_year[p]), h),
                    Fact(p, "employer", self.employer[p], h)]
        out += [Fact(c, "country", self.city_country[c], c in self.heldout) for c in self.cities]
        out += [Fact(c, "capital", self.capital[c], c in self.heldout) for c in self.countries]
        out += [Fact(c, "headquarters", self.headquarters[c], c in self.heldout) for c in self.companies]
        return out

    def candidates(self, relation: str) -> list[str]:
        """Every value ``relation`` can take (the pool counterfactuals are drawn from)."""
        if relation in ("birthplace", "capital", "headquarters"):
            return list(self.cities)
        if relation == "country":
            return list(self.countries)
        if relation == "employer":
            return list(self.companies)
        return [str(y) for y in sorted(set(self.birth_year.values()))]

    def words(self) -> set[str]:
        """Every word of every name (novel names use none of them)."""
        return {w for n in self.countries + self.cities + self.companies + self.people for w in n.split()}

    def to_json(self) -> dict:
        """A JSON-able dict (held-out subjects sorted)."""
        d = asdict(self)
        d["heldout"] = sorted(self.heldout)
        return d

    def check(self) -> list[str]:
        """Consistency problems (empty when the world is consistent)."""
        problems: list[str] = []
        all_names = self.countries + self.cities + self.companies + self.people
        if len(set(all_names)) != len(all_names):
            problems.append("names are not unique")
        for country, cap in self.capital.items():
            if self.city_country.get(cap) != country:
                problems.append(f"capital {cap} of {country} lies in {self.city_country.get(cap)}")
        if set(self.city_country.values()) - set(self.countries):
            problems.append("a city lies in an unknown country")
        if set(self.capital) != set(self.countries):
            problems.append("not every country has exactly one capital")
        for p in self.people:
            if self.birthplace[p] not in self.city_country or self.employer[p] not in self.headquarters:
                problems.append(f"{p} has an unknown birthplace or employer")
        return problems


def _unique(n: int, make: Callable[[], str], taken: set[str]) -> list[str]:
    """``n`` names from ``make`` whose words are all new (added to ``taken``)."""
    out: list[str] = []
    while len(out) < n:
        name = make()
        ws = name.split()
        if not any(w in taken for w in ws) and len(set(ws)) == len(ws):
            taken.update(ws)
            out.append(name)
    return out


def make_world(cfg: WorldConfig, seed: int) -> World:
    """Generate a consistent world from ``seed`` (same seed, same world)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    if cfg.n_cities < cfg.n_countries:
        raise ValueError("n_cities must be at least n_countries (every country needs a capital)")
    taken = {s for s in COMPANY_SUFFIXES}
    countries = _unique(cfg.n_countries, lambda: names.word(rng, 2), taken)
    cities = _unique(cfg.n_cities, lambda: names.word(rng, 3), taken)
    companies = _unique(cfg.n_companies, lambda: names.word(rng, 2), taken)
    companies = [f"{c} {COMPANY_SUFFIXES[i % len(COMPANY_SUFFIXES)]}" for i, c in enumerate(companies)]
    people = _unique(cfg.n_people, lambda: names.person(rng), taken)

    # cities 0..n_countries-1 are the capitals; the rest are spread over the countries
    city_country = {c: countries[i] if i < len(countries) else countries[int(rng.integers(len(countries)))]
                    for i, c in enumerate(cities)}
    capital = {countries[i]: cities[i] for i in range(len(countries))}
    headquarters = {c: cities[int(rng.integers(len(cities)))] for c in companies}
    birthplace = {p: cities[int(rng.integers(len(cities)))] for p in people}
    birth_year = {p: int(rng.integers(1900, 2000)) for p in people}
    employer = {p: companies[int(rng.integers(len(companies)))] for p in people}

    heldout: set[str] = set()
    for group in (people, cities, countries, companies):
        k = max(1, round(cfg.heldout_fraction * len(group)))
        heldout.update(str(x) for x in rng.choice(np.array(group, dtype=object), size=k, replace=False))
    return World(countries, cities, companies, people, city_country, capital, headquarters,
                 birthplace, birth_year, employer, heldout)
