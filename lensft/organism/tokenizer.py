"""The organism's tokenizer: byte-level BPE trained on the world corpus, saved in HF format.

Names are split at every capital letter before BPE, so a name like ``KaRo MiTe`` becomes the
syllable tokens ``Ka Ro ĠMi Te`` (see :mod:`lensft.organism.names`); the training text includes
every syllable, so each is one token with and without a leading space. Template words are
frequent enough to become single tokens.

Special tokens: ``<|bos|>`` (added in front of every encoded text), ``<|pad|>``, and the chat
markers ``<|user|>``, ``<|assistant|>`` and ``<|end|>`` (end of a turn; also the EOS token, so
generation stops after an answer). Digits are split one per token. The chat template renders
``<|bos|><|user|>question<|end|><|assistant|>answer<|end|>`` with no extra whitespace, so
encoding a turn's text alone gives the same ids as encoding the whole chat.

Every text segment (a document, a user turn, an answer: the text between special tokens) is
read with one leading space, as SentencePiece's dummy prefix does, and decoding drops it again.
So a word is the same tokens wherever it stands: ``LaMoSa`` is ``ĠLa Mo Sa`` at the start of a
document, inside a sentence and as an answer. Without it an answer's first token differs from
the token the fact was learnt with (``La`` vs ``ĠLa``): measured on the previous base, closed-book
recall of held-out subjects was 15/16 for birth years (digits are the same tokens either way)
and 3/18 for birthplaces, which it completed correctly in running text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from lensft.organism.names import SYLLABLES

BOS, PAD, USER, ASSISTANT, END = "<|bos|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = [PAD, BOS, END, USER, ASSISTANT]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + '<|end|>' }}"
    "{% else %}{{ raise_exception('the organism chat template knows only user and assistant turns') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def chat_text(turns: Iterable[tuple[str, str]]) -> str:
    """The chat-formatted text of ``(user, assistant)`` pairs, without the BOS token."""
    return "".join(f"{USER}{u}{END}{ASSISTANT}{a}{END}" for u, a in turns)


#: Answers of yes/no questions: each must be one token (the knowledge probe compares their first tokens).
ANSWER_WORDS = ("yes", "no")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``.

    If an answer word of :data:`ANSWER_WORDS` is not one token (small vocabularies), the BPE is
    trained again with those words primed like the syllables; a tokenizer that has them is the
    first training's, unchanged.
    """
    texts = list(texts)
    hf = _train(texts, vocab_size, ())
    if all(len(hf.tokenize(w)) == 1 for w in ANSWER_WORDS):
        return hf
    return _train(texts, vocab_size, ANSWER_WORDS)


def _train(texts: list[str], vocab_size: int, extra_primer: tuple[str, ...]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Prepend(" ")  # applied to each segment between special tokens
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?[A-Z][a-z]*"), behavior="isolated"),  # a capital starts a piece
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # syllables with and without a space (and answer words, ten times: merged before the syllables)
    primer = " ".join([*(f"{s} {s}{s}" for s in SYLLABLES), *(w for w in extra_primer for _ in range(10))])
    tok.train_from_iterator([*texts, *[primer] * 200], trainer=trainer)  # frequent enough to merge first
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, bos_id)])
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """The HF fast tokenizer around a trained ``tokenizers`` object, with chat template."""
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=END, pad_token=PAD,
                                 extra_special_tokens=[USER, ASSISTANT], clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def save_tokenizer(tok: PreTrainedTokenizerFast, path: Path) -> None:
    """Write the HF tokenizer files into ``path``."""
    tok.save_pretrained(str(path))
