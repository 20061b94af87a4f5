"""Positive control on a real pretrained model: attention statistics of SmolLM2-135M-Instruct at its
full 8,192-token context, streamed, in memory linear in the length.

One layer's n x n attention patterns at 8,192 tokens take 9 heads x 8192^2 x 4 bytes = 2.25 GiB
(eager attention builds them layer by layer); all 30 layers, as ``output_attentions`` returns
them, 67.5 GiB. The ``attention_spread`` probe streams them: its memory grows linearly with the length.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from lensft.handle import load_model
from lensft.probes.attention_spread import AttentionSpreadSettings, attention_spread
from lensft.prompts import make_prompt_set
from lensft.prompts.haystack import filler_paragraphs
from lensft.prompts.schema import TextItem

pytestmark = pytest.mark.real


def _kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[dict[str, int]]:
    """Peak resident memory (bytes) above the resident memory at entry, for this process (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    out = {"start": _kib("VmRSS") * 1024}
    yield out
    out["growth"] = _kib("VmHWM") * 1024 - out["start"]


def _filler_text(n_tokens: int) -> str:
    gen = filler_paragraphs(5)
    return "\n\n".join(" ".join(next(gen)) for _ in range(n_tokens // 60))  # ~1.3 tokens/word: > n_tokens


def test_attention_spread_at_the_full_8k_context_in_linear_memory(smollm2) -> None:
    """Peak memory of the probe at 8,192 tokens: besides the logits the forward returns for every
    position (n x vocab floats), less than a quarter of ONE layer's n x n attention patterns (eager
    attention would hold a whole layer's; output_attentions all 30). A ratio against a shorter run
    is not used: in a long-lived process the allocator keeps freed pages resident, so the shorter
    run's growth can read as 0 (it did in the full suite)."""
    h = load_model(smollm2)
    n = int(h.config.max_position_embeddings)
    assert n == 8192
    ps = make_prompt_set("long", "1", "text", [TextItem(id="filler", text=_filler_text(n))])
    growth = {}
    for length in (n // 4, n):
        with peak_rss_growth() as mem:
            res = attention_spread(h, ps, AttentionSpreadSettings(max_length=length))
        growth[length] = mem["growth"]
        assert res.records[0]["n_tokens"] == length and res.records[0]["truncated"]
    one_layer_patterns = h.n_heads * n * n * 4
    logits = n * int(h.config.vocab_size) * 4
    assert growth[n] - logits < one_layer_patterns / 4, {k: v / 2**20 for k, v in growth.items()}
    ent, norm = res.array("entropy")[0], res.array("norm_entropy")[0]  # phase "all": [layer, head]
    assert ent.shape == (h.n_layers, h.n_heads) and np.isfinite(ent).all()
    assert (ent > 0).all() and (ent < math.log(n)).all() and ((norm > 0) & (norm < 1)).all()
    assert ent.std() > 0.3  # heads differ: some focus, some spread
    assert res.array("sink")[0].max() > 0.5  # a real model parks attention on the first token (attention sinks)
