"""Writing a graft to disk as a loadable checkpoint (``lensft swap``).

The plan says where every tensor comes from; :func:`lensft.checkpoints.writer.write_checkpoint`
streams them into safetensors shards laid out like the host's and installs the directory
atomically, with the host's config and tokenizer files and ``lensft_manifest.json`` beside them.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional

from lensft import __version__
from lensft.checkpoints.triple import CheckpointTriple
from lensft.checkpoints.writer import Progress, Shard, WrittenCheckpoint, check_output_path, write_checkpoint
from lensft.graft.plan import GraftPlan, graft_tensor
from lensft.hashing import sha256_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "lensft_manifest.json"


def _output_shards(plan: GraftPlan, triple: CheckpointTriple) -> list[Shard]:
    """The output files, following the host's sharding (``.bin`` shards get safetensors names)."""
    host = triple[plan.spec.host]
    names = host.shards
    if len(names) == 1:
        return [Shard("model.safetensors", [e.meta for e in plan])]
    if host.format == "safetensors":
        rename = {s: s for s in names}
    else:
        rename = {s: f"model-{i + 1:05d}-of-{len(names):05d}.safetensors" for i, s in enumerate(names)}
    by_shard: dict[str, Shard] = {}
    for e in plan:
        out_name = rename[host.shard_of(e.name)]
        by_shard.setdefault(out_name, Shard(out_name, [])).metas.append(e.meta)
    return list(by_shard.values())


def _hash_files(paths: list[Path], out: dict[str, str]) -> None:
    for p in paths:
        out[str(p)] = sha256_file(p)


def write_graft(plan: GraftPlan, triple: CheckpointTriple, out: str | os.PathLike[str], *, force: bool = False,
                hash_sources: bool = True, progress: Optional[Progress] = None) -> WrittenCheckpoint:
    """Stream a graft to ``out`` as a checkpoint that ``transformers`` loads.

    Writes the grafted tensors (sharded like the host), the host's ``config.json`` and tokenizer
    files, and ``lensft_manifest.json`` (spec, per-tensor source, lensft version, sha256 of every
    source weight file). Source files are hashed on a background thread while tensors stream.

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
    hashes: dict[str, str] = {}
    hasher: threading.Thread | None = None
    if hash_sources:
        files = [p for v in used for p in triple[v].weight_files()]
        hasher = threading.Thread(target=_hash_files, args=(files, hashes), daemon=True)
        hasher.start()
    entries = {e.name: e for e in plan}

    def manifest() -> dict[str, Any]:
        if hasher is not None:
            hasher.join()
        return {MANIFEST_NAME: {
            "lensft_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "family": plan.family.name,
            "spec": plan.spec.model_dump(mode="json"),
            "label": plan.spec.label,
            "sources": {v.value: str(triple[v].path.resolve()) for v in triple.variants},
            "source_file_sha256": hashes,
            "tensors": plan.sources_by_tensor(),
        }}

    result = write_checkpoint(out, _output_shards(plan, triple), lambda n: graft_tensor(entries[n], lambda v, k: triple[v].get(k)),
                              copy_files=[host.path / "config.json", *host.tokenizer_files()], sidecars=manifest,
                              force=force, progress=progress)
    log.info("wrote graft %s to %s (%d tensors, %.1f MB)", plan.spec.label, out, result.n_tensors, result.n_bytes / 1e6)
    return result
