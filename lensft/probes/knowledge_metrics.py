"""Headline metrics of the knowledge-preference probe, from its per-item records, on any subset of items.

Pure functions (no model): :func:`knowledge_metrics` computes every summary scalar of
``knowledge_preference`` from the records of one model, optionally restricted to a list of item
ids. The list may repeat ids (a bootstrap resample counts a repeated item once per occurrence),
so a paired bootstrap across models is: resample ids once, call :func:`knowledge_metrics` on each
model's records with the same ids. :func:`shared_known_ids` gives the items every compared model
knows closed-book, the subset on which their context-vs-memory behaviour is comparable.

Metrics (``None`` where the subset has no item to average over):

- ``n_items``, ``n_known``, ``known_rate``: items, items the model knows closed-book (record
  ``known``) and their share.
- Yes/no (items with a yes/no form, ``n_yn``): ``yn_accuracy`` (the paper's metric: answer equals
  ``yn_label``, the answer under memorised knowledge); ``yn_yes_rate`` (share answered "Yes");
  ``yn_label_yes_rate`` (share whose label is "Yes"; 0.5 on a balanced set); bias-free
  ``yn_balanced_accuracy`` = (P(Yes | label Yes) + P(No | label No)) / 2 and ``yn_auc`` = the
  area under the ROC curve of P(yes) against the label (the probability that a label-Yes item
  gets a higher P(yes) than a label-No item, ties counting 1/2), both None unless both labels
  occur; ``yn_one_way`` = 1.0 when every answer is the same (the validity check: such a model
  scores ``yn_label_yes_rate`` or its complement on accuracy whatever it knows). For accuracy,
  balanced accuracy and AUC, 1 = follows memory, 0 = follows the context, 0.5 = chance.
- Margin (items whose context addresses the question, ``n_addressed``): ``margin_mean`` (nats,
  log p(context answer) - log p(memory answer)), ``ctx_pref_rate`` (share with margin > 0) and
  ``mr_prob_mean``, the mean of p_mem / (p_mem + p_ctx) = sigmoid(-margin): a probability
  analogue of the memorisation ratio, not Longpre et al.'s.
- Open answers (addressed items with a greedy answer, ``n_open``): ``ctx_follow_rate``,
  ``mem_follow_rate``, ``both_rate``, ``neither_rate`` (the answer contains the context answer,
  the memory answer, both or neither), and ``mr_count``, **Longpre et al. 2021's memorisation
  ratio** p_o / (p_o + p_s), p_o (p_s) the share of answers matching the original = memory
  (substitute = context) answer. Longpre et al. match by exact match; lensft's answers are
  sentences, so it matches by whole-word containment as Zhou et al. 2023's reimplementation
  does, and an answer containing both counts for both.
- ``lens_margin_last``: mean logit-lens first-token margin at the last layer.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

from lensft.errors import LensftError

Record = Mapping[str, Any]


def select_records(records: Sequence[Record], ids: Optional[Iterable[str]] = None) -> list[Record]:
    """The records of ``ids`` in that order (repeats kept); all records when ``ids`` is None."""
    if ids is None:
        return list(records)
    by_id = {r["id"]: r for r in records}
    if len(by_id) != len(records):
        raise LensftError("knowledge records repeat an item id; give each item a unique id")
    out = []
    for i in ids:
        if i not in by_id:
            raise LensftError(f"item id {i!r} is not among these knowledge records; compare models on the same prompt set")
        out.append(by_id[i])
    return out


def shared_known_ids(*record_lists: Sequence[Record]) -> list[str]:
    """Ids known closed-book by every model (in the first model's item order); missing ids count as unknown."""
    if not record_lists:
        return []
    known = [{r["id"] for r in recs if r.get("known")} for recs in record_lists]
    return [r["id"] for r in record_lists[0] if all(r["id"] in k for k in known)]


def mean(xs: Sequence[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def balanced_accuracy(pred: Sequence[bool], label: Sequence[bool]) -> Optional[float]:
    """(true-positive rate + true-negative rate) / 2; None unless both labels occur."""
    pos = [p for p, y in zip(pred, label) if y]
    neg = [not p for p, y in zip(pred, label) if not y]
    if not pos or not neg:
        return None
    return (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2


def roc_auc(score: Sequence[float], label: Sequence[bool]) -> Optional[float]:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties averaged); None unless both labels occur."""
    n_pos = sum(1 for y in label if y)
    n_neg = len(label) - n_pos
    if not n_pos or not n_neg:
        return None
    order = sorted(range(len(score)), key=lambda k: score[k])
    ranks = [0.0] * len(score)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and score[order[j + 1]] == score[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2 + 1  # 1-based average rank of the tie group
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, label) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _yes_no(rows: list[Record]) -> dict[str, Optional[float]]:
    yn = [r for r in rows if r.get("yn_pred") is not None]
    pred, label = [bool(r["yn_pred"]) for r in yn], [bool(r["yn_label"]) for r in yn]
    return {"n_yn": float(len(yn)),
            "yn_accuracy": mean([float(p == y) for p, y in zip(pred, label)]),
            "yn_yes_rate": mean([float(p) for p in pred]),
            "yn_label_yes_rate": mean([float(y) for y in label]),
            "yn_balanced_accuracy": balanced_accuracy(pred, label),
            "yn_auc": roc_auc([float(r["yn_p_yes"]) for r in yn], label),
            "yn_one_way": float(len(set(pred)) == 1) if pred else None}


def _context(rows: list[Record]) -> dict[str, Optional[float]]:
    addressed = [r for r in rows if r.get("context_addressed")]
    margins = [float(r["margin"]) for r in addressed if r.get("margin") is not None]
    out: dict[str, Optional[float]] = {
        "n_addressed": float(len(addressed)),
        "margin_mean": mean(margins),
        "ctx_pref_rate": mean([float(m > 0) for m in margins]),
        "mr_prob_mean": mean([float(r["mr_prob"]) for r in addressed if r.get("mr_prob") is not None])}
    outcomes = [r["outcome"] for r in addressed if r.get("outcome") is not None]
    out["n_open"] = float(len(outcomes))
    for key, oc in (("ctx_follow_rate", "context"), ("mem_follow_rate", "memory"), ("both_rate", "both"),
                    ("neither_rate", "neither")):
        out[key] = mean([float(o == oc) for o in outcomes])
    p_o = sum(o in ("memory", "both") for o in outcomes)
    p_s = sum(o in ("context", "both") for o in outcomes)
    out["mr_count"] = p_o / (p_o + p_s) if p_o + p_s else None
    return out


def knowledge_metrics(records: Sequence[Record], ids: Optional[Iterable[str]] = None) -> dict[str, Optional[float]]:
    """Every headline metric (module docstring) on the records of ``ids`` (default: all records)."""
    return metrics_of(select_records(records, ids))


def metrics_of(rows: Sequence[Record]) -> dict[str, Optional[float]]:
    """Every headline metric (module docstring) on these records (repeats count once per occurrence)."""
    rows = list(rows)
    n_known = sum(bool(r.get("known")) for r in rows)
    out: dict[str, Optional[float]] = {"n_items": float(len(rows)), "n_known": float(n_known),
                                       "known_rate": n_known / len(rows) if rows else None}
    out.update(_yes_no(rows))
    out.update(_context(rows))
    last = [r["lens_margin"][-1] for r in rows if r.get("lens_margin") and r["lens_margin"][-1] is not None]
    out["lens_margin_last"] = mean([float(x) for x in last])
    return out


def knowledge_summary(records: Sequence[Record]) -> dict[str, Optional[float]]:
    """The probe's summary: metrics on all items, on the model's own known items (suffix ``_known``), and per
    domain ``yn_accuracy_<domain>``, ``yn_balanced_accuracy_<domain>``, ``known_rate_<domain>``."""
    out = metrics_of(records)
    out.update({f"{k}_known": v for k, v in metrics_of([r for r in records if r.get("known")]).items()})
    for dom in sorted({str(r["domain"]) for r in records}):
        m = metrics_of([r for r in records if str(r["domain"]) == dom])
        out.update({f"{k}_{dom}": m[k] for k in ("yn_accuracy", "yn_balanced_accuracy", "known_rate")})
    return out
