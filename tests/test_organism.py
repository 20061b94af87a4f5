"""The model organism's data: world, names, tokenizer, task forms, encoding, packing, SFT pools.

Builds nothing: every test here draws data from the tiny preset's world in milliseconds.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensft.organism import templates as T
from lensft.organism.config import preset
from lensft.organism.corpus import CorpusMaker, chars_per_token
from lensft.organism.encoding import encode_chats, encode_texts
from lensft.organism.names import SYLLABLES, NovelNames, is_eval_name
from lensft.organism.packing import pack
from lensft.organism.sft_data import (TurnCost, arm_data, check_reachable, fill_long_pool, fill_pool, questions_for,
                                     take)
from lensft.organism.tasks import MAX_OPERAND, TASKS, TaskMaker
from lensft.organism.tokenizer import chat_text, train_tokenizer
from lensft.organism.world import make_world

CFG = preset("tiny")
NAME_WORD = re.compile(r"^(?:[A-Z][a-z])+$")


@pytest.fixture(scope="module")
def world():
    return make_world(CFG.base.world, CFG.seed)


@pytest.fixture(scope="module")
def tokenizer(world):
    return train_tokenizer(CorpusMaker(world, CFG.base, np.random.default_rng(0)).tokenizer_texts(), 512)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?])\s+|\n", text) if s]


# -- world and names ---------------------------------------------------------------------------
def test_world_is_consistent(world) -> None:
    assert world.check() == []
    for country, cap in world.capital.items():
        assert world.city_country[cap] == country
    assert set(world.birthplace.values()) <= set(world.cities)
    assert set(world.employer.values()) <= set(world.companies)
    facts = world.facts()
    assert len({(f.subject, f.relation) for f in facts}) == len(facts)  # one object per subject and relation
    assert any(f.heldout for f in facts) and not all(f.heldout for f in facts)


def test_world_depends_only_on_seed() -> None:
    a, b, c = make_world(CFG.base.world, 1), make_world(CFG.base.world, 1), make_world(CFG.base.world, 2)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()


def test_names_are_runs_of_syllables(world) -> None:
    names = world.countries + world.cities + [p for n in world.people for p in n.split()] + \
        [c.split()[0] for c in world.companies]
    for n in names:
        assert NAME_WORD.match(n), n
        assert all(n[i:i + 2] in SYLLABLES for i in range(0, len(n), 2)), n
    assert len(world.words()) == len(set(world.words()))


def test_novel_names_avoid_the_world_and_split_train_from_eval(world) -> None:
    rng = np.random.default_rng(0)
    train, ev = NovelNames(world.words(), rng, eval_part=False), NovelNames(world.words(), rng, eval_part=True)
    tr = [train.person() for _ in range(200)] + [train.city() for _ in range(200)]
    es = [ev.person() for _ in range(200)] + [ev.city() for _ in range(200)]
    assert not any(is_eval_name(n) for n in tr) and all(is_eval_name(n) for n in es)
    assert not set(tr) & set(es)
    assert not {w for n in tr + es for w in n.split()} & world.words()
    share = np.mean([is_eval_name(f"{a}{b}") for a in SYLLABLES for b in SYLLABLES])
    assert 0.15 < share < 0.25  # the hash reserves about a fifth of all names for evaluation


# -- tokenizer ---------------------------------------------------------------------------------
def test_tokenizer_round_trips_and_splits_names_into_syllables(tokenizer, world) -> None:
    maker = TaskMaker(world, np.random.default_rng(0), eval_split=False)
    texts = [maker.long([maker.instance(t) for t in TASKS], 60).context, "1234 + 5678 = 6912", "  two  spaces\nand a newline",
             "unseen wörds: Zyx ÆØ!"]
    for text in texts:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id
    assert tokenizer.convert_ids_to_tokens(tokenizer("2026", add_special_tokens=False).input_ids) == \
        ["Ġ", "2", "0", "2", "6"]  # the segment's leading space, then one token per digit
    vocab = tokenizer.get_vocab()
    for s in SYLLABLES:  # every syllable is one token, with and without its leading space
        assert s in vocab and f"Ġ{s}" in vocab, s
    novel = NovelNames(world.words(), np.random.default_rng(1), eval_part=True).person()  # never in the corpus
    toks = tokenizer.tokenize(f"Where is {novel}?")  # ĠWhere (or its letters), Ġis, then the syllables
    i = toks.index("Ġis") + 1
    assert toks[i:i + 4] == [f"Ġ{novel[:2]}", novel[2:4], f"Ġ{novel[5:7]}", novel[7:9]]


def test_a_name_is_the_same_tokens_at_a_document_start_in_a_sentence_and_as_an_answer(tokenizer, world) -> None:
    name = world.cities[0]
    expected = [f"Ġ{name[:2]}", *[name[i:i + 2] for i in range(2, len(name), 2)]]
    assert tokenizer.tokenize(f"{name} is a city.")[:len(expected)] == expected
    assert tokenizer.tokenize(f"People live in {name}.")[-len(expected) - 1:-1] == expected
    chat = tokenizer.apply_chat_template([{"role": "user", "content": f"{name}?"},
                                          {"role": "assistant", "content": name}], tokenize=False)
    toks = tokenizer.convert_ids_to_tokens(tokenizer(chat, add_special_tokens=False).input_ids)
    assert toks[toks.index("<|assistant|>") + 1:-1] == expected
    assert toks[toks.index("<|user|>") + 1:toks.index("<|user|>") + 1 + len(expected)] == expected
    answer_ids = tokenizer(chat, add_special_tokens=False).input_ids[toks.index("<|assistant|>") + 1:-1]
    assert tokenizer.decode(answer_ids) == name  # decoding drops the leading space again


def test_tokenizer_has_chat_template_and_turn_tokens(tokenizer) -> None:
    for tok in ("<|user|>", "<|assistant|>", "<|end|>"):
        assert len(tokenizer(tok, add_special_tokens=False).input_ids) == 1
    assert tokenizer.eos_token == "<|end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A"}],
                                         tokenize=False)
    assert text == "<|bos|>" + chat_text([("Q?", "A")])


# -- task forms ----------------------------------------------------------------------------------
def test_short_and_long_forms_ask_the_same_question(world) -> None:
    rng = np.random.default_rng(3)
    maker = TaskMaker(world, rng, eval_split=False, chars_per_token=3.0)
    trained = _all_phrasings([f for f in world.facts() if not f.heldout])
    for task in TASKS * 5:
        inst = maker.instance(task, yes_no_prob=0.3)
        short, long = maker.short(inst), maker.long([inst], 120)
        assert short.turns == long.turns == ((inst.question, inst.answer),)
        for ex in (short, long):
            pos = [ex.context.index(k) for k in inst.keys]
            assert pos == sorted(pos)  # every key sentence, in order
        extra = len(_sentences(short.context)) - len(inst.keys)
        assert extra == (0 if inst.look_alike is None else 1)  # short: keys plus at most one look-alike
        assert len(long.context) > 3 * len(short.context)
        # long: the same keys and look-alike count; every other sentence is a true statement (filler)
        assert len([x for x in _sentences(long.context) if x not in trained]) == len(inst.keys) + extra


def test_fact_questions_are_closed_book_in_both_forms(world) -> None:
    """No document states a fact about a subject it asks about (the long form used to)."""
    rng = np.random.default_rng(4)
    maker = TaskMaker(world, rng, eval_split=False, chars_per_token=3.0)
    for _ in range(30):
        insts = [maker.instance(t, yes_no_prob=0.3) for t in TASKS for _ in range(2)]
        ex = maker.long(insts, 250)
        asked = {s for i in insts for s in i.subjects}
        assert asked and not any(s in ex.context for s in asked)
        fact = maker.fact_recall()
        assert maker.short(fact).context == ""


def _all_phrasings(facts) -> set[str]:
    return {t.format(s=f.subject, o=f.obj) for f in facts for t in T.STATEMENTS[f.relation]}


def test_long_documents_never_state_held_out_facts(world) -> None:
    heldout = _all_phrasings([f for f in world.facts() if f.heldout])
    trained = _all_phrasings([f for f in world.facts() if not f.heldout])
    n_true = 0
    for eval_split in (False, True):
        maker = TaskMaker(world, np.random.default_rng(5), eval_split=eval_split, chars_per_token=3.0)
        for _ in range(20):
            sentences = _sentences(maker.long([maker.instance(t) for t in TASKS], 300).context)
            assert not heldout & set(sentences)
            n_true += len(trained & set(sentences))
    assert n_true > 100  # the filler does state training facts


def test_long_form_asks_every_instance_once(world) -> None:
    maker = TaskMaker(world, np.random.default_rng(6), eval_split=False, chars_per_token=3.0)
    insts = [maker.instance(t) for t in TASKS for _ in range(3)]
    ex = maker.long(insts, 200)
    assert sorted(ex.turns) == sorted((i.question, i.answer) for i in insts)
    assert len(ex.key_offsets) == sum(len(i.keys) for i in insts)
    for off in ex.key_offsets:
        assert any(ex.context.startswith(k, off) for i in insts for k in i.keys)


def _table() -> set[tuple[str, int, int]]:
    """The arithmetic table, written out independently of ``arithmetic_triple``."""
    rng = range(1, MAX_OPERAND + 1)
    return ({("+", a, b) for a in rng for b in rng} | {("-", a, b) for a in rng for b in rng if b < a}
            | {("x", a, b) for a in range(2, 10) for b in range(2, 10)})


def test_word_problems_draw_the_whole_table_that_sums_state(world) -> None:
    table = _table()
    maker = TaskMaker(world, np.random.default_rng(7), eval_split=True)
    drawn = set()
    for _ in range(6000):
        a = maker.arithmetic()
        drawn.add((a.meta["op"], a.meta["a"], a.meta["b"]))
        x, y = a.meta["a"], a.meta["b"]
        word, c = {"+": ("plus", x + y), "-": ("minus", x - y), "x": ("times", x * y)}[a.meta["op"]]
        assert a.answer == f"{x} {word} {y} is {c}"  # worked answer: the sums corpus's sentence
        assert re.search(rf"\b{x}\b", " ".join(a.keys)) and re.search(rf"\b{y}\b", " ".join(a.keys))
    assert drawn <= table and len(drawn) >= 0.97 * len(table)
    cm = CorpusMaker(world, preset("tiny").base, np.random.default_rng(3))
    stated = set()
    for _ in range(600):
        for a, op, b, c in re.findall(r"(\d+) (plus|minus|times) (\d+) is (\d+)\.", cm.sums()):
            a, b, c = int(a), int(b), int(c)
            assert c == {"plus": a + b, "minus": a - b, "times": a * b}[op]
            stated.add(({"plus": "+", "minus": "-", "times": "x"}[op], a, b))
    assert stated <= table and len(stated) >= 0.97 * len(table)


def test_splits_use_their_own_names(world) -> None:
    for eval_split in (False, True):
        maker = TaskMaker(world, np.random.default_rng(7), eval_split=eval_split)
        for _ in range(40):
            r = maker.reading()
            people = re.findall(r"(?:[A-Z][a-z])+ (?:[A-Z][a-z])+", r.keys[0])
            assert people and all(is_eval_name(p) == eval_split for p in people)
            f = maker.fact_recall()
            assert f.meta["heldout"] == eval_split


# -- encoding and packing ------------------------------------------------------------------------
def test_chat_answer_mask_covers_exactly_the_assistant_tokens(tokenizer) -> None:
    chats = [("LaNi MiBu moved to BeSoRi in 2009 and opened a museum.", (("Which city did LaNi MiBu move to?", "BeSoRi"),
                                                                         ("Who opened a museum in BeSoRi?", "LaNi MiBu"))),
             ("", (("Where was Ana born?", "LuBaSi"),))]
    for (context, turns), enc in zip(chats, encode_chats(tokenizer, chats, prompt_weight=0.5, answer_weight=3.0)):
        msgs = []
        for i, (q, a) in enumerate(turns):
            msgs += [{"role": "user", "content": f"{context}\n{q}" if i == 0 and context else q},
                     {"role": "assistant", "content": a}]
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        assert enc.ids.tolist() == tokenizer(full, add_special_tokens=False).input_ids
        # each answer is read with its segment's leading space; decoding drops only the first
        assert tokenizer.decode(enc.ids[enc.answer]) == "".join(f" {a}<|end|>" for _, a in turns)[1:]
        np.testing.assert_array_equal(enc.weights, np.where(enc.answer, 3.0, 0.5) * (np.arange(len(enc)) > 0))


def test_packing_keeps_sequences_apart_and_counts_tokens(tokenizer) -> None:
    seqs = encode_texts(tokenizer, ["a b c", "the capital of KaRo is LuBaSi.", "x" * 50, "1 2 3 4 5 6 7 8"])
    seqs += encode_chats(tokenizer, [("ctx", (("q?", "ans"),))], prompt_weight=0.0, answer_weight=1.0)
    batches = pack(seqs, (16, 64), 64, tokenizer.pad_token_id, np.random.default_rng(0))
    assert sum(b.n_tokens for b in batches) == sum(len(s) for s in seqs)
    assert sum(b.n_answer for b in batches) == sum(s.n_answer for s in seqs)
    assert sum(float(b.weights.sum()) for b in batches) == pytest.approx(sum(float(s.weights.sum()) for s in seqs))
    for b in batches:
        starts = b.position_ids == 0
        assert (b.weights[starts] == 0).all()  # never predict a sequence's first token from the previous one
        assert (b.weights[b.input_ids == tokenizer.pad_token_id] == 0).all()


def test_short_sequences_fill_the_gaps_of_long_rows() -> None:
    from lensft.organism.encoding import Encoded

    def seq(n: int) -> Encoded:
        w = np.ones(n, dtype=np.float32)
        w[0] = 0
        return Encoded(np.arange(1, n + 1), w, np.zeros(n, dtype=bool))

    rng = np.random.default_rng(0)
    seqs = [seq(int(n)) for n in rng.integers(41, 61, size=8)] + [seq(int(n)) for n in rng.integers(2, 12, size=40)]
    batches = pack(seqs, (16, 64), 128, 0, rng)
    long_rows = [b for b in batches if b.input_ids.shape[1] == 64]
    assert sum(b.input_ids.shape[0] for b in long_rows) == 8  # one per long sequence
    long_only = sum(len(x) for x in seqs[:8]) / (8 * 64)
    filled = sum(int((b.weights > 0).sum()) + int((b.position_ids == 0).sum()) for b in long_rows) / (8 * 64)
    assert long_only < 0.85 < filled  # short sequences fill what the long ones leave
    assert sum(b.n_tokens for b in batches) == sum(len(x) for x in seqs)
    assert sum(b.n_tokens for b in batches) >= 0.85 * sum(b.input_ids.size for b in batches)


# -- SFT pools -----------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(share=st.floats(0.02, 0.2), answer=st.floats(2.0, 8.0), turn=st.floats(10.0, 30.0),
       context=st.integers(100, 2000))
def test_questions_for_hits_the_answer_share_in_expectation(share: float, answer: float, turn: float, context: int) -> None:
    if answer - share * turn <= 0.1 * answer:  # a turn alone must hold clearly more than the target share of answers
        with pytest.raises(ValueError):
            check_reachable(share, TurnCost(answer=answer, turn=turn))
        k = questions_for(context, share, TurnCost(answer=answer, turn=turn), np.random.default_rng(0))
        assert 1 <= k <= 9 * context / turn + 1  # lowered to 90% of a turn's own share: 9 D / t questions
        return
    cost = TurnCost(answer=answer, turn=turn)
    rng = np.random.default_rng(0)
    ks = np.array([questions_for(context, share, cost, rng) for _ in range(400)], dtype=float)
    k = ks.mean()
    if ks.min() > 1:  # not clipped at one question: the realised share is the target
        assert k * answer / (context + k * turn) == pytest.approx(share, rel=0.05)


def test_take_picks_the_closest_prefix() -> None:
    from lensft.organism.sft_data import Pool

    lengths = [10, 20, 30, 40, 7]
    pool = Pool([], [type("E", (), {"__len__": lambda self, n=n: n})() for n in lengths])  # type: ignore[arg-type]
    for n in range(0, 120):  # brute force: the prefix whose length is closest to n (the shorter on a tie)
        best, total = 0, 0
        for k, length in enumerate(lengths, start=1):
            total += length
            if abs(total - n) < abs(sum(lengths[:best]) - n):
                best = k
        assert take(pool, n) == best, n


def test_arms_share_tokens_and_answer_tokens(world, tokenizer) -> None:
    """Short and long pools built like the build does: the arms' answer-token counts match."""
    rng = np.random.default_rng(8)
    maker = TaskMaker(world, rng, eval_split=False, chars_per_token=chars_per_token(world, CFG.base, tokenizer))
    names = list(CFG.base.task_weights)
    p = np.array([CFG.base.task_weights[t] for t in names]) / sum(CFG.base.task_weights.values())

    def inst():  # drawn as the build draws them: the preset's task weights and yes/no share
        return maker.instance(names[int(rng.choice(len(names), p=p))], CFG.base.yes_no_prob)

    short = fill_pool(lambda: maker.short(inst()), tokenizer, 20_000, 256)
    from lensft.organism.sft_data import turn_cost

    cost, share = turn_cost(tokenizer, [e.instances[0] for e in short.examples]), short.answer_share()
    check_reachable(share, cost)  # as the build checks before drawing long documents

    lo, hi = CFG.sft.long_context_tokens

    def draw_long(ask: float):  # documents and rows sized as the preset sizes them
        n = int(rng.integers(lo, hi + 1))
        return maker.long([inst() for _ in range(questions_for(n, ask, cost, rng))], n)

    long = fill_long_pool(draw_long, tokenizer, 20_000, CFG.sft.train.seq_len, share)
    arms = [arm_data(short, long, m, 18_000) for m in (0.0, 0.5, 1.0)]
    tokens = [a.tokens for a in arms]
    answers = [a.answer_tokens for a in arms]
    assert max(tokens) - min(tokens) <= 0.02 * max(tokens)
    assert max(answers) - min(answers) <= 0.1 * max(answers), answers
    assert arms[0].long_examples == 0 and arms[2].short_examples == 0
    assert arms[2].questions > arms[2].long_examples  # long examples ask several questions


def test_an_unreachable_long_share_raises_instead_of_looping(world, tokenizer) -> None:
    """Documents whose instances alone overflow the row: the pool stops with a message, it never spins."""
    maker = TaskMaker(world, np.random.default_rng(9), eval_split=False, chars_per_token=3.0)
    with pytest.raises(ValueError, match="longer than 64 tokens"):
        fill_long_pool(lambda ask: maker.long([maker.instance("reading") for _ in range(6)], 200), tokenizer, 5_000,
                       64, 0.1)


def test_templates_cover_every_relation() -> None:
    assert set(T.STATEMENTS) == set(T.QUESTIONS) == set(T.YES_NO) == set(T.CONFLICT_DOMAIN)


def test_interrupted_training_resumes_bit_identically(tokenizer, world, tmp_path) -> None:
    import torch

    from lensft.organism.training import make_model, train

    maker = CorpusMaker(world, CFG.base, np.random.default_rng(9))
    seqs = maker.chunk(tokenizer, 8000)
    batches = pack(seqs, (64, 256), 512, tokenizer.pad_token_id, np.random.default_rng(0))
    n = len(batches)
    tc = CFG.base.pretrain
    straight = make_model(CFG.base.model, tokenizer, 0)
    h1 = train(straight, batches, n, tc, seed=0, num_threads=1)
    state = tmp_path / "resume.pt"
    first = make_model(CFG.base.model, tokenizer, 0)
    train(first, batches, n, tc, seed=0, num_threads=1, max_steps=n - 3, resume=state, save_every=4)
    assert state.exists()  # interrupted after step n - 3; the last saved state is older
    resumed = make_model(CFG.base.model, tokenizer, 0)
    h2 = train(resumed, batches, n, tc, seed=0, num_threads=1, resume=state, save_every=4)
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    assert [h["tokens"] for h in h1] == [h["tokens"] for h in h2]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_capability_targets_read_the_scores_they_name() -> None:
    from lensft.organism.evaluate import Scores
    from lensft.organism.targets import BASE_TARGETS, arm_target

    s = Scores(label="base", accuracy={"fact_recall": 0.95, "reading": 0.5, "reading_long": 0.7},
               needle_copy_by_length={128: 0.1, 1000: 0.8}, n_retrieval_heads=0)
    got = {t.name.split(" (")[0]: t.check(s) for t in BASE_TARGETS}
    assert got["closed-book recall, held-out subjects"] == (0.95, True)
    assert got["in-context recall of novel entities, short context"] == (0.5, False)
    assert got["in-context recall at 300-1,000 tokens, random depth"] == (0.7, True)  # the bound itself passes
    assert got["needle copy at the longest haystack"] == (0.8, True)  # the longest length, not the first
    assert got["heads with a Wu retrieval score > 0.1"] == (0.0, False)
    assert BASE_TARGETS[0].check(Scores(label="x")) == (None, None)  # not measured is not a failure
    short = {"fact_recall": 1.0, "reading": 1.0, "cloze": 0.6, "arithmetic": 0.6}
    assert arm_target(0.0).check(Scores(label="short", accuracy=short)) == (pytest.approx(0.8), True)
    assert arm_target(1.0).check(Scores(label="long", accuracy=short)) == (None, None)  # no long-form scores


def test_copy_first_phase_draws_copy_drills_alone_then_the_mixture(world, tokenizer) -> None:
    from lensft.organism.config import CorpusConfig, preset

    base = preset("tiny").base
    cfg = base.model_copy(update={"corpus": base.corpus.model_copy(update={"copy_first_tokens": 3000})})
    cm = CorpusMaker(world, cfg, np.random.default_rng(4))
    copy_only = CorpusMaker(world, cfg, np.random.default_rng(4))

    def is_drill(e) -> bool:  # a drill is one run said twice, over and over: every sentence occurs twice
        text = tokenizer.decode(e.ids[1:])
        runs = [r.strip() for r in text.split(".") if r.strip()]
        return len(runs) >= 2 and all(runs.count(r) % 2 == 0 for r in set(runs)) and not e.answer.any()

    first = [cm.chunk(tokenizer, 1000) for _ in range(3)]
    assert all(is_drill(e) for c in first for e in c)
    assert cm.drawn >= 3000 and sum(len(e) for c in first for e in c) == cm.drawn
    later = cm.chunk(tokenizer, 4000)
    assert not all(is_drill(e) for e in later) and any(e.answer.any() for e in later)  # the mixture, chats included
    assert CorpusConfig().copy_first_tokens == 0
    assert copy_only.chunk(tokenizer, 1000)[0].ids.tolist() == first[0][0].ids.tolist()  # one stream, reproducible


def test_final_phase_draws_its_own_shares_for_the_last_tokens(world, tokenizer) -> None:
    """The tiny base has 16k pretraining tokens; a 6k-token final phase of sums alone starts at 10k."""
    base = preset("tiny").base
    assert base.pretrain.tokens == 16_000
    corpus = base.corpus.model_copy(update={"final_tokens": 6000, "final_shares": {"sums": 1.0}})
    cm = CorpusMaker(world, base.model_copy(update={"corpus": corpus}), np.random.default_rng(4))

    def is_sums(e) -> bool:  # twelve "a op b is c." sentences and nothing else
        return re.fullmatch(r"( ?\d+ (plus|minus|times) \d+ is \d+\.){12}", tokenizer.decode(e.ids[1:]).strip()) is not None

    before = []
    while cm.drawn < 10_000:
        before += cm.chunk(tokenizer, 1000)
    assert not all(is_sums(e) for e in before) and any(e.answer.any() for e in before)  # the mixture
    after = cm.chunk(tokenizer, 2000)
    assert after and all(is_sums(e) for e in after)


def test_recall_drill_asks_listed_pairs_of_novel_training_names(world) -> None:
    from lensft.organism import names

    cm = CorpusMaker(world, preset("tiny").base, np.random.default_rng(5))
    taken = world.words()
    sizes = set()
    for _ in range(200):
        listed, asked = cm.recall().split(" Again: ")
        pairs = [p.strip() for p in listed.split(";") if p.strip()]
        queries = [p.strip() for p in asked.split(";") if p.strip()]
        sizes.add(len(pairs))
        assert 2 <= len(pairs) <= 16 and len(pairs) / 2 <= len(queries) <= len(pairs)
        assert len(set(queries)) == len(queries) and set(queries) <= set(pairs)  # each asked once, as listed
        for p in pairs:
            name, value = p.split(": ")
            assert not names.is_eval_name(name) and not set(name.split()) & taken  # novel, training part
            assert value.isdigit() and len(value) == 4 or value.isalpha()
    assert min(sizes) == 2 and max(sizes) == 16


def test_yes_no_answers_are_single_tokens_even_in_a_small_vocabulary(world) -> None:
    """A small BPE may not merge them on its own (``yes`` -> ``Ġ y es``); the tokenizer primes them then."""
    from lensft.organism.tokenizer import ANSWER_WORDS, _train

    texts = CorpusMaker(world, preset("tiny").base, np.random.default_rng(0)).tokenizer_texts()
    assert len(_train(texts, 300, ()).tokenize("yes")) > 1  # the case this guards
    tok = train_tokenizer(texts, 300)
    for w in ANSWER_WORDS:
        assert len(tok.tokenize(w)) == 1, tok.tokenize(w)
        assert tok.decode(tok(w, add_special_tokens=False).input_ids) == w
