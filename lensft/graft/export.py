"""Writing a graft to disk as a loadable checkpoint (``lensft swap``).

The plan says where every tensor comes from; :func:`lensft.checkpoints.writer.write_checkpoint`
copies the bytes of every tensor taken whole straight from its source file (one sequential read
per source file, which also feeds its sha256), computes blends, lays the shards out like the
host's and installs the directory atomically, with the host's config and tokenizer files and
``lensft_manifest.json`` beside them.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any, Optional

from lensft import __version__
from lensft.checkpoints.triple import CheckpointTriple
from lensft.checkpoints.writer import (ByteRange, Progress, Shard, WrittenCheckpoint, check_output_path,
                                      write_checkpoint)
from lensft.graft.plan import GraftPlan, PlanEntry, graft_tensor

log = logging.getLogger(__name__)

MANIFEST_NAME = "lensft_manifest.json"


def _output_shards(plan: GraftPlan, triple: CheckpointTriple) -> list[Shard]:
    """The output files, following the host's sharding (``.bin`` shards get safetensors names);
    tensors in the host file's order, so runs of tensors taken from the host are one byte copy."""
    host = triple[plan.spec.host]
    names = host.shards
    entries = sorted(plan, key=lambda e: (names.index(host.shard_of(e.name)), host.tensors[e.name].offset))
    if len(names) == 1:
        return [Shard("model.safetensors", [e.meta for e in entries])]
    if host.format == "safetensors":
        rename = {s: s for s in names}
    else:
        rename = {s: f"model-{i + 1:05d}-of-{len(names):05d}.safetensors" for i, s in enumerate(names)}
    by_shard: dict[str, Shard] = {}
    for e in entries:
        out_name = rename[host.shard_of(e.name)]
        by_shard.setdefault(out_name, Shard(out_name, [])).metas.append(e.meta)
    return list(by_shard.values())


def _locate(entry: PlanEntry, triple: CheckpointTriple) -> Optional[ByteRange]:
    """The stored bytes of a tensor taken whole from a safetensors checkpoint (None: produce it)."""
    if entry.blended:
        return None
    reader = triple[entry.source if entry.grafted else entry.host]
    if reader.format != "safetensors":
        return None
    m = reader.tensors[entry.name]
    return ByteRange(reader.path / m.file, m.offset, m.nbytes)


def write_graft(plan: GraftPlan, triple: CheckpointTriple, out: str | os.PathLike[str], *, force: bool = False,
                hash_sources: bool = True, progress: Optional[Progress] = None) -> WrittenCheckpoint:
    """Stream a graft to ``out`` as a checkpoint that ``transformers`` loads.

    Writes the grafted tensors (sharded like the host, bit for bit the source bytes for every
    tensor taken whole), the host's ``config.json`` and tokenizer files, and
    ``lensft_manifest.json`` (spec, per-tensor source, lensft version, the resolved path of every
    checkpoint and the sha256 of every weight file the graft reads, keyed by resolved path).
    Each source file is read once, on its own thread; the same read feeds its hash.

    Args:
        plan: from :func:`lensft.graft.plan_graft`.
        triple: the opened source checkpoints.
        out: output directory; must not exist unless ``force``.
        force: replace an existing output directory (only after the new one is complete).
        hash_sources: record sha256 of the source weight files in the manifest.
        progress: called as ``progress(bytes_written, total_bytes)``.
    """
    out = Path(out)
    check_output_path(out, {v.value: r.path for v, r in triple.readers.items()}, force)
    host = triple[plan.spec.host]
    used = sorted({plan.spec.host} | {e.source for e in plan if e.grafted}, key=lambda v: v.value)
    files = [p.resolve() for v in used for p in triple[v].weight_files()] if hash_sources else []
    entries = {e.name: e for e in plan}
    hashes: dict[str, str] = {}

    def manifest() -> dict[str, Any]:
        return {MANIFEST_NAME: {
            "lensft_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "family": plan.family.name,
            "spec": plan.spec.model_dump(mode="json"),
            "label": plan.spec.label,
            "sources": {v.value: str(triple[v].path.resolve()) for v in triple.variants},
            "source_file_sha256": {k: hashes[k] for k in sorted(hashes)},
            "tensors": plan.sources_by_tensor(),
        }}

    result = write_checkpoint(out, _output_shards(plan, triple),
                              lambda n: graft_tensor(entries[n], lambda v, k: triple[v].get(k)),
                              locate=lambda n: _locate(entries[n], triple), hash_files=files, hashes=hashes,
                              copy_files=[host.path / "config.json", *host.tokenizer_files()], sidecars=manifest,
                              force=force, progress=progress)
    log.info("wrote graft %s to %s (%d tensors, %.1f MB)", plan.spec.label, out, result.n_tensors, result.n_bytes / 1e6)
    return result
