"""The organism's configuration: every knob that changes what gets built, and the presets.

Configurations are frozen pydantic models. :class:`BaseConfig` determines the pretrained base
(world, tokenizer, model shape, pretraining corpus and schedule, seed); its hash
(:meth:`BaseConfig.key`) identifies the base, so a shipped base serves every preset that shares
it. :class:`OrganismConfig` adds the SFT arms and the evaluation sets; its hash
(:meth:`OrganismConfig.cache_key`) names the build directory. ``mixes`` and ``sft_seeds`` are
left out of that hash on purpose: each arm is cached on its own inside the directory, so asking
for one more mix or seed trains only that arm.

A mix is the fraction of *long* SFT data (0 = the short arm, 1 = the long arm); arms are
:class:`lensft.variants.ArmRef` values (long fraction, SFT seed).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lensft.errors import LensftError
from lensft.hashing import sha256_json


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorldConfig(_Frozen):
    """Size of the synthetic world (entity counts)."""

    n_countries: int = Field(8, ge=3)
    n_cities: int = Field(24, ge=3, description="each country gets at least one city (its capital)")
    n_companies: int = Field(12, ge=2)
    n_people: int = Field(80, ge=4)
    heldout_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="share of subjects whose questions are never asked in training")


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
    """One training stage: a token budget, AdamW, linear warmup then cosine decay, clipping."""

    tokens: int = Field(description="token budget of the stage (non-padding tokens seen)")
    seq_len: int = Field(description="longest packed row in tokens (long documents)")
    short_seq_len: int = Field(128, description="row length for sequences that fit in it (cheaper attention)")
    batch_tokens: int = Field(4096, description="tokens per optimiser step (rows of one length)")
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = Field(100, ge=1)
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0


class CorpusConfig(_Frozen):
    """Pretraining corpus: token shares of the document kinds and the loss weight of answers.

    Kinds: ``bio`` (every fact of the world in shuffled paraphrases, held-out subjects included),
    ``fact_qa`` (chat Q&A about training subjects, as an instruct origin leaves), ``short_tasks``
    and ``long_tasks`` (chat examples of every task in the short and the long form, training
    split), ``sums`` (arithmetic facts over training operand triples), ``copy`` and ``recall``
    (drills, :mod:`lensft.organism.corpus`). The last ``final_tokens`` tokens of pretraining are
    drawn with ``final_shares`` instead: a finishing phase on task chats, as language-model
    pretraining ends by annealing on curated data.
    """

    shares: dict[str, float] = Field(default_factory=lambda: {
        "bio": 0.3, "fact_qa": 0.1, "short_tasks": 0.25, "long_tasks": 0.3, "sums": 0.05})
    answer_weight: float = Field(5.0, gt=0.0, description="loss weight of assistant-answer tokens (others 1)")
    copy_first_tokens: int = Field(0, ge=0, description="tokens of copy drills alone at the start of pretraining "
                                                        "(the induction mechanism forms on them; then the mixture)")
    long_context_tokens: tuple[int, int] = Field((300, 1000), description="document length range of long tasks")
    final_tokens: int = Field(0, ge=0, description="tokens at the end of pretraining drawn with final_shares "
                                                  "(a task-focused finishing phase; 0: none)")
    final_shares: dict[str, float] = Field(default_factory=dict, description="token shares of the finishing phase")
    tokenizer_docs: int = Field(3000, description="documents the tokenizer is trained on")


class BaseConfig(_Frozen):
    """Everything that determines the pretrained base (its hash identifies a shipped base)."""

    seed: int = 0
    world: WorldConfig = WorldConfig()
    model: ModelConfig = ModelConfig()
    corpus: CorpusConfig = CorpusConfig()
    pretrain: TrainConfig
    task_weights: dict[str, float] = Field(
        default_factory=lambda: {"fact_recall": 0.4, "reading": 0.3, "cloze": 0.15, "arithmetic": 0.15})
    yes_no_prob: float = Field(0.2, ge=0.0, le=1.0, description="share of fact questions asked as yes/no")

    def key(self) -> str:
        """Short hash of the whole configuration."""
        return sha256_json(self.model_dump(mode="json"))[:16]


class SftConfig(_Frozen):
    """SFT arms: one token budget for every arm, loss on assistant-answer tokens only."""

    train: TrainConfig
    long_context_tokens: tuple[int, int] = Field((300, 600), description="document tokens of a long example")


class EvalConfig(_Frozen):
    """Sizes of the held-out prompt sets."""

    n_per_task: int = 100
    long_context_tokens: tuple[int, int] = Field((300, 1000), description="document tokens of long-form items")
    needle_context_tokens: tuple[int, ...] = (128, 256, 512, 1000)
    n_needle_per_length: int = 20
    n_conflict: int = 100


class OrganismConfig(_Frozen):
    """Everything that determines an organism build."""

    name: str = "custom"
    base: BaseConfig
    sft: SftConfig
    eval: EvalConfig = EvalConfig()
    mixes: tuple[float, ...] = Field((0.5,), description="long-data fractions of the mix arms (besides 0 and 1)")
    sft_seeds: int = Field(1, ge=1, description="SFT runs per arm (seeds 0..n-1), each from the one base")
    num_threads: int = 2
    device: str = Field("cpu", description="where to train: cpu (reproducible bit for bit) or cuda (faster)")

    @field_validator("mixes")
    @classmethod
    def _check_mixes(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for m in v:
            if not 0.0 <= m <= 1.0:
                raise ValueError(f"mix {m} is not a fraction of long data in [0, 1]")
        return tuple(sorted({round(float(m), 4) for m in v if 0.0 < m < 1.0}))

    @property
    def seed(self) -> int:
        """The world's seed (also seeds the base and every data draw)."""
        return self.base.seed

    def cache_key(self) -> str:
        """A short hash of everything but ``name``, ``mixes`` and ``sft_seeds`` (arms are cached one by one)."""
        return sha256_json(self.model_dump(mode="json", exclude={"name", "mixes", "sft_seeds"}))[:16]

    def with_overrides(self, *, seed: int | None = None, mixes: list[float] | tuple[float, ...] | None = None,
                       sft_seeds: int | None = None) -> OrganismConfig:
        """A copy with another world seed, mix list or number of SFT seeds."""
        data = self.model_dump()
        if seed is not None:
            data["base"]["seed"] = seed
        if mixes is not None:
            data["mixes"] = tuple(mixes)
        if sft_seeds is not None:
            data["sft_seeds"] = sft_seeds
        return OrganismConfig.model_validate(data)


# -- presets -----------------------------------------------------------------------------------
def reading_base() -> BaseConfig:
    """The base every full-size preset shares, and the one shipped with lensft (seed 0).

    30M tokens of the mixture, copy and associative-recall drills included (recipe and the runs
    behind it: README, "The model organism"); a variant that began with 4M tokens of copy drills
    alone read worse, and one with reverse recall drills and more short tasks copied worse: not used.
    The last 4M tokens are a finishing phase with more task chats, and word problems weigh 0.3 of
    the tasks (0.15 before): with worked answers, continuing the previous base on word problems
    alone made products right 28/28 while sums and differences, whose look-alike shares their
    "has" sentence, stayed behind (README, "The model organism").
    """
    world = WorldConfig(n_countries=10, n_cities=40, n_companies=20, n_people=240)
    corpus = CorpusConfig(shares={"bio": 0.15, "fact_qa": 0.05, "short_tasks": 0.18, "long_tasks": 0.14, "sums": 0.03,
                                  "copy": 0.25, "recall": 0.2},
                          final_tokens=4_000_000,
                          final_shares={"bio": 0.1, "fact_qa": 0.05, "short_tasks": 0.4, "long_tasks": 0.15, "sums": 0.05,
                                        "copy": 0.15, "recall": 0.1})
    return BaseConfig(world=world, corpus=corpus,
                      task_weights={"fact_recall": 0.3, "reading": 0.3, "cloze": 0.1, "arithmetic": 0.3},
                      pretrain=TrainConfig(tokens=30_000_000, seq_len=1024, batch_tokens=4096, lr=1e-3))


def _preset_tiny() -> OrganismConfig:
    """A miniature organism for tests: builds from scratch in seconds, learns little."""
    base = BaseConfig(
        world=WorldConfig(n_countries=4, n_cities=8, n_companies=4, n_people=12),
        model=ModelConfig(hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=64,
                          vocab_size=512, max_position_embeddings=512),
        corpus=CorpusConfig(long_context_tokens=(80, 200), tokenizer_docs=400),
        pretrain=TrainConfig(tokens=16_000, seq_len=256, short_seq_len=64, batch_tokens=1024, lr=3e-3, warmup_steps=2),
    )
    return OrganismConfig(
        name="tiny", base=base,
        sft=SftConfig(train=TrainConfig(tokens=12_000, seq_len=256, short_seq_len=64, batch_tokens=1024,
                                        warmup_steps=2), long_context_tokens=(60, 120)),
        eval=EvalConfig(n_per_task=6, long_context_tokens=(60, 150), needle_context_tokens=(64, 128),
                        n_needle_per_length=3, n_conflict=6),
        mixes=(0.5,),
    )


def _preset_quick() -> OrganismConfig:
    """The shipped reading base, then short, long and one mix arm (a few minutes on 2 cores)."""
    return OrganismConfig(
        name="quick", base=reading_base(),
        sft=SftConfig(train=TrainConfig(tokens=500_000, seq_len=1280, batch_tokens=4096, lr=5e-4, warmup_steps=10)),
        eval=EvalConfig(n_per_task=60, n_needle_per_length=10, n_conflict=60),
        mixes=(0.5,),
    )


def _preset_full() -> OrganismConfig:
    """The shipped reading base, then 3 SFT seeds of short, long and three mixes (0.75M tokens each:
    15 arms in about 17 minutes on 2 cores, so a from-scratch build fits an hour)."""
    return OrganismConfig(
        name="full", base=reading_base(),
        sft=SftConfig(train=TrainConfig(tokens=750_000, seq_len=1280, batch_tokens=4096, lr=5e-4, warmup_steps=15)),
        eval=EvalConfig(n_per_task=100, n_needle_per_length=20, n_conflict=100),
        mixes=(0.25, 0.5, 0.75), sft_seeds=3,
    )


PRESETS = {"tiny": _preset_tiny, "quick": _preset_quick, "full": _preset_full}


def preset(name: str) -> OrganismConfig:
    """The configuration of a named preset (``tiny``, ``quick``, ``full``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise LensftError(f"unknown organism preset {name!r}; choose one of {', '.join(PRESETS)}") from None


ConfigOrPreset = OrganismConfig | str


def resolve(config_or_preset: ConfigOrPreset) -> OrganismConfig:
    """Accept a preset name or a configuration."""
    return preset(config_or_preset) if isinstance(config_or_preset, str) else config_or_preset
