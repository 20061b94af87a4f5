"""Pico checkpoints: tiny random models of every supported family, built offline.

Tests, the demo triple and the benchmarks use these instead of downloading anything. A pico
triple is a random base checkpoint plus two perturbed copies (``short``, ``long``), all with the
same small byte-level BPE tokenizer and chat template, saved as ordinary HF directories.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from lensft.variants import Variant

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}<|end|>"
    "{% else %}{{ m['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.",
    "Alice was born in Lyon and works for Acme. Bob was born in Turin and works for Globex.",
    "Question: what is 3 plus 4? Answer: 7. Question: what is 12 minus 5? Answer: 7.",
    "A long document may hide a needle among many distractor sentences about the weather.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 yes no true false",
]

#: Config class and keyword arguments of a pico model for each family.
PICO_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=512, sliding_window=None)),
    "qwen2": ("Qwen2Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)),
    "qwen3": ("Qwen3Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=8, max_position_embeddings=512, tie_word_embeddings=False)),
    "gemma": ("GemmaConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=8, max_position_embeddings=512)),
    "gemma2": ("Gemma2Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=8, max_position_embeddings=512, sliding_window=16)),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=512, n_ctx=512)),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       max_position_embeddings=512)),
}


def build_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer with chat special tokens (deterministic)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def pico_config(family: str, vocab_size: int, **overrides: Any) -> transformers.PretrainedConfig:
    """A pico config of ``family`` (a key of :data:`PICO_CONFIGS`)."""
    cls_name, kwargs = PICO_CONFIGS[family]
    cfg_cls = getattr(transformers, cls_name)
    kw = {**kwargs, **overrides}
    cfg = cfg_cls(vocab_size=vocab_size, bos_token_id=0, eos_token_id=3, pad_token_id=0, **kw)
    return cfg


def build_pico(out_dir: str | Path, family: str = "llama", seed: int = 0, *,
               tokenizer: PreTrainedTokenizerFast | None = None, dtype: torch.dtype = torch.float32,
               max_shard_size: str | None = None, **overrides: Any) -> Path:
    """Save a random pico checkpoint of ``family`` in ``out_dir`` and return the path."""
    tok = tokenizer or build_tokenizer()
    cfg = pico_config(family, overrides.pop("vocab_size", len(tok)), **overrides)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    out = Path(out_dir)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kw)
    tok.save_pretrained(out)
    return out


def perturb_checkpoint(src: Path, dst: Path, seed: int, scale: float = 0.05) -> Path:
    """Copy ``src`` to ``dst`` with every floating tensor moved by Gaussian noise of relative size ``scale``."""
    model = transformers.AutoModelForCausalLM.from_pretrained(src, local_files_only=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale * (p.std() + 1e-3))
    model.save_pretrained(dst)
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def build_pico_triple(out_dir: str | Path, family: str = "llama", seed: int = 0, **overrides: Any) -> dict[Variant, Path]:
    """Build ``base``, ``short`` and ``long`` pico checkpoints under ``out_dir``.

    ``short`` and ``long`` are the base with independent perturbations, so every tensor differs
    between the three and a graft's provenance is visible bit for bit.
    """
    root = Path(out_dir)
    base = build_pico(root / "base", family, seed, **overrides)
    short = perturb_checkpoint(base, root / "short", seed + 1)
    long = perturb_checkpoint(base, root / "long", seed + 2)
    log.info("built pico %s triple in %s", family, root)
    return {Variant.BASE: base, Variant.SHORT: short, Variant.LONG: long}
