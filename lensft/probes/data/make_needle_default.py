"""Regenerate ``needle_default.jsonl``, the tiny built-in needle-in-a-haystack set of ``lensft probe``.

    python lensft/probes/data/make_needle_default.py

Deterministic: the haystack sentences, needle depths and codes are fixed below.
"""

from __future__ import annotations

import json
from pathlib import Path

from lensft.atomic import write_text_atomic

FILLER = [
    "The river was calm in the morning and the boats waited by the old bridge.",
    "Farmers in the valley grow wheat, barley and a few rows of sunflowers.",
    "The library opens at nine and closes late on Thursdays in the summer.",
    "A light rain fell over the hills while the market traders packed up.",
    "The train to the coast leaves every hour from the second platform.",
    "Children played in the square as the bakery sold its last loaves.",
    "The museum keeps a collection of maps drawn by sailors long ago.",
    "Snow covered the mountain pass until the middle of the spring.",
]
NEEDLES = [("4 7 2 9", 0.1, 6), ("8 1 5 3", 0.5, 10), ("6 0 9 2", 0.9, 14), ("3 3 8 5", 0.3, 20)]


def main() -> None:
    out = Path(__file__).with_name("needle_default.jsonl")
    header = {"lensft_prompt_set": 1, "name": "needle_default", "version": "1", "kind": "needle",
              "description": "tiny built-in needle-in-a-haystack set: a secret code hidden among filler sentences",
              "chat": True}
    lines = [json.dumps(header)]
    for i, (code, depth, n_sent) in enumerate(NEEDLES):
        hay = [FILLER[(i + j) % len(FILLER)] for j in range(n_sent)]
        at = round(depth * n_sent)
        before = " ".join(hay[:at])
        lead = "The secret code is "
        text = (before + " " if before else "") + lead + code + ". " + " ".join(hay[at:])
        prompt = text + "\nWhat is the secret code?"
        start = len(before) + (1 if before else 0) + len(lead)
        assert prompt[start:start + len(code)] == code
        item = {"id": f"needle-{i}", "prompt": prompt, "needle": {"name": "needle", "start": start, "end": start + len(code)},
                "answer": code, "context_tokens": len(text.split()), "depth": depth}
        lines.append(json.dumps(item))
    write_text_atomic(out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
