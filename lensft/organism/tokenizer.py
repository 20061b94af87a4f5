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
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
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


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?[A-Z][a-z]*"), behavior="isolated"),  # a capital starts a piece
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    primer = " ".join(f"{s} {s}{s}" for s in SYLLABLES)  # every syllable, with and without a space
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
