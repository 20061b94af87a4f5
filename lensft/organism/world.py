"""The synthetic world: countries, cities, companies and people with consistent attributes.

Every city lies in one country, every country's capital is one of its own cities, every company
has its headquarters in a city and every person has a birthplace city, a birth year and an
employer. Facts are ``(subject, relation, object)`` triples; :mod:`lensft.organism.templates`
turns them into sentences and questions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from lensft.organism.config import WorldConfig

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "st", "tr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
_CODAS = ["", "", "n", "r", "s", "l", "m", "th"]
_COUNTRY_SUFFIXES = ["ia", "land", "stan", "ora", "ovia"]
_CITY_SUFFIXES = ["burg", "ton", "ville", "port", "mar", "holm", "ford", "dale"]
_COMPANY_SUFFIXES = ["Labs", "Works", "Systems", "Foods", "Motors", "Mining", "Bank", "Media"]

RELATIONS = ("birthplace", "birth_year", "employer", "country", "capital", "headquarters")
SUBJECT_KIND = {"birthplace": "person", "birth_year": "person", "employer": "person",
                "country": "city", "capital": "country", "headquarters": "company"}


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

    def to_json(self) -> dict:
        d = asdict(self)
        d["heldout"] = sorted(self.heldout)
        return d

    def check(self) -> list[str]:
        """Consistency problems (empty when the world is consistent)."""
        problems: list[str] = []
        names = self.countries + self.cities + self.companies + self.people
        if len(set(names)) != len(names):
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


def _word(rng: np.random.Generator, n_syllables: int) -> str:
    parts = [_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(n_syllables)]
    return "".join(parts) + _CODAS[rng.integers(len(_CODAS))]


def _unique(rng: np.random.Generator, n: int, make, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = make()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def make_world(cfg: WorldConfig, seed: int) -> World:
    """Generate a consistent world from ``seed`` (same seed, same world)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    if cfg.n_cities < cfg.n_countries:
        raise ValueError("n_cities must be at least n_countries (every country needs a capital)")
    taken: set[str] = set()
    countries = _unique(rng, cfg.n_countries,
                        lambda: _word(rng, 1).capitalize() + _COUNTRY_SUFFIXES[rng.integers(len(_COUNTRY_SUFFIXES))], taken)
    cities = _unique(rng, cfg.n_cities,
                     lambda: _word(rng, 1).capitalize() + _CITY_SUFFIXES[rng.integers(len(_CITY_SUFFIXES))], taken)
    companies = _unique(rng, cfg.n_companies,
                        lambda: _word(rng, 2).capitalize() + " " + _COMPANY_SUFFIXES[rng.integers(len(_COMPANY_SUFFIXES))], taken)
    first = _unique(rng, max(8, cfg.n_people // 3), lambda: _word(rng, 2).capitalize(), taken)
    last = _unique(rng, max(8, cfg.n_people // 3), lambda: _word(rng, 2).capitalize(), taken)
    people = _unique(rng, cfg.n_people, lambda: f"{first[rng.integers(len(first))]} {last[rng.integers(len(last))]}", taken)

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
