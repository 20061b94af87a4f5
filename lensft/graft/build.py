"""In-memory grafts: a :class:`~lensft.handle.ModelHandle` built from a plan without writing to disk."""

from __future__ import annotations

from transformers import AutoTokenizer

from lensft.checkpoints.triple import CheckpointTriple
from lensft.graft.plan import graft_tensor, plan_graft
from lensft.graft.spec import GraftSpec
from lensft.handle import ModelHandle, Provenance, build_model


def graft_model(triple: CheckpointTriple, spec: GraftSpec, *, attn_implementation: str | None = None) -> ModelHandle:
    """Build the grafted model in memory.

    Source state dicts are loaded once and cached on ``triple`` (see
    :meth:`CheckpointTriple.tensors`), and tensors taken whole share their storage with the
    source, so a sweep of many grafts reads each checkpoint once and adds only blended tensors.
    """
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    tensors = {e.name: graft_tensor(e, lambda v, n: triple.tensors(v)[n]) for e in plan}
    host = triple[spec.host]
    tokenizer = AutoTokenizer.from_pretrained(host.path, local_files_only=True)
    prov = Provenance(
        label=spec.label,
        sources={v.value: str(triple[v].path.resolve()) for v in spec.variants()},
        graft=spec.model_dump(mode="json"),
    )
    return build_model(host.config, tensors, tokenizer, triple.family, prov, attn_implementation=attn_implementation)


def variant_model(triple: CheckpointTriple, variant: str, *, attn_implementation: str | None = None) -> ModelHandle:
    """One checkpoint of the triple as a model, sharing the triple's cached tensors."""
    spec = GraftSpec.build(mha=variant, ffn=variant, host=variant)
    h = graft_model(triple, spec, attn_implementation=attn_implementation)
    h.provenance.label = str(variant)
    h.provenance.graft = None
    return h
