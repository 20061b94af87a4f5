"""Wu et al.-style needle prompt sets built offline (lensft.prompts.needles, lensft.prompts.haystack)."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from lensft.errors import PromptSetError
from lensft.prompts import build_needle_item, build_needle_set, read_prompt_set, write_prompt_set
from lensft.prompts.haystack import filler_paragraphs
from lensft.prompts.needles import TOKENS_PER_WORD, estimate_tokens
from lensft.variants import Variant

WU_PROMPT = re.compile(r"^<book>(.+)</book>\nBased on the content of the book, Question: (.+\?)\nAnswer:$", re.S)


@pytest.fixture(scope="module")
def tokenizer(pico_triples):
    return AutoTokenizer.from_pretrained(pico_triples["llama"][Variant.BASE])


@pytest.mark.parametrize("style", ["wu", "magic_number"])
def test_items_hold_the_needle_at_its_span_in_wu_prompt_words(style: str) -> None:
    ps = build_needle_set((300, 600), 4, style=style, seed=3)
    assert len(ps) == 8 and ps.kind == "needle" and ps.header.chat
    for it in ps.items:
        m = WU_PROMPT.match(it.prompt)
        assert m, it.prompt[-200:]
        assert it.prompt[it.needle.start:it.needle.end] == it.answer
        assert it.prompt.count(it.answer) == 1
        assert it.meta["needle_sentence"] in m.group(1) and it.meta["question"] == m.group(2)
        if style == "magic_number":
            assert re.fullmatch(r"[1-9]\d{6}", it.answer)
        else:
            assert it.meta["needle_sentence"] == f"The best thing to do in {it.meta['question'][32:-1]} is to {it.answer}."


def test_depths_are_stratified_and_measured_where_the_needle_sits() -> None:
    n = 5
    ps = build_needle_set((1500,), n, seed=1)
    for i, it in enumerate(ps.items):
        assert i / n <= it.meta["target_depth"] < (i + 1) / n
        hay = WU_PROMPT.match(it.prompt).group(1)
        words_before = len(hay[:hay.index(it.meta["needle_sentence"])].split())
        share = words_before / (len(hay.split()) - len(it.meta["needle_sentence"].split()))
        assert share == pytest.approx(it.depth, abs=0.03)  # token share vs word share
        assert it.depth == pytest.approx(it.meta["target_depth"], abs=0.05)  # one sentence is ~1-2% of 1500 tokens


def test_tokenizer_sizes_the_haystack(tokenizer) -> None:
    ps = build_needle_set((400, 1200), 3, tokenizer=tokenizer)
    for it in ps.items:
        hay = WU_PROMPT.match(it.prompt).group(1)
        n = len(tokenizer(hay, add_special_tokens=False)["input_ids"])
        assert n == it.context_tokens
        # never past the target (but for separators), and short of it by less than a sentence (~40 pico tokens)
        assert it.meta["target_tokens"] - 60 <= n <= 1.01 * it.meta["target_tokens"]
        assert it.meta["counted"] == "tokenizer"


def test_estimated_lengths_count_words() -> None:
    it = build_needle_item("x", 2000, 0.5)
    hay = WU_PROMPT.match(it.prompt).group(1)
    assert it.context_tokens == estimate_tokens(hay) and it.meta["counted"] == "estimate"
    assert 0.97 * 2000 <= len(hay.split()) * TOKENS_PER_WORD <= 1.01 * 2000


def test_deterministic_in_the_seed(tmp_path) -> None:
    a, b, c = (build_needle_set((300,), 3, seed=s) for s in (7, 7, 8))
    assert a == b and a != c
    back = read_prompt_set(write_prompt_set(a, tmp_path / "n.jsonl"))
    assert back == a


def test_filler_cannot_compete_with_the_needles() -> None:
    gen = filler_paragraphs(0)
    text = " ".join(" ".join(next(gen)) for _ in range(400))
    assert not re.search(r"\d", text)
    assert "magic number" not in text.lower() and "best thing to do" not in text.lower()
    sentences = re.findall(r"[^.]+\.", text)
    assert len(set(sentences)) > 0.9 * len(sentences)  # hardly repeats itself


@pytest.mark.parametrize("kw,msg", [({"style": "haiku"}, "needle style"), ({"lengths": (10,)}, "too short"),
                                    ({"items_per_length": 0}, "at least one")])
def test_bad_arguments_raise_one_line(kw: dict, msg: str) -> None:
    with pytest.raises(PromptSetError, match=msg):
        build_needle_set(**kw)
