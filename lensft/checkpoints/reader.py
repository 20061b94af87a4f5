"""Lazy, read-only access to one local Hugging Face checkpoint directory.

Opening a checkpoint reads ``config.json`` and the safetensors headers only: no tensor
data is loaded until :meth:`CheckpointReader.get` asks for one tensor, so opening an 8B
triple costs a few megabytes. ``.bin`` checkpoints are read with
``torch.load(weights_only=True, mmap=True)``; nothing is ever unpickled with code execution,
no ``trust_remote_code``, no network.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open

from lensft.errors import CheckpointError, LensftError
from lensft.families import FamilySpec, TensorInfo, family_for_config

log = logging.getLogger(__name__)

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
TORCH_TO_SAFETENSORS: dict[torch.dtype, str] = {v: k for k, v in SAFETENSORS_DTYPES.items()}

#: Files copied from a host checkpoint into a written graft (tokenizer and generation settings).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


@dataclass(frozen=True)
class TensorMeta:
    """Name, shape, dtype and file of one stored tensor (no data)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: str
    offset: int = -1  #: absolute byte offset of the data in a safetensors file (-1 for .bin)

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


@dataclass
class CheckpointReader:
    """A local HF checkpoint opened lazily.

    Attributes:
        path: the checkpoint directory.
        config: the parsed ``config.json``.
        family: the architecture family, found from ``model_type``/``architectures``.
        tensors: metadata of every stored tensor, by on-disk name.
        format: ``safetensors`` or ``bin``.
        shards: weight files (relative names) in index order.
    """

    path: Path
    config: dict[str, Any]
    family: FamilySpec
    tensors: dict[str, TensorMeta]
    format: str
    shards: list[str]
    _handles: dict[str, Any] = field(default_factory=dict, repr=False)
    _finite_checked: set[str] = field(default_factory=set, repr=False)

    # --- structure ---------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if key in self.config:
                return int(self.config[key])
        raise CheckpointError(f"{self.path}/config.json has no layer count (num_hidden_layers)")

    @property
    def name(self) -> str:
        return self.path.name

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def info(self, name: str) -> TensorInfo:
        """Role and layer of a stored tensor (every stored tensor has one; checked at open)."""
        info = self.family.classify(name)
        assert info is not None, name
        return info

    def shard_of(self, name: str) -> str:
        return self.tensors[name].file

    def weight_files(self) -> list[Path]:
        return [self.path / s for s in self.shards]

    def tokenizer_files(self) -> list[Path]:
        return [self.path / f for f in TOKENIZER_FILES if (self.path / f).is_file()]

    # --- data --------------------------------------------------------------------------
    def get(self, name: str) -> torch.Tensor:
        """Read one tensor from disk (a fresh CPU tensor; the file is never modified)."""
        meta = self.tensors.get(name)
        if meta is None:
            raise CheckpointError(f"{self.path} has no tensor {name!r}")
        try:
            if self.format == "safetensors":
                t = self._read_safetensors(meta)
            else:
                t = self._handle(meta.file)[name].clone()
        except Exception as e:  # a shard truncated after opening, a bad read
            raise CheckpointError(f"cannot read tensor {name!r} from {self.path / meta.file}: {e}") from None
        return self._checked(name, t)

    def _checked(self, name: str, t: torch.Tensor) -> torch.Tensor:
        if name not in self._finite_checked:
            self._finite_checked.add(name)
            warn_nonfinite(name, t, self.path)
        return t

    def iter_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.tensors:
            yield name, self.get(name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor, loaded (use for small models and in-memory grafts)."""
        return dict(self.iter_tensors())

    def close(self) -> None:
        for h in self._handles.values():
            if hasattr(h, "close"):
                h.close()
        self._handles.clear()

    def _read_safetensors(self, meta: TensorMeta) -> torch.Tensor:
        """Read one tensor's bytes with a plain positional read into a fresh buffer.

        safetensors' ``safe_open`` maps the whole file, and every page a read touches then counts
        towards this process's resident memory until the file is closed: streaming a graft through
        it holds the whole checkpoint resident. A positional read holds only this tensor.
        """
        fh = self._handle(meta.file)
        buf = bytearray(meta.nbytes)
        if meta.nbytes:
            n = os.preadv(fh.fileno(), [buf], meta.offset)
            if n != meta.nbytes:
                raise CheckpointError(f"{self.path / meta.file} is truncated: tensor {meta.name!r} is incomplete")
            return torch.frombuffer(buf, dtype=meta.dtype).reshape(meta.shape)
        return torch.empty(meta.shape, dtype=meta.dtype)

    def _handle(self, file: str) -> Any:
        h = self._handles.get(file)
        if h is None:
            p = self.path / file
            if self.format == "safetensors":
                h = open(p, "rb")
            else:
                h = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            self._handles[file] = h
        return h


def warn_nonfinite(name: str, t: torch.Tensor, where: object) -> bool:
    """Log a warning naming ``name`` (a tensor of checkpoint ``where``) if it holds NaN or Inf; True if so.

    Costs one reduction over the tensor (``aminmax``), no full-size temporary, in the common case."""
    if not t.is_floating_point() or t.numel() == 0:
        return False
    try:
        lo, hi = torch.aminmax(t)
        finite = bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))
    except RuntimeError:  # a dtype without aminmax (float8)
        finite = bool(torch.isfinite(t.float()).all())
    if finite:
        return False
    n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    log.warning("tensor %r of %s holds %d NaN and %d infinite values; measurements on it will be NaN or "
                "meaningless: check how the checkpoint was made", name, where, n_nan, n_inf)
    return True


def open_checkpoint(path: str | os.PathLike[str]) -> CheckpointReader:
    """Open a local HF checkpoint directory lazily and validate its structure.

    Checks: the directory and ``config.json`` exist; weights exist (``model.safetensors``,
    a sharded safetensors index, or ``pytorch_model.bin`` [+ index]); every shard named by
    the index exists and its header is readable; the family is known; every stored tensor
    belongs to the family map and every required tensor is present.

    Raises:
        CheckpointError: with one line naming the missing/broken file or tensor.
        UnknownFamily: when the architecture has no family map.
    """
    p = Path(path).expanduser()
    _check_link(p, "checkpoint")
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a local Hugging Face model directory")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} is not a directory; pass the directory that holds config.json")
    if not os.access(p, os.R_OK | os.X_OK):
        raise CheckpointError(f"checkpoint {p} cannot be read (permission denied); ask its owner for read access")
    cfg_path = p / "config.json"
    _check_link(cfg_path, "config")
    if not cfg_path.is_file():
        raise CheckpointError(f"{p} has no config.json; pass a Hugging Face model directory (save_pretrained output)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e})") from None
    family = _family(p, config)

    fmt, shards = _find_weight_files(p)
    tensors: dict[str, TensorMeta] = {}
    handles: dict[str, Any] = {}
    for shard in shards:
        f = p / shard
        _check_link(f, "shard")
        if not f.is_file():
            raise CheckpointError(f"{p} is missing shard {shard} named in its index; re-download or re-save the checkpoint")
        if fmt == "safetensors":
            data_start, header = _check_safetensors_size(f)
            try:  # let safetensors validate the header (offsets, dtypes, overlaps) before we trust it
                with safe_open(str(f), framework="pt", device="cpu") as h:
                    names = list(h.keys())
            except Exception as e:
                raise CheckpointError(f"{f} is not a readable safetensors file ({_one_line(e)}); it may be truncated") from None
            for name in names:
                info = header[name]
                dt = SAFETENSORS_DTYPES.get(info["dtype"])
                if dt is None:
                    raise CheckpointError(f"{f}: tensor {name!r} has unsupported dtype {info['dtype']}")
                tensors[name] = TensorMeta(name, tuple(info["shape"]), dt, shard, data_start + info["data_offsets"][0])
            continue
        else:
            try:
                sd = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise CheckpointError(f"{f} is not a readable torch checkpoint ({_one_line(e)}); lensft loads .bin files only with weights_only=True") from None
            for name, t in sd.items():
                tensors[name] = TensorMeta(name, tuple(t.shape), t.dtype, shard)
            handles[shard] = sd

    reader = CheckpointReader(p, config, family, tensors, fmt, shards, handles)
    _check_against_family(reader)
    log.info("opened %s: %s, %d tensors in %d file(s)", p, family.name, len(tensors), len(shards))
    return reader


def _check_link(p: Path, what: str) -> None:
    """Refuse a symbolic link that leads nowhere (a loop, or a target that is gone) by name."""
    if p.is_symlink() and not p.exists():
        raise CheckpointError(f"{what} {p} is a symbolic link that leads nowhere (a symbolic link loop or a "
                              "missing target); point it at the real file or directory")


def _family(p: Path, config: dict[str, Any]) -> FamilySpec:
    """The family of ``config``; a checkpoint that ships its own model code (``auto_map``) is read
    with transformers' built-in class of its model type, or refused when there is none: lensft
    never runs code from a checkpoint (no ``trust_remote_code``)."""
    custom = sorted(config.get("auto_map") or {}) if isinstance(config.get("auto_map"), dict) else []
    try:
        family = family_for_config(config)
    except LensftError:
        if custom:
            raise CheckpointError(
                f"{p} needs its own code to load (config.json auto_map: {', '.join(custom)}); lensft never runs "
                "code from a checkpoint (no trust_remote_code): convert it to a supported model type") from None
        raise
    if custom:
        log.warning("%s ships its own code (auto_map: %s); lensft ignores it and uses transformers' built-in %s",
                    p, ", ".join(custom), config.get("model_type"))
    return family


def _find_weight_files(p: Path) -> tuple[str, list[str]]:
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json", "model.safetensors", "pytorch_model.bin"):
        _check_link(p / name, "weights file")
    for index_name, fmt in (("model.safetensors.index.json", "safetensors"), ("pytorch_model.bin.index.json", "bin")):
        idx = p / index_name
        if idx.is_file():
            try:
                weight_map = json.loads(idx.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{idx} is not a valid index (no weight_map: {e})") from None
            return fmt, list(dict.fromkeys(weight_map.values()))
    if (p / "model.safetensors").is_file():
        return "safetensors", ["model.safetensors"]
    if (p / "pytorch_model.bin").is_file():
        return "bin", ["pytorch_model.bin"]
    raise CheckpointError(
        f"{p} has no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin); "
        "save the model with save_pretrained"
    )


def _check_safetensors_size(f: Path) -> tuple[int, dict[str, Any]]:
    """Refuse a truncated file before safetensors maps it: header length + data must fit.

    Returns the byte offset where tensor data starts and the parsed header.
    """
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{f} is truncated ({size} bytes); re-save the checkpoint")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise CheckpointError(f"{f} is truncated or not a safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{f} has a corrupt safetensors header; re-save the checkpoint") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"{f} is truncated: its header needs {8 + n + end} bytes but the file has {size}")
    return 8 + n, header


def _check_against_family(reader: CheckpointReader) -> None:
    fam = reader.family
    unknown = [n for n in reader.tensors if fam.classify(n) is None]
    if unknown:
        raise CheckpointError(
            f"{reader.path}: tensor {unknown[0]!r} is not in the {fam.name} family map "
            f"({len(unknown)} unmapped); add its template to lensft/families/data/{fam.name}.json"
        )
    n_layers = reader.n_layers
    for name in fam.expected_names(n_layers):
        if name not in reader.tensors:
            raise CheckpointError(f"{reader.path} is missing tensor {name!r} required by the {fam.name} family map")
    for name in reader.tensors:
        info = fam.classify(name)
        if info is not None and info.layer is not None and info.layer >= n_layers:
            raise CheckpointError(f"{reader.path}: tensor {name!r} is beyond num_hidden_layers={n_layers}")


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
