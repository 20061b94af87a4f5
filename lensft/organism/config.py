"""The organism's configuration: every knob that changes what gets built, and the presets.

The configuration is a frozen pydantic model. Its hash (:meth:`OrganismConfig.cache_key`) names
the cache directory, so two builds with equal configurations share one directory. ``mixes`` is
left out of the hash on purpose: each mix checkpoint is cached on its own inside that directory,
so asking for one more mix trains only that mix.

Mix semantics: a mix is the fraction of *long* SFT data (0 = the pure short arm, 1 = the pure
long arm). The pure arms are always built; intermediate mixes are stored as ``mix-0.50`` etc.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lensft.errors import LensftError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorldConfig(_Frozen):
    """Size of the synthetic world (entity counts)."""

    n_countries: int = Field(8, ge=3)
    n_cities: int = Field(24, ge=3, description="each country gets at least one city (its capital)")
    n_companies: int = Field(12, ge=2)
    n_people: int = Field(60, ge=4)
    heldout_fraction: float = Field(
        0.3, gt=0.0, lt=1.0,
        description="fraction of subjects whose questions are never asked in training (eval only)")


class ModelConfig(_Frozen):
    """Shape of the Llama-architecture model (GQA: ``n_kv_heads`` < ``n_heads``; RoPE)."""

    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    intermediate_size: int = 352
    vocab_size: int = Field(1024, description="target BPE vocabulary size (special tokens included)")
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0


class TrainConfig(_Frozen):
    """One training stage: fixed token budget, AdamW, warmup + cosine decay, clipping."""

    tokens: int = Field(description="token budget of the stage (non-padding tokens seen)")
    seq_len: int = Field(description="longest packed row in tokens (long documents)")
    short_seq_len: int = Field(256, description="row length for sequences that fit in it (cheaper attention)")
    batch_tokens: int = Field(4096, description="tokens per optimiser step (rows of one length)")
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0


class CorpusConfig(_Frozen):
    """Pretraining corpus: fact documents of all lengths plus chat-formatted Q/A (instruct origin)."""

    long_doc_fraction: float = Field(0.25, ge=0.0, le=1.0, description="fraction of documents that are long")
    long_doc_tokens: int = Field(1024, description="a long document runs up to this many tokens")
    chat_fraction: float = Field(0.25, ge=0.0, le=1.0, description="fraction of documents that are chat Q/A")
    arithmetic_fraction: float = Field(0.05, ge=0.0, le=1.0, description="fraction of documents of sums")
    story_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="fraction of random-event stories (in-context copying); 0.2 cost fact recall and gave no "
                    "measurable copying in the base within the quick and full budgets, so it is off by default")


class SftConfig(_Frozen):
    """SFT arms: same token budget for every arm; loss on assistant tokens only."""

    train: TrainConfig
    long_context_tokens: tuple[int, int] = Field((300, 1000), description="min/max tokens of a long task's document")
    task_weights: dict[str, float] = Field(
        default_factory=lambda: {"fact_recall": 0.4, "arithmetic": 0.2, "cloze": 0.2, "reading": 0.2})


class EvalConfig(_Frozen):
    """Sizes of the held-out prompt sets."""

    n_per_task: int = 100
    n_needle: int = 60
    needle_context_tokens: tuple[int, int] = (64, 512)
    n_conflict: int = 100


class OrganismConfig(_Frozen):
    """Everything that determines an organism build (a seed included)."""

    name: str = "custom"
    seed: int = 0
    world: WorldConfig = WorldConfig()
    model: ModelConfig = ModelConfig()
    corpus: CorpusConfig = CorpusConfig()
    pretrain: TrainConfig
    sft: SftConfig
    eval: EvalConfig = EvalConfig()
    mixes: tuple[float, ...] = Field((0.5,), description="fractions of long SFT data besides 0 and 1")
    num_threads: int = 2

    @field_validator("mixes")
    @classmethod
    def _check_mixes(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for m in v:
            if not 0.0 <= m <= 1.0:
                raise ValueError(f"mix {m} is not a fraction of long data in [0, 1]")
        return tuple(sorted({round(float(m), 4) for m in v}))

    def cache_key(self) -> str:
        """A short hash of everything but ``name`` and ``mixes`` (mixes are cached one by one)."""
        payload = self.model_dump(mode="json", exclude={"name", "mixes"})
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_overrides(self, *, seed: int | None = None, mixes: list[float] | tuple[float, ...] | None = None) -> OrganismConfig:
        """A copy with a different seed and/or mix list."""
        update: dict = {}
        if seed is not None:
            update["seed"] = seed
        if mixes is not None:
            update["mixes"] = tuple(mixes)
        return OrganismConfig.model_validate({**self.model_dump(), **update})


def _preset_test() -> OrganismConfig:
    """A miniature organism for tests: builds in seconds, learns little."""
    return OrganismConfig(
        name="test",
        world=WorldConfig(n_countries=4, n_cities=8, n_companies=4, n_people=12),
        model=ModelConfig(hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=64,
                          vocab_size=512, max_position_embeddings=512),
        corpus=CorpusConfig(long_doc_tokens=256),
        pretrain=TrainConfig(tokens=12_000, seq_len=256, short_seq_len=64, batch_tokens=1024, lr=3e-3),
        sft=SftConfig(train=TrainConfig(tokens=20_000, seq_len=256, short_seq_len=64, batch_tokens=1024, lr=1e-3),
                      long_context_tokens=(80, 200)),
        eval=EvalConfig(n_per_task=6, n_needle=6, needle_context_tokens=(32, 128), n_conflict=6),
        mixes=(0.5,),
    )


def _preset_quick() -> OrganismConfig:
    """A small organism that builds in under 3 minutes on 2 cores (a smaller world, same shape).

    The SFT budget is what teaches reading: with 80k tokens per arm the short arm's cloze accuracy
    stayed at 0.03, with 400k it is 0.52 (held-out set, greedy exact match).
    """
    return OrganismConfig(
        name="quick",
        world=WorldConfig(n_countries=4, n_cities=10, n_companies=6, n_people=24),
        model=ModelConfig(hidden_size=128, n_layers=4, n_heads=4, n_kv_heads=2, intermediate_size=352,
                          vocab_size=1024, max_position_embeddings=2048),
        corpus=CorpusConfig(long_doc_tokens=1024, long_doc_fraction=0.2),
        pretrain=TrainConfig(tokens=1_200_000, seq_len=1024, batch_tokens=2048, lr=3e-3),
        sft=SftConfig(train=TrainConfig(tokens=400_000, seq_len=1024, batch_tokens=2048, lr=1e-3),
                      long_context_tokens=(300, 900)),
        eval=EvalConfig(n_per_task=60, n_needle=40, n_conflict=60),
        mixes=(0.5,),
    )


def _preset_full() -> OrganismConfig:
    """The default organism: base + short + long + three hybrids in under 20 minutes on 2 cores.

    Measured (``benchmarks/bench_organism.py --preset full --eval``): built in 1,007 s; with
    800k SFT tokens per arm the short arm's cloze accuracy is 0.51 (see the quick preset for why
    the budget is this large).
    """
    return OrganismConfig(
        name="full",
        world=WorldConfig(n_countries=8, n_cities=24, n_companies=12, n_people=80),
        model=ModelConfig(hidden_size=128, n_layers=6, n_heads=4, n_kv_heads=2, intermediate_size=384,
                          vocab_size=1536, max_position_embeddings=2048),
        corpus=CorpusConfig(long_doc_tokens=1280, long_doc_fraction=0.2),
        pretrain=TrainConfig(tokens=5_400_000, seq_len=1280, batch_tokens=2048, lr=3e-3),
        sft=SftConfig(train=TrainConfig(tokens=800_000, seq_len=1280, batch_tokens=2048, lr=1e-3),
                      long_context_tokens=(300, 1100)),
        eval=EvalConfig(n_per_task=100, n_needle=60, n_conflict=100),
        mixes=(0.25, 0.5, 0.75),
    )


PRESETS = {"test": _preset_test, "tiny": _preset_test, "quick": _preset_quick, "full": _preset_full}


def preset(name: str) -> OrganismConfig:
    """The configuration of a named preset (``test``/``tiny``, ``quick``, ``full``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise LensftError(f"unknown organism preset {name!r}; choose one of {', '.join(PRESETS)}") from None


ConfigOrPreset = OrganismConfig | str


def resolve(config_or_preset: ConfigOrPreset) -> OrganismConfig:
    """Accept a preset name or a configuration."""
    return preset(config_or_preset) if isinstance(config_or_preset, str) else config_or_preset
