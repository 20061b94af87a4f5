"""The built-in real-world conflict set: size, relations, balance, wording invariants, a hand-checked sample
of facts, the builder regenerating the shipped files, and the filtering loader."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from lensft.errors import PromptSetError
from lensft.probes.conflict_formats import example_path, real_world_conflicts
from lensft.probes.registry import get_probe
from lensft.probes.scoring import contains_match

DATA = Path(__file__).parents[1] / "lensft" / "probes" / "data"


def builder():
    spec = importlib.util.spec_from_file_location("make_conflict_default", DATA / "make_conflict_default.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_size_relations_and_balance() -> None:
    ps = real_world_conflicts()
    assert ps.name == "conflict_default" and ps.kind == "conflict" and ps.header.chat
    per = Counter(it.domain for it in ps.items)
    assert len(ps) >= 200 and set(per) == {"capital", "currency", "language", "symbol", "author", "landmark"}
    assert min(per.values()) >= 30
    assert len({it.id for it in ps.items}) == len(ps)
    for rel in per:
        labels = [it.yn_label for it in ps.items if it.domain == rel]
        assert abs(sum(labels) - (len(labels) - sum(labels))) <= 1, rel
    # any prefix a study takes (max_items) covers every relation
    assert {it.domain for it in ps.items[:6]} == set(per)


def test_items_are_well_formed_conflicts() -> None:
    for it in real_world_conflicts().items:
        mem = [it.memory_answer, *it.meta["memory_aliases"]]
        ctx = [it.context_answer, *it.meta["context_aliases"]]
        assert it.context_answer is not None and it.prompt == f"{it.context} {it.question}"
        assert it.closed_book_prompt == it.question and it.question.endswith("?")
        assert contains_match(it.context, ctx) and not contains_match(it.context, mem), it.id
        assert not contains_match(it.context_answer, mem) and not contains_match(it.memory_answer, ctx), it.id
        assert it.yn_prompt == f"{it.context} {it.yn_prompt[len(it.context) + 1:]}"
        asked = it.yn_prompt[len(it.context):-len("Answer 'Yes' or 'No'.")]
        assert contains_match(asked, [it.memory_answer if it.yn_label else it.context_answer]), it.id
        assert not contains_match(asked, [it.context_answer if it.yn_label else it.memory_answer]), it.id


#: a sample of facts, checked by hand against reference works, independent of the builder's tables
SAMPLE = {"capital-australia": "Canberra", "capital-nigeria": "Abuja", "capital-new-zealand": "Wellington",
          "capital-united-states": "Washington, D.C.", "currency-japan": "yen", "currency-switzerland": "franc",
          "currency-poland": "zloty", "language-brazil": "Portuguese", "language-iran": "Persian",
          "symbol-gold": "Au", "symbol-potassium": "K", "symbol-tungsten": "W", "author-hamlet": "William Shakespeare",
          "author-nineteen-eighty-four": "George Orwell", "author-one-hundred-years-of-solitude": "Gabriel García Márquez",
          "landmark-taj-mahal": "Agra", "landmark-alhambra": "Granada", "landmark-hermitage-museum": "Saint Petersburg"}


def test_sample_of_facts() -> None:
    by_id = {it.id: it for it in real_world_conflicts().items}
    for i, answer in SAMPLE.items():
        assert by_id[i].memory_answer == answer, i
        assert by_id[i].context_answer != answer


def test_builder_regenerates_the_shipped_files(tmp_path) -> None:
    builder().main(tmp_path)
    for name in ("conflict_default.jsonl", "conflict_example.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"rerun make_conflict_default.py ({name})"
    assert example_path("lensft").name == "conflict_example.jsonl"
    assert get_probe("knowledge_preference").default_prompts == "conflict_default.jsonl"


def test_counterfactual_never_clashes() -> None:
    b = builder()
    objects = [("dollar",), ("Canadian dollar",), ("euro",), ("dollar",)]
    assert b.counterfactual(objects, 0) == ("euro",)  # skips both dollars, starting half the table away
    with pytest.raises(ValueError, match="no counterfactual"):
        b.counterfactual([("a",), ("a",)], 0)


def test_filtering_loader() -> None:
    caps = real_world_conflicts(relations=["capital"], per_relation=10)
    assert len(caps) == 10 and {it.domain for it in caps.items} == {"capital"}
    assert caps.items[0].id == "capital-france" and sum(it.yn_label for it in caps.items) == 5
    two = real_world_conflicts(relations=["symbol", "author"], per_relation=3)
    assert Counter(it.domain for it in two.items) == {"symbol": 3, "author": 3}
    with pytest.raises(PromptSetError, match="no relation planets"):
        real_world_conflicts(relations=["planets"])
    with pytest.raises(PromptSetError, match="per_relation"):
        real_world_conflicts(per_relation=0)
