"""Positive controls of the knowledge-preference probe on a real pretrained model (SmolLM2-135M-Instruct).

One probe run (about 12k tokens through the model) on 16 real capitals, 10 capitals of fabricated countries
(facts no model can know, worded exactly like the real ones) and 2 items of every other relation of the
built-in set. Measured values on
the whole built-in set are in the README (knowledge section), with the command that reproduces them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lensft.handle import load_model
from lensft.probes.conflict_formats import real_world_conflicts
from lensft.probes.knowledge import KnowledgeSettings, score_knowledge
from lensft.probes.knowledge_metrics import knowledge_metrics
from lensft.prompts import make_prompt_set
from lensft.results import ProbeResult

pytestmark = pytest.mark.real

#: invented countries and capitals (checked: none is a country, and none of the capitals a city of note)
FABRICATED = [("Veldoria", "Quastor"), ("Quorvania", "Fennaril"), ("Tarrowen", "Yoruval"), ("Velquaria", "Drevask"),
              ("Calvenia", "Tiskaro"), ("Zentharia", "Korvath"), ("Bramoria", "Vessarin"), ("Dravinia", "Tolmere"),
              ("Eskaria", "Oltrana"), ("Morvantis", "Caldris")]


def fabricated_items():
    path = Path(__file__).parents[1] / "lensft" / "probes" / "data" / "make_conflict_default.py"
    spec = importlib.util.spec_from_file_location("make_conflict_default", path)
    b = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = b
    spec.loader.exec_module(b)  # type: ignore[union-attr]
    capital = next(r for r in b.RELATIONS if r.name == "capital")
    rel = b.Relation("fabricated", FABRICATED, capital.statement, capital.question, capital.yn_question)
    return b.relation_items(rel)


@pytest.fixture(scope="module")
def smol_result(smollm2) -> ProbeResult:
    real = real_world_conflicts(per_relation=2).items + real_world_conflicts(["capital"], per_relation=16).items[2:]
    ps = make_prompt_set("control", "1", "conflict", real + fabricated_items(), chat=True)
    return score_knowledge(load_model(smollm2), ps, KnowledgeSettings(max_new_tokens=14, batch_size=12, lens=False))


def ids(res: ProbeResult, domain: str) -> list[str]:
    return [r["id"] for r in res.records if r["domain"] == domain]


def test_own_memory_knows_real_capitals_and_not_fabricated_ones(smol_result) -> None:
    cap, fab = (knowledge_metrics(smol_result.records, ids(smol_result, d)) for d in ("capital", "fabricated"))
    assert cap["known_rate"] >= 0.5 and fab["known_rate"] == 0.0
    # the rank rule (log p(memory) > log p(context) closed-book) admits fabricated facts: why greedy is the default
    fab_rank = [r["known_rank"] for r in smol_result.records if r["domain"] == "fabricated"]
    assert 0.2 <= sum(fab_rank) / len(fab_rank) <= 0.8


def test_context_following_is_measured_on_known_items(smol_result) -> None:
    """With no memory to compete (fabricated facts) the model follows the context more than on capitals it
    knows; on those, the generation-free margin agrees with which answer it generates."""
    recs = smol_result.records
    known_caps = [r["id"] for r in recs if r["domain"] == "capital" and r["known"]]
    cap, fab = knowledge_metrics(recs, known_caps), knowledge_metrics(recs, ids(smol_result, "fabricated"))
    assert cap["n_open"] >= 8 and fab["mem_follow_rate"] == 0.0
    assert fab["ctx_follow_rate"] >= 0.5 and fab["ctx_follow_rate"] > cap["ctx_follow_rate"]
    assert cap["mem_follow_rate"] > 0
    known = [r for r in recs if r["known"] and r["outcome"] in ("context", "memory")]
    by = {oc: [r["margin"] for r in known if r["outcome"] == oc] for oc in ("context", "memory")}
    assert min(map(len, by.values())) >= 3
    assert sum(by["context"]) / len(by["context"]) > sum(by["memory"]) / len(by["memory"])


def test_yes_no_bias_is_reported(smol_result) -> None:
    """SmolLM2-135M-Instruct answers the yes/no conflict questions "No" almost always: accuracy then reads the
    label balance, and the bias measures say so."""
    s = smol_result.summary
    assert s["n_yn"] == len(smol_result.records) and 0.4 <= s["yn_label_yes_rate"] <= 0.6
    assert s["yn_yes_rate"] <= 0.1
    assert abs(s["yn_balanced_accuracy"] - 0.5) <= 0.05
    assert abs(s["yn_accuracy"] - (1 - s["yn_label_yes_rate"])) <= 0.1
