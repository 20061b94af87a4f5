"""Loaders for knowledge-conflict data a user may have on disk, producing ``conflict`` prompt sets.

Formats (``format="auto"`` picks one from the file's first record):

- ``lensft``: a lensft prompt set of kind ``conflict`` (first line is a prompt-set header).
- ``yesno``: the paper's yes/no probe, in the style of Jin et al. 2025 (``Rope_with_LLM``,
  ``run_knowledge``): true/false statements like Marks & Tegmark's cities
  (``"The city of X is in Y."``) turned into questions, with a new-knowledge sentence prepended.
  JSONL or CSV records with ``statement`` and ``label`` (true/false, 1/0, "TRUE"/"FALSE"); optional
  ``context`` (the new-knowledge sentence for this item; default: the loader's ``new_knowledge``
  argument, the same sentence for every item as in Jin et al.), ``question`` (default: derived from
  a statement of the form ``"S is P."`` as ``"Is s P?"``), ``context_addresses`` (whether the
  context answers the question; default: true for a record's own ``context``, false for the shared
  sentence, which is about another city), ``domain``, ``id``. The yes/no prompt is
  ``"{context} {question} Answer 'Yes' or 'No'."``; ``yn_label`` = ``label`` (the memorised truth),
  ``memory_answer`` is "Yes"/"No" accordingly; ``context_answer`` is the other one where the
  context addresses the question (it is taken to contradict the statement) and None otherwise.
- ``conflictqa``: ConflictQA (Xie et al. 2023, ``osunlp/ConflictQA``) JSON array or JSONL with
  ``question``, ``memory_answer``, ``counter_answer`` and ``counter_memory_aligned_evidence``
  (falling back to ``counter_memory``); ``ground_truth`` and ``popularity`` go to ``meta``.
  The prompt is ``"{context}\\n{question}"`` and the closed-book prompt the question alone.
- ``memo_trap``: inverse-scaling ``memo_trap`` CSV or JSONL with ``prompt``, ``classes`` (a list,
  or its Python/JSON string form) and ``answer_index``. The instructed ending
  ``classes[answer_index]`` is the context answer, the other class the memorised one; the text
  after the instruction's first ``": "`` is the closed-book prompt. These sets are plain-text
  continuations (``chat: false``); answers are stripped of their leading space.

Tiny examples of each format ship in ``lensft/probes/data/`` (:func:`example_path`). The built-in
real-world conflict set (:func:`real_world_conflicts`, ``conflict_default.jsonl``, rebuilt by
``lensft/probes/data/make_conflict_default.py``) holds over 300 true facts over six relations.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import ValidationError

from lensft.errors import PromptSetError
from lensft.hashing import sha256_bytes
from lensft.prompts import ConflictItem, PromptSet, make_prompt_set, read_prompt_set

ConflictFormat = Literal["auto", "lensft", "yesno", "conflictqa", "memo_trap"]

#: Jin et al.-style fixed new-knowledge sentence used when a yes/no record has no ``context``.
DEFAULT_NEW_KNOWLEDGE = "You should know the new geography knowledge: Shijiazhuang is a new city in the USA."
YN_INSTRUCTION = "Answer 'Yes' or 'No'."

_EXAMPLES = {"yesno": "conflict_yesno_example.jsonl", "conflictqa": "conflictqa_example.jsonl",
             "memo_trap": "memo_trap_example.csv", "lensft": "conflict_example.jsonl"}
REAL_WORLD = "conflict_default.jsonl"


def example_path(fmt: str) -> Path:
    """Path of the built-in example file of a format (``yesno``, ``conflictqa``, ``memo_trap``, ``lensft``)."""
    if fmt not in _EXAMPLES:
        raise PromptSetError(f"no example for format {fmt!r}; formats: {', '.join(_EXAMPLES)}")
    return Path(str(resources.files("lensft.probes") / "data" / _EXAMPLES[fmt]))


def real_world_conflicts(relations: Sequence[str] | None = None, per_relation: int | None = None) -> PromptSet:
    """The built-in real-world conflict set: capitals, currencies, official languages, chemical symbols,
    authors and landmark cities (item ``domain`` = relation), each fact with a counterfactual context, a
    closed-book question and a yes/no form with labels balanced within each relation.

    ``relations`` keeps only those relations; ``per_relation`` keeps the first n items of each (labels stay
    near-balanced: they alternate within a relation).
    """
    ps = read_prompt_set(Path(str(resources.files("lensft.probes") / "data" / REAL_WORLD)))
    known = sorted({it.domain for it in ps.items})
    bad = sorted(set(relations or ()) - set(known))
    if bad:
        raise PromptSetError(f"no relation {', '.join(bad)} in the real-world conflict set; relations: {', '.join(known)}")
    if per_relation is not None and per_relation < 1:
        raise PromptSetError("per_relation must be at least 1")
    kept, seen = [], dict.fromkeys(known, 0)
    for it in ps.items:
        if (relations is None or it.domain in relations) and (per_relation is None or seen[it.domain] < per_relation):
            kept.append(it)
            seen[it.domain] += 1
    return PromptSet(header=ps.header, items=kept)


def load_conflicts(path: str | Path, format: ConflictFormat = "auto", *,
                   new_knowledge: str = DEFAULT_NEW_KNOWLEDGE) -> PromptSet:
    """Read a conflict file in any supported format as a ``conflict`` prompt set."""
    p = Path(path)
    if not p.is_file():
        raise PromptSetError(f"conflict file {p} does not exist")
    raw = p.read_text(encoding="utf-8")
    if not raw.strip():
        raise PromptSetError(f"conflict file {p} is empty")
    first_line = raw.lstrip().split("\n")[0]
    if format in ("auto", "lensft") and first_line.startswith("{") and '"lensft_prompt_set"' in first_line:
        ps = read_prompt_set(p)
        if ps.kind != "conflict":
            raise PromptSetError(f"{p} is a {ps.kind!r} prompt set; knowledge probes need kind 'conflict'")
        return ps
    if format == "lensft":
        raise PromptSetError(f"{p} has no lensft prompt-set header")
    records = _read_records(p, raw)
    fmt = _detect(records[0], p) if format == "auto" else format
    version = sha256_bytes(raw.encode("utf-8"))[:12]
    if fmt == "yesno":
        items = [_yesno_item(r, i, p, new_knowledge) for i, r in enumerate(records)]
        return make_prompt_set(p.stem, version, "conflict", items, description=f"yes/no conflict statements from {p.name}")
    if fmt == "conflictqa":
        items = [_conflictqa_item(r, i, p) for i, r in enumerate(records)]
        return make_prompt_set(p.stem, version, "conflict", items, description=f"ConflictQA items from {p.name}")
    if fmt == "memo_trap":
        items = [_memo_trap_item(r, i, p) for i, r in enumerate(records)]
        return make_prompt_set(p.stem, version, "conflict", items, chat=False,
                               description=f"memo-trap items from {p.name}")
    raise PromptSetError(f"unknown conflict format {fmt!r}; use auto, lensft, yesno, conflictqa or memo_trap")


# ---------------------------------------------------------------------------------------- reading
def _read_records(p: Path, raw: str) -> list[dict[str, Any]]:
    if p.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(raw)))
        if not rows:
            raise PromptSetError(f"{p} has a header but no rows")
        return rows
    text = raw.strip()
    if text.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PromptSetError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not data:
            raise PromptSetError(f"{p} holds an empty list")
        return [_as_dict(d, p, i + 1) for i, d in enumerate(data)]
    out = []
    for i, line in enumerate(raw.split("\n"), start=1):
        if line.strip():
            try:
                out.append(_as_dict(json.loads(line), p, i))
            except json.JSONDecodeError as e:
                raise PromptSetError(f"{p}:{i}: not JSON ({e.msg}); write one JSON object per line") from None
    return out


def _as_dict(d: Any, p: Path, i: int) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise PromptSetError(f"{p}: record {i} is not a JSON object")
    return d


def _detect(r: dict[str, Any], p: Path) -> str:
    if "statement" in r and "label" in r:
        return "yesno"
    if "question" in r and "memory_answer" in r and "counter_answer" in r:
        return "conflictqa"
    if "prompt" in r and "classes" in r and "answer_index" in r:
        return "memo_trap"
    raise PromptSetError(f"{p}: cannot tell the conflict format from keys {sorted(r)}; expected statement+label "
                         "(yesno), question+memory_answer+counter_answer (conflictqa) or prompt+classes+answer_index "
                         "(memo_trap), or a lensft prompt-set header")


def _need(r: dict[str, Any], key: str, p: Path, i: int) -> str:
    v = r.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise PromptSetError(f"{p}: record {i + 1} has no {key!r}")
    return str(v).strip()


def _item(p: Path, i: int, **kw: Any) -> ConflictItem:
    try:
        return ConflictItem(**kw)
    except ValidationError as e:
        err = e.errors()[0]
        raise PromptSetError(f"{p}: record {i + 1}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


# ---------------------------------------------------------------------------------------- formats
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}
_IS = re.compile(r"^(?P<subj>.+?)\s+is\s+(?P<rest>.+?)[.!]?$")


def _bool(v: Any, p: Path, i: int, field: str = "label") -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise PromptSetError(f"{p}: record {i + 1}: {field} {v!r} is not true/false or 1/0")


def statement_to_question(statement: str) -> str | None:
    """``"The city of X is in Y."`` -> ``"Is the city of X in Y?"``; None if not of the form "S is P"."""
    m = _IS.match(statement.strip())
    if not m:
        return None
    subj = m.group("subj")
    if subj.lower().startswith("is "):
        return None
    if subj.split()[0] in ("The", "A", "An"):
        subj = subj[0].lower() + subj[1:]
    return f"Is {subj} {m.group('rest')}?"


def _yesno_item(r: dict[str, Any], i: int, p: Path, new_knowledge: str) -> ConflictItem:
    statement = _need(r, "statement", p, i)
    label = _bool(r.get("label"), p, i)
    question = str(r.get("question") or "").strip() or statement_to_question(statement)
    if not question:
        raise PromptSetError(f"{p}: record {i + 1}: cannot turn {statement!r} into a question; add a 'question' field")
    own = str(r.get("context") or "").strip()
    context = own or new_knowledge
    addresses = _bool(r["context_addresses"], p, i, "context_addresses") if r.get("context_addresses") is not None else bool(own)
    yn = f"{context} {question} {YN_INSTRUCTION}"
    mem, ctx = ("Yes", "No") if label else ("No", "Yes")
    meta = {k: v for k, v in r.items()
            if k not in {"statement", "label", "question", "context", "context_addresses", "domain", "id"}}
    meta["statement"] = statement
    return _item(p, i, id=str(r.get("id") or i), domain=str(r.get("domain") or "geography"), context=context,
                 question=question, prompt=yn, closed_book_prompt=f"{question} {YN_INSTRUCTION}",
                 memory_answer=mem, context_answer=ctx if addresses else None, yn_prompt=yn, yn_label=label, meta=meta)


def _conflictqa_item(r: dict[str, Any], i: int, p: Path) -> ConflictItem:
    question = _need(r, "question", p, i)
    ctx_key = "counter_memory_aligned_evidence" if r.get("counter_memory_aligned_evidence") else "counter_memory"
    context = _need(r, ctx_key, p, i)
    meta = {k: r[k] for k in ("ground_truth", "popularity") if k in r}
    return _item(p, i, id=str(r.get("id") or i), domain=str(r.get("domain") or "conflictqa"), context=context,
                 question=question, prompt=f"{context}\n{question}", closed_book_prompt=question,
                 memory_answer=_need(r, "memory_answer", p, i), context_answer=_need(r, "counter_answer", p, i),
                 meta=meta)


def _classes(v: Any, p: Path, i: int) -> list[str]:
    if isinstance(v, str):
        try:
            v = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            raise PromptSetError(f"{p}: record {i + 1}: 'classes' {v!r} is not a list") from None
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        raise PromptSetError(f"{p}: record {i + 1}: 'classes' must list at least two endings")
    return [str(c) for c in v]


def _memo_trap_item(r: dict[str, Any], i: int, p: Path) -> ConflictItem:
    prompt = str(r.get("prompt") or "")
    if not prompt.strip():
        raise PromptSetError(f"{p}: record {i + 1} has no 'prompt'")
    classes = _classes(r.get("classes"), p, i)
    try:
        k = int(r.get("answer_index"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PromptSetError(f"{p}: record {i + 1}: 'answer_index' must be an integer") from None
    if not 0 <= k < len(classes):
        raise PromptSetError(f"{p}: record {i + 1}: answer_index {k} is outside classes")
    other = next(c for j, c in enumerate(classes) if j != k)
    instr, sep, rest = prompt.partition(": ")
    context, question = (instr + sep.rstrip(), rest) if sep else ("", prompt)
    return _item(p, i, id=str(r.get("id") or i), domain=str(r.get("domain") or "memo_trap"), context=context,
                 question=question, prompt=prompt, closed_book_prompt=question,
                 memory_answer=other.strip(), context_answer=classes[k].strip(), meta={"classes": classes})
