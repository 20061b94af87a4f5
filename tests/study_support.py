"""Helpers shared by the study, report and analyses tests: a tiny organism study, cached on disk
under pytest's base temp directory so the test modules share one build and one study run."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from lensft.report.pipeline import run_study as run
from lensft.study import StepConfig, StudyConfig


#: the default steps, with the benchmarks step scoring the organism's task sets through lm-eval on the arms
TINY_STEPS = {"benchmarks": StepConfig(settings={"tasks": ["organism"], "models": ["arms"]})}


def tiny_organism_dir(factory: pytest.TempPathFactory) -> Path:
    return factory.getbasetemp() / "tiny-organism"


def tiny_study(factory: pytest.TempPathFactory) -> Path:
    """Run (or resume) the whole study on the tiny organism with one mix; return the results directory."""
    out = factory.getbasetemp() / "tiny-study"
    if (out / "report.html").exists() and (out / "manifest.json").exists():
        return out
    cfg = StudyConfig(organism="tiny", organism_dir=str(tiny_organism_dir(factory)), mixes=[0.5], png=False,
                      steps=TINY_STEPS)
    outcome = run(cfg, out)
    assert not outcome.failures, outcome.failures
    return out


def png_distinct_bytes(path: Path) -> int:
    """Number of distinct byte values in a PNG's decompressed pixel data (1-2 for a blank image)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))
