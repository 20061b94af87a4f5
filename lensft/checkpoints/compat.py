"""Compatibility reports: what differs between the checkpoints of a triple, and whether it matters."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from pydantic import BaseModel, Field

from lensft.checkpoints.triple import CheckpointTriple
from lensft.hashing import sha256_file
from lensft.variants import Role, Variant

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]

#: Config fields whose difference makes grafting impossible (shapes).
SHAPE_FIELDS = {
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "vocab_size", "tie_word_embeddings", "n_embd", "n_inner", "n_layer", "n_head",
}


class ConfigDiff(BaseModel):
    field: str
    values: dict[str, Any]
    severity: Severity


class TensorDiff(BaseModel):
    name: str
    kind: Literal["missing", "shape", "dtype"]
    values: dict[str, Any]
    severity: Severity = "error"


class TokenizerDiff(BaseModel):
    aspect: str
    detail: str
    severity: Severity


class WeightChange(BaseModel):
    """Relative change ‖W_variant − W_ref‖ / ‖W_ref‖ of one role in one layer (layer None: global)."""

    variant: str
    reference: str
    role: str
    layer: Optional[int]
    rel_change: float


class CompatibilityReport(BaseModel):
    """Everything that differs between the checkpoints of a triple."""

    paths: dict[str, str]
    family: str
    n_layers: int
    config_diffs: list[ConfigDiff] = Field(default_factory=list)
    tensor_diffs: list[TensorDiff] = Field(default_factory=list)
    tokenizer_diffs: list[TokenizerDiff] = Field(default_factory=list)
    weight_changes: list[WeightChange] = Field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return self.first_error() is None

    def first_error(self) -> Optional[str]:
        """One line naming the first problem that makes the triple unusable, or None."""
        for d in self.config_diffs:
            if d.severity == "error":
                return f"checkpoints differ in config field {d.field!r}: " + _fmt_values(d.values)
        for t in self.tensor_diffs:
            if t.severity == "error":
                what = {"missing": "is missing in some checkpoints", "shape": "has different shapes",
                        "dtype": "has different dtypes"}[t.kind]
                return f"tensor {t.name!r} {what}: " + _fmt_values(t.values)
        for k in self.tokenizer_diffs:
            if k.severity == "error":
                return f"tokenizers differ ({k.aspect}): {k.detail}"
        return None

    def warnings(self) -> list[str]:
        out = [f"config {d.field}: {_fmt_values(d.values)}" for d in self.config_diffs if d.severity == "warning"]
        out += [f"tokenizer {k.aspect}: {k.detail}" for k in self.tokenizer_diffs if k.severity == "warning"]
        out += [f"tensor {t.name} {t.kind}: {_fmt_values(t.values)}" for t in self.tensor_diffs if t.severity == "warning"]
        return out

    def change_table(self) -> dict[str, dict[str, list[Optional[float]]]]:
        """``{variant: {role: [rel_change per layer]}}`` for per-layer roles."""
        out: dict[str, dict[str, list[Optional[float]]]] = {}
        for w in self.weight_changes:
            if w.layer is None:
                continue
            row = out.setdefault(w.variant, {}).setdefault(w.role, [None] * self.n_layers)
            row[w.layer] = w.rel_change
        return out


def _fmt_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def check_compatibility(triple: CheckpointTriple, *, weight_changes: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> CompatibilityReport:
    """Compare the checkpoints of a triple: config, tensors, tokenizer and (optionally) weights.

    Args:
        triple: the opened checkpoints.
        weight_changes: also read every tensor and compute per-role, per-layer relative change
            against the reference (base if given, else short). Costs one pass over the weights.
        progress: called as ``progress(done, total)`` while weight changes are computed.
    """
    readers = triple.readers
    ref_v = Variant.BASE if Variant.BASE in readers else triple.variants[0]
    report = CompatibilityReport(
        paths={str(v): str(r.path) for v, r in readers.items()},
        family=triple.family.name,
        n_layers=triple.n_layers,
    )
    # --- family and config ------------------------------------------------------------------
    fams = {str(v): r.family.name for v, r in readers.items()}
    if len(set(fams.values())) > 1:
        report.config_diffs.append(ConfigDiff(field="family", values=fams, severity="error"))
    mt = {str(v): r.config.get("model_type") for v, r in readers.items()}
    if len(set(mt.values())) > 1:
        report.config_diffs.append(ConfigDiff(field="model_type", values=mt, severity="error"))
    fields = list(dict.fromkeys(triple.family.config_fields + sorted(SHAPE_FIELDS)))
    for f in fields:
        vals = {str(v): r.config.get(f) for v, r in readers.items()}
        if all(x is None for x in vals.values()) or len({repr(x) for x in vals.values()}) == 1:
            continue
        sev: Severity = "error" if f in SHAPE_FIELDS else "warning"
        report.config_diffs.append(ConfigDiff(field=f, values=vals, severity=sev))
    # --- tensors ------------------------------------------------------------------------------
    names = list(dict.fromkeys(n for r in readers.values() for n in r.tensors))
    for n in names:
        metas = {str(v): r.tensors.get(n) for v, r in readers.items()}
        if any(m is None for m in metas.values()):
            report.tensor_diffs.append(TensorDiff(
                name=n, kind="missing", values={k: ("present" if m else "missing") for k, m in metas.items()}))
            continue
        shapes = {k: list(m.shape) for k, m in metas.items() if m}
        if len({tuple(s) for s in shapes.values()}) > 1:
            report.tensor_diffs.append(TensorDiff(name=n, kind="shape", values=shapes))
            continue
        dtypes = {k: str(m.dtype).replace("torch.", "") for k, m in metas.items() if m}
        if len(set(dtypes.values())) > 1:
            report.tensor_diffs.append(TensorDiff(name=n, kind="dtype", values=dtypes))
    # --- tokenizers ---------------------------------------------------------------------------
    report.tokenizer_diffs.extend(_tokenizer_diffs(triple))
    # --- weights -------------------------------------------------------------------------------
    if weight_changes and report.first_error() is None:
        report.weight_changes = _weight_changes(triple, ref_v, progress)
    return report


def _file_digest(p: Path) -> str | None:
    return sha256_file(p) if p.is_file() else None


def _tokenizer_diffs(triple: CheckpointTriple) -> list[TokenizerDiff]:
    readers = triple.readers
    digests = {v: tuple(_file_digest(r.path / f) for f in ("tokenizer.json", "tokenizer_config.json",
                                                            "special_tokens_map.json", "chat_template.jinja",
                                                            "tokenizer.model", "vocab.json", "merges.txt"))
               for v, r in readers.items()}
    if len(set(digests.values())) == 1:
        return []
    from transformers import AutoTokenizer

    toks = {}
    for v, r in readers.items():
        try:
            toks[str(v)] = AutoTokenizer.from_pretrained(r.path, local_files_only=True)
        except Exception as e:  # no tokenizer files: report rather than fail
            return [TokenizerDiff(aspect="files", detail=f"{v} tokenizer cannot be loaded ({str(e).splitlines()[0]})",
                                  severity="warning")]
    out: list[TokenizerDiff] = []
    vocabs = {k: t.get_vocab() for k, t in toks.items()}
    ks = list(vocabs)
    for k in ks[1:]:
        if vocabs[k] != vocabs[ks[0]]:
            diff = set(vocabs[k].items()) ^ set(vocabs[ks[0]].items())
            ex = sorted(diff, key=str)[0]
            out.append(TokenizerDiff(aspect="vocab", severity="error",
                                     detail=f"{ks[0]} has {len(vocabs[ks[0]])} tokens, {k} has {len(vocabs[k])}; "
                                            f"e.g. token {ex[0]!r} -> {ex[1]} differs"))
    specials = {k: str(sorted(t.special_tokens_map.items())) for k, t in toks.items()}
    if len(set(specials.values())) > 1:
        out.append(TokenizerDiff(aspect="special tokens", severity="warning",
                                 detail="; ".join(f"{k}: {v}" for k, v in specials.items())))
    templates = {k: getattr(t, "chat_template", None) for k, t in toks.items()}
    if len({repr(x) for x in templates.values()}) > 1:
        out.append(TokenizerDiff(aspect="chat template", severity="warning",
                                 detail=", ".join(f"{k}: {'none' if v is None else f'{len(str(v))} chars'}"
                                                  for k, v in templates.items())))
    return out


def _weight_changes(triple: CheckpointTriple, ref_v: Variant,
                    progress: Callable[[int, int], None] | None) -> list[WeightChange]:
    ref = triple.readers[ref_v]
    fam = triple.family
    others = [v for v in triple.variants if v != ref_v]
    num: dict[tuple[Variant, Role, Optional[int]], float] = {}
    den: dict[tuple[Role, Optional[int]], float] = {}
    names = list(ref.tensors)
    for i, n in enumerate(names):
        info = fam.classify(n)
        assert info is not None
        w_ref = ref.get(n).to(torch.float64)
        key = (info.role, info.layer)
        den[key] = den.get(key, 0.0) + float(w_ref.square().sum())
        for v in others:
            d = triple.readers[v].get(n).to(torch.float64) - w_ref
            num[(v, *key)] = num.get((v, *key), 0.0) + float(d.square().sum())
        if progress:
            progress(i + 1, len(names))
    out = []
    for (v, role, layer), s in sorted(num.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value, kv[0][2] or -1)):
        d = den[(role, layer)]
        out.append(WeightChange(variant=str(v), reference=str(ref_v), role=role.value, layer=layer,
                                rel_change=math.sqrt(s / d) if d > 0 else float("nan")))
    return out
