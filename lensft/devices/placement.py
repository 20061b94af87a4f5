"""Device maps for ``auto``: the model's blocks in execution order over the GPUs, then the CPU.

A model is cut into *units* (the input embedding, each transformer layer, the final norm, the
head, and any other module that owns a tensor) in the order the forward pass meets them.
:func:`plan_device_map` fills the GPUs in turn with whole units and sends what is left to the
CPU (offloaded: accelerate moves it to the first GPU when it runs); never to the disk. A unit is
never split, and a head tied to the input embedding stays with it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn

from lensft.errors import InsufficientMemory


def model_units(model: nn.Module, layers_path: str) -> list[tuple[str, int]]:
    """``(module name, bytes)`` of every unit of ``model`` in registration (execution) order.

    A unit is ``<layers_path>.<i>`` for a transformer layer, else the module that owns a
    parameter or buffer. Tied parameters count once, under the first unit that holds them;
    later units holding them get 0 bytes.
    """
    sizes: "OrderedDict[str, int]" = OrderedDict()
    seen: set[int] = set()
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    prefix = layers_path + "."
    for name, t in named:
        if name.startswith(prefix):
            unit = prefix + name[len(prefix):].split(".", 1)[0]
        else:
            unit = name.rpartition(".")[0]
        key = id(t)
        n = 0 if key in seen else t.numel() * t.element_size()
        seen.add(key)
        sizes[unit] = sizes.get(unit, 0) + n
    return list(sizes.items())


def plan_device_map(units: Sequence[tuple[str, int]], budgets: Sequence[tuple[str, int]], *,
                    tied: Mapping[str, str] | None = None, suggest_dtype: bool = True) -> dict[str, str]:
    """Place units in order: each on the current device while it fits, else on the next one.

    Args:
        units: ``(module name, bytes)`` in execution order (:func:`model_units`).
        budgets: ``(device, bytes free for weights)`` in the order to fill: the GPUs, then ``cpu``.
        tied: ``unit -> unit it must share a device with`` (a head tied to the embedding).
        suggest_dtype: the refusal suggests a smaller dtype (the weights are float32).

    Returns:
        ``{module name: device}`` for accelerate / ``from_pretrained(device_map=...)``.

    Raises:
        InsufficientMemory: the units do not fit in the budgets.
    """
    tied = dict(tied or {})
    left = [b for _, b in budgets]
    out: dict[str, str] = {}
    cur = 0
    for name, size in units:
        if name in tied and tied[name] in out:
            out[name] = out[tied[name]]
            continue
        while cur < len(budgets) and size > left[cur]:
            cur += 1
        if cur == len(budgets):
            need = sum(s for _, s in units)
            have = sum(b for _, b in budgets)
            raise InsufficientMemory(
                f"the weights need {need / 1e9:.2f} GB but {' + '.join(d for d, _ in budgets)} have "
                f"{have / 1e9:.2f} GB free (module {name} does not fit)", remedies=("dtype",) if suggest_dtype else (),
                phrases={"dtype": "a smaller dtype (bfloat16)"})
        left[cur] -= size
        out[name] = budgets[cur][0]
    return out


def device_of(name: str, device_map: Mapping[str, str]) -> str:
    """The device of a parameter or module path under a device map (longest matching prefix)."""
    best, where = -1, None
    for unit, dev in device_map.items():
        if (unit == "" or name == unit or name.startswith(unit + ".")) and len(unit) > best:
            best, where = len(unit), dev
    if where is None:
        raise KeyError(f"{name} is not covered by the device map")
    return where


def tied_units(model: nn.Module, units: Sequence[tuple[str, int]], layers_path: str) -> dict[str, str]:
    """``unit -> earlier unit`` for units that hold a parameter first held by an earlier unit."""
    order = {name: i for i, (name, _) in enumerate(units)}
    owner: dict[int, str] = {}
    tied: dict[str, str] = {}
    prefix = layers_path + "."
    for name, p in model.named_parameters(remove_duplicate=False):
        unit = prefix + name[len(prefix):].split(".", 1)[0] if name.startswith(prefix) else name.rpartition(".")[0]
        first = owner.setdefault(id(p), unit)
        if first != unit and order.get(first, 0) < order.get(unit, 0):
            tied[unit] = first
    return tied


def auto_budgets(free: Mapping[str, int], *, reserve_first_gpu: int = 0) -> list[tuple[str, int]]:
    """Bytes each device may take in weights under ``auto``: the GPUs in index order, then the CPU.

    Each GPU keeps 5% of its free memory and 256 MiB (CUDA context, allocator) free, the first
    GPU also ``reserve_first_gpu`` (the activations, which run there); the CPU keeps 10%.
    """
    gpus = sorted((k for k in free if k.startswith("cuda:")), key=lambda k: int(k.split(":")[1]))
    out = []
    for i, k in enumerate(gpus):
        room = int(free[k] * 0.95) - (256 << 20) - (reserve_first_gpu if i == 0 else 0)
        out.append((k, max(room, 0)))
    if "cpu" in free:
        out.append(("cpu", int(free["cpu"] * 0.9)))
    return out


def auto_device_map(model: nn.Module, layers_path: str, budgets: Sequence[tuple[str, int]]) -> dict[str, str]:
    """:func:`plan_device_map` over the units of ``model`` (built on ``meta`` at the load dtype)."""
    units = model_units(model, layers_path)
    fp32 = any(p.dtype == torch.float32 for p in model.parameters())
    return plan_device_map(units, budgets, tied=tied_units(model, units, layers_path), suggest_dtype=fp32)


def accelerate_map(device_map: Mapping[str, str]) -> dict[str, int | str]:
    """The same map with GPUs as indices, the form accelerate and ``from_pretrained`` take."""
    return {k: int(v.split(":")[1]) if v.startswith("cuda:") else v for k, v in device_map.items()}
