"""The knowledge probe's headline metrics as pure functions of per-item records: independent oracles,
hand-computed records, bootstrap-style repeated ids and the items shared by several models."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensft.errors import LensftError
from lensft.probes.knowledge_metrics import (balanced_accuracy, knowledge_metrics, knowledge_summary, roc_auc,
                                             shared_known_ids)


def rec(i: str, *, known: bool = True, label: bool = True, p_yes: float = 0.5, outcome: str | None = "memory",
        margin: float | None = -1.0, domain: str = "capital") -> dict:
    addressed = margin is not None
    return {"id": i, "domain": domain, "known": known, "context_addressed": addressed, "margin": margin,
            "mr_prob": None if margin is None else 1 / (1 + 2.718281828459045 ** margin),
            "outcome": outcome, "yn_label": label, "yn_p_yes": p_yes, "yn_pred": p_yes > 0.5,
            "lens_margin": [0.0, margin] if addressed else None}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=12))
def test_roc_auc_and_balanced_accuracy_match_brute_force(pairs) -> None:
    scores, labels = [float(s) for s, _ in pairs], [y for _, y in pairs]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        assert roc_auc(scores, labels) is None and balanced_accuracy([s > 2 for s in scores], labels) is None
        return
    oracle = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(oracle)
    pred = [s > 2 for s in scores]
    tpr = sum(p for p, y in zip(pred, labels) if y) / len(pos)
    tnr = sum(not p for p, y in zip(pred, labels) if not y) / len(neg)
    assert balanced_accuracy(pred, labels) == pytest.approx((tpr + tnr) / 2)


def test_metrics_on_hand_computed_records() -> None:
    records = [rec("a", label=True, p_yes=0.9, outcome="memory", margin=-2.0),
               rec("b", label=False, p_yes=0.8, outcome="context", margin=1.0),
               rec("c", known=False, label=True, p_yes=0.3, outcome="both", margin=3.0),
               rec("d", known=False, label=False, p_yes=0.1, outcome="neither", margin=None, domain="symbol")]
    m = knowledge_metrics(records)
    assert (m["n_items"], m["n_known"], m["known_rate"]) == (4, 2, 0.5)
    # yes/no: answers yes, yes, no, no against labels T, F, T, F
    assert m["yn_accuracy"] == 0.5 and m["yn_yes_rate"] == 0.5 and m["yn_label_yes_rate"] == 0.5
    assert m["yn_balanced_accuracy"] == 0.5 and m["yn_one_way"] == 0.0
    assert m["yn_auc"] == 0.75  # label-yes P(yes) {0.9, 0.3} vs label-no {0.8, 0.1}: 3 of 4 pairs ordered
    # the context side uses the three addressed items only
    assert m["n_addressed"] == 3 and m["n_open"] == 3
    assert m["margin_mean"] == pytest.approx(2 / 3) and m["ctx_pref_rate"] == pytest.approx(2 / 3)
    assert (m["ctx_follow_rate"], m["mem_follow_rate"], m["both_rate"], m["neither_rate"]) == (1 / 3, 1 / 3, 1 / 3, 0)
    assert m["mr_count"] == pytest.approx(2 / 4)  # p_o counts memory + both, p_s context + both
    assert m["lens_margin_last"] == pytest.approx(2 / 3)
    k = knowledge_metrics(records, ["a", "b"])
    assert k["mr_count"] == 0.5 and k["yn_accuracy"] == 0.5 and k["yn_auc"] == 1.0
    s = knowledge_summary(records)
    assert s["yn_accuracy_known"] == 0.5 and s["n_items_known"] == 2 and s["known_rate_capital"] == pytest.approx(2 / 3)
    assert s["known_rate_symbol"] == 0.0 and s["yn_balanced_accuracy_symbol"] is None


def test_auc_hand_value() -> None:
    # label-yes items score 0.9 and 0.3, label-no items 0.8 and 0.1: pairs (0.9>0.8, 0.9>0.1, 0.3<0.8, 0.3>0.1)
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False]) == 0.75


def test_all_no_answerer_reads_chance_on_bias_free_measures() -> None:
    records = [rec(str(i), label=i % 3 == 0, p_yes=0.2) for i in range(9)]
    m = knowledge_metrics(records)
    assert m["yn_yes_rate"] == 0.0 and m["yn_one_way"] == 1.0 and m["yn_balanced_accuracy"] == 0.5
    assert m["yn_accuracy"] == pytest.approx(6 / 9) and m["yn_auc"] == 0.5


def test_repeated_ids_count_like_a_bootstrap_resample() -> None:
    records = [rec("a", margin=-2.0, outcome="memory"), rec("b", margin=1.0, outcome="context", known=False)]
    m = knowledge_metrics(records, ["a", "a", "b"])
    assert m["n_items"] == 3 and m["known_rate"] == pytest.approx(2 / 3)
    assert m["margin_mean"] == pytest.approx(-1.0) and m["mr_count"] == pytest.approx(2 / 3)
    with pytest.raises(LensftError, match="not among these knowledge records"):
        knowledge_metrics(records, ["z"])
    with pytest.raises(LensftError, match="repeat an item id"):
        knowledge_metrics(records + [records[0]], ["a"])
    empty = knowledge_metrics(records, [])
    assert empty["n_items"] == 0 and empty["known_rate"] is None and empty["yn_accuracy"] is None


def test_shared_known_ids() -> None:
    a = [rec("x"), rec("y"), rec("z", known=False)]
    b = [rec("y"), rec("x", known=False), rec("z")]
    assert shared_known_ids(a, b) == ["y"] and shared_known_ids(a) == ["x", "y"] and shared_known_ids() == []
    assert shared_known_ids(a, [rec("x")]) == ["x"]  # an id missing from a model counts as unknown
