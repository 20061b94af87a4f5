"""The loading options every loader takes, and how they resolve to a device and a dtype.

``device`` names where the model runs:

- ``cpu`` (the default);
- ``cuda`` (the current GPU) or ``cuda:N``;
- ``auto``: accelerate's ``device_map="auto"`` over every visible GPU, with the CPU as the
  last resort for layers that do not fit (never the disk); on a machine without a GPU it is
  the CPU;
- ``meta``: shapes and dtypes without data (a dry run: structure, placement, memory estimate).

``dtype`` is ``float32``, ``bfloat16`` or ``float16``; None keeps the checkpoint's own dtype
(``torch_dtype`` / ``dtype`` in its config, else the dtype of its stored float tensors), as
``from_pretrained(dtype="auto")`` does.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lensft.errors import LensftError

log = logging.getLogger(__name__)

DTypeName = Literal["float32", "bfloat16", "float16"]
#: The dtypes a model may be loaded in, by name.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DEVICE = re.compile(r"^(cpu|meta|auto|cuda(:\d+)?)$")


class DeviceUnavailable(LensftError):
    """The device asked for does not exist on this machine."""


class LoadOptions(BaseModel):
    """Where and how to load a model (one object for the API, the CLI and the study).

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:N``, ``auto`` or ``meta`` (see the module docstring).
        dtype: ``float32``, ``bfloat16``, ``float16`` or None (the checkpoint's own dtype);
            a ``torch.dtype`` is accepted too.
        tokens_per_batch: the most tokens one forward pass will hold (batch size x sequence
            length), for the activation part of the memory check; 0 checks the weights only.
        check_memory: refuse, before loading, a model that does not fit in free memory.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = "cpu"
    dtype: Optional[DTypeName] = None
    tokens_per_batch: int = Field(0, ge=0)
    check_memory: bool = True

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> str:
        s = str(v).strip().lower()
        if not _DEVICE.match(s):
            raise ValueError(f"device must be cpu, cuda, cuda:N, auto or meta, not {v!r}")
        return s

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> Any:
        if isinstance(v, torch.dtype):
            names = {t: n for n, t in DTYPES.items()}
            if v not in names:
                raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {v}")
            return names[v]
        return v.strip().lower() if isinstance(v, str) else v

    @classmethod
    def parse(cls, **values: Any) -> "LoadOptions":
        """Build options from user input, raising a one-line :class:`LensftError` when invalid."""
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            raise LensftError(f"load option {where}: {msg}") from None

    @property
    def torch_dtype(self) -> Optional[torch.dtype]:
        """The requested dtype, or None for the checkpoint's own."""
        return DTYPES[self.dtype] if self.dtype else None


@dataclass(frozen=True)
class Placement:
    """A resolved device: one device for every tensor, or ``auto`` over ``gpus`` (+ CPU offload).

    ``device`` is where inputs go: the single device, or the first GPU for ``auto``.
    """

    kind: Literal["single", "auto"]
    device: torch.device
    gpus: tuple[int, ...] = ()

    @property
    def is_meta(self) -> bool:
        return self.device.type == "meta"

    def __str__(self) -> str:
        if self.kind == "auto":
            return f"auto ({', '.join(f'cuda:{i}' for i in self.gpus)} + CPU offload)"
        return str(self.device)


def resolve_placement(options: LoadOptions) -> Placement:
    """Check that the requested device exists here and resolve ``cuda`` / ``auto``.

    Raises:
        DeviceUnavailable: a GPU was asked for but torch sees none (or not that many).
    """
    dev = options.device
    if dev in ("cpu", "meta"):
        return Placement("single", torch.device(dev))
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev == "auto":
        if n_gpu == 0:
            log.info("device auto: no GPU is visible, loading on the CPU")
            return Placement("single", torch.device("cpu"))
        return Placement("auto", torch.device("cuda", 0), tuple(range(n_gpu)))
    if n_gpu == 0:
        raise DeviceUnavailable(f"device {dev} was asked for, but torch sees no GPU (no CUDA device, or a CPU-only "
                                "build of torch); load on the CPU (device cpu) or install a CUDA build of torch")
    index = int(dev.split(":")[1]) if ":" in dev else torch.cuda.current_device()
    if index >= n_gpu:
        raise DeviceUnavailable(f"device {dev} was asked for, but only {n_gpu} GPU(s) are visible "
                                f"(cuda:0..cuda:{n_gpu - 1}); choose one of them or device auto")
    return Placement("single", torch.device("cuda", index))


def _config_dtype(config: Mapping[str, Any]) -> Optional[torch.dtype]:
    for key in ("torch_dtype", "dtype"):
        name = config.get(key)
        if isinstance(name, str):
            name = name.replace("torch.", "")
            if name in DTYPES:
                return DTYPES[name]
    text = config.get("text_config")
    return _config_dtype(text) if isinstance(text, Mapping) else None


def resolve_dtype(options: LoadOptions, config: Mapping[str, Any], stored: Iterable[torch.dtype] = ()) -> torch.dtype:
    """The dtype to load in: the requested one, else the config's, else the most common stored
    float dtype (by tensor count), else float32."""
    if options.torch_dtype is not None:
        return options.torch_dtype
    from_config = _config_dtype(config)
    if from_config is not None:
        return from_config
    floats = Counter(d for d in stored if d.is_floating_point and d in DTYPES.values())
    return floats.most_common(1)[0][0] if floats else torch.float32
