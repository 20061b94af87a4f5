"""Build (or load from cache) the whole organism: world, tokenizer, eval sets, base, SFT arms.

Layout of a build directory (``<cache>/<config hash>/`` unless ``out`` is given; a from-scratch
build of the same configuration lives in ``<config hash>-scratch``)::

    config.json           the OrganismConfig and whether the base is trained from scratch
    manifest.json         the BuildManifest: base and arm records (tokens, answer tokens, examples,
                          wall time, tokens/s, seeds), prompt sets, stage wall times
    world.json            the synthetic world
    tokenizer/            HF tokenizer with chat template (the base's)
    data/*.jsonl          held-out prompt sets (lensft prompt-set format)
    checkpoints/base      the base: the shipped one (copied) or pretrained here
    checkpoints/<slug>    one SFT arm per ArmRef (``short``, ``long``, ``mix-0.50``, ``short-sft1`` ...)

Every stage writes atomically and is skipped when its output exists, so a second build is
instant and asking for a new mix or SFT seed trains only that arm; an interrupted pretraining or
SFT run resumes from its last saved state (``checkpoints/.base-resume.pt``, ``.short-resume.pt``
..., every :data:`RESUME_EVERY` steps;
the environment variable ``LENSFT_ORGANISM_RESUME_EVERY`` changes that interval, which never
changes the result). Stages draw from independent seed streams (``SeedSequence([seed, stream,
...])``), so skipping one never changes another.

One process at a time builds a directory: the build holds the directory's lock
(:mod:`lensft.locks`); a second build of it waits, then finds the work done and reuses it. What a
killed build left (temporaries, a resume state beside a finished base) is removed under the lock.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from lensft import __version__
from lensft.atomic import remove_stale, staging_dir, write_json_atomic, write_text_atomic
from lensft.errors import LensftError, OutputExists
from lensft.faults import point
from lensft.locks import locked
from lensft.organism import shipped
from lensft.organism.builddir import (RESUME_EVERY, RESUME_EVERY_ENV, build_dir, check_dir, check_path,  # noqa: F401
                                     default_cache_dir, resume_every)
from lensft.organism.config import ConfigOrPreset, OrganismConfig, resolve
from lensft.organism.corpus import CorpusMaker, chars_per_token
from lensft.organism.evalsets import write_eval_sets
from lensft.organism.manifest import ArmRecord, BaseRecord, BuildManifest, TrainingRecord
from lensft.organism.packing import pack, stream
from lensft.organism.progress import ProgressFn
from lensft.organism.sft_data import (Pool, arm_data, check_reachable, fill_long_pool, fill_pool, questions_for,
                                     turn_cost)
from lensft.organism.tasks import TaskMaker
from lensft.organism.tokenizer import save_tokenizer, train_tokenizer
from lensft.organism.training import make_model, save_checkpoint, tokens_per_second, train
from lensft.organism.world import World, make_world
from lensft.variants import ArmRef

log = logging.getLogger(__name__)

# seed streams: np.random.SeedSequence([seed, STREAM, ...])
_TOKENIZER, _EVAL, _CORPUS, _PRETRAIN_PACK, _SFT_SHORT, _SFT_LONG, _SFT_PACK = 2, 3, 4, 5, 6, 7, 8
#: Pretraining draws its corpus this many optimiser steps' worth at a time.
CHUNK_STEPS = 32


def arm_refs(config: OrganismConfig) -> list[ArmRef]:
    """Every arm ``config`` asks for: short, the mixes and long, for each SFT seed."""
    fractions = [0.0, *config.mixes, 1.0]
    return [ArmRef(long_fraction=f, sft_seed=s) for s in range(config.sft_seeds) for f in fractions]


@dataclass(frozen=True)
class OrganismBuild:
    """A built organism: typed paths of its checkpoints and prompt sets, and its manifest."""

    root: Path
    config: OrganismConfig
    base: Path
    arms: dict[ArmRef, Path]
    prompt_sets: dict[str, Path]
    tokenizer: Path
    world: Path
    manifest: BuildManifest

    def arm(self, long_fraction: float, sft_seed: int = 0) -> Path:
        """The checkpoint of one arm (raises :class:`LensftError` when it is not built)."""
        ref = ArmRef(long_fraction=long_fraction, sft_seed=sft_seed)
        if ref not in self.arms:
            raise LensftError(f"the organism at {self.root} has no {ref.label} arm; build it with that mix and SFT seed")
        return self.arms[ref]

    @property
    def short(self) -> Path:
        """The short arm of SFT seed 0."""
        return self.arm(0.0)

    @property
    def long(self) -> Path:
        """The long arm of SFT seed 0."""
        return self.arm(1.0)

    @property
    def checkpoints(self) -> dict[str, Path]:
        """Every checkpoint by display label: ``base``, then the arms (``short``, ``mix 0.50``, ``long``, ...)."""
        return {"base": self.base, **{ref.label: p for ref, p in self.arms.items()}}


class _Builder:
    """The stages of one build directory (each skipped when its output exists)."""

    def __init__(self, cfg: OrganismConfig, root: Path, manifest: BuildManifest, progress: ProgressFn | None):
        self.cfg, self.root, self.manifest, self.progress = cfg, root, manifest, progress
        self.from_scratch = manifest.from_scratch
        self.world: World = make_world(cfg.base.world, cfg.seed)
        problems = self.world.check()
        if problems:
            raise AssertionError(f"inconsistent world: {problems}")
        if not (root / "world.json").exists():
            write_json_atomic(root / "world.json", self.world.to_json())
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._cpt: float | None = None

    def rng(self, stream_id: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.cfg.seed, stream_id, *extra]))

    def _timed(self, name: str, t0: float) -> None:
        self.manifest.stage_seconds[name] = round(time.perf_counter() - t0, 3)
        self.manifest.write(self.root)
        log.info("organism stage %s: %.1f s", name, self.manifest.stage_seconds[name])

    @property
    def uses_shipped_base(self) -> bool:
        return not self.from_scratch and shipped.ships(self.cfg.base)

    # -- tokenizer and data ------------------------------------------------------------------
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer: the shipped base's, or trained on a sample of the corpus."""
        if self._tokenizer is None:
            path = self.root / "tokenizer"
            if not (path / "tokenizer.json").exists():
                t0 = time.perf_counter()
                if self.uses_shipped_base:
                    tok = AutoTokenizer.from_pretrained(str(self.base()))
                else:
                    texts = CorpusMaker(self.world, self.cfg.base, self.rng(_TOKENIZER)).tokenizer_texts()
                    tok = train_tokenizer(texts, self.cfg.base.model.vocab_size)
                _install_dir(path, lambda d: save_tokenizer(tok, d))
                self._timed("tokenizer", t0)
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        return self._tokenizer

    def chars_per_token(self) -> float:
        """Average characters per token of corpus text (sizes long documents in tokens)."""
        if self._cpt is None:
            self._cpt = chars_per_token(self.world, self.cfg.base, self.tokenizer())
        return self._cpt

    def eval_sets(self) -> dict[str, Path]:
        data = self.root / "data"
        if not (data / "conflict.jsonl").exists():
            t0 = time.perf_counter()
            _install_dir(data, lambda d: write_eval_sets(self.world, self.cfg.eval, self.rng(_EVAL), d,
                                                         self.chars_per_token()))
            self._timed("eval_sets", t0)
        paths = {p.stem: p for p in sorted(data.glob("*.jsonl"))}
        self.manifest.prompt_sets = {n: str(p.relative_to(self.root)) for n, p in paths.items()}
        return paths

    # -- base ----------------------------------------------------------------------------------
    def base(self) -> Path:
        """The base checkpoint: copied from the package, or pretrained here."""
        path = self.root / "checkpoints" / "base"
        if not (path / "model.safetensors").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.uses_shipped_base:
                shipped.install(path)
            else:
                self._pretrain(path)
        _resume_file(path).unlink(missing_ok=True)  # left by a build killed after saving the base
        if self.manifest.base is None:
            meta = BaseRecord.model_validate(_read_meta(path)["base"])
            self.manifest.base = meta.model_copy(update={"path": str(path.relative_to(self.root)),
                                                         "origin": "shipped" if self.uses_shipped_base else "trained"})
            self.manifest.write(self.root)
        return path

    def _pretrain(self, path: Path, max_steps: int | None = None) -> list[dict]:
        tok, base_cfg = self.tokenizer(), self.cfg.base
        pt = base_cfg.pretrain
        corpus = CorpusMaker(self.world, base_cfg, self.rng(_CORPUS), self.chars_per_token())
        batches = stream(lambda: corpus.chunk(tok, CHUNK_STEPS * pt.batch_tokens), (pt.short_seq_len, pt.seq_len),
                         pt.batch_tokens, tok.pad_token_id, self.rng(_PRETRAIN_PACK))
        model = make_model(base_cfg.model, tok, base_cfg.seed)
        resume = None if max_steps is not None else _resume_file(path)
        history = train(model, batches, math.ceil(pt.tokens / pt.batch_tokens), pt, seed=base_cfg.seed,
                        num_threads=self.cfg.num_threads, stage="base", progress=self.progress, max_steps=max_steps,
                        resume=resume, save_every=resume_every(),
                        device=self.cfg.device)
        if resume is None:
            return history
        record = BaseRecord(path="", origin="trained", base_key=base_cfg.key(), seed=base_cfg.seed,
                            params=model.num_parameters(), lensft_version=__version__, training=_record(history))
        meta = {"base": record.model_dump(mode="json"), "base_config": base_cfg.model_dump(mode="json"),
                "num_threads": self.cfg.num_threads}
        save_checkpoint(model, tok, path, history, meta)
        resume.unlink(missing_ok=True)
        return history

    # -- arms ----------------------------------------------------------------------------------
    def pools(self, sft_seed: int) -> tuple[Pool, Pool]:
        """The short and the long pool of one SFT seed (the long pool matches the short's answer share)."""
        t0 = time.perf_counter()
        cfg, base_cfg, tok = self.cfg.sft, self.cfg.base, self.tokenizer()
        names = list(base_cfg.task_weights)
        p = np.array([base_cfg.task_weights[t] for t in names], dtype=np.float64)
        budget = round(cfg.train.tokens * 1.02)  # a little over: an arm takes the prefix closest to its budget

        def maker(stream_id: int) -> tuple[TaskMaker, np.random.Generator]:
            rng = self.rng(stream_id, sft_seed)
            return TaskMaker(self.world, rng, eval_split=False, chars_per_token=self.chars_per_token()), rng

        sm, srng = maker(_SFT_SHORT)

        def inst(m: TaskMaker, rng: np.random.Generator):
            return m.instance(names[int(rng.choice(len(names), p=p / p.sum()))], base_cfg.yes_no_prob)

        short = fill_pool(lambda: sm.short(inst(sm, srng)), tok, budget, cfg.train.seq_len)
        lm, lrng = maker(_SFT_LONG)
        share, cost = short.answer_share(), turn_cost(tok, [e.instances[0] for e in short.examples[:2000]])
        check_reachable(share, cost)
        lo, hi = cfg.long_context_tokens

        def draw_long(ask: float):
            n_ctx = int(lrng.integers(lo, hi + 1))
            return lm.long([inst(lm, lrng) for _ in range(questions_for(n_ctx, ask, cost, lrng))], n_ctx)

        long = fill_long_pool(draw_long, tok, budget, cfg.train.seq_len, share)
        self._timed(f"sft_data seed {sft_seed}", t0)
        return short, long

    def arms(self, refs: list[ArmRef]) -> dict[ArmRef, Path]:
        paths = {r: self.root / "checkpoints" / r.slug for r in refs}
        pools: dict[int, tuple[Pool, Pool]] = {}
        for ref in refs:
            if (paths[ref] / "model.safetensors").exists():
                if self.manifest.arm(ref) is None:  # a build killed after saving the arm, before the manifest
                    self.manifest.put_arm(ArmRecord.model_validate(_read_meta(paths[ref])["arm"]))
                    self.manifest.write(self.root)
                _resume_file(paths[ref]).unlink(missing_ok=True)  # left by a build killed after saving the arm
                continue
            if ref.sft_seed not in pools:
                pools = {ref.sft_seed: self.pools(ref.sft_seed)}  # one seed's pools in memory at a time
            self._train_arm(ref, paths[ref], *pools[ref.sft_seed])
        return paths

    def _train_arm(self, ref: ArmRef, path: Path, short: Pool, long: Pool) -> None:
        tok, tc = self.tokenizer(), self.cfg.sft.train
        data = arm_data(short, long, ref.long_fraction, tc.tokens)
        seeds = {"short_pool": [self.cfg.seed, _SFT_SHORT, ref.sft_seed], "long_pool": [self.cfg.seed, _SFT_LONG, ref.sft_seed],
                 "order": [self.cfg.seed, _SFT_PACK, ref.sft_seed, round(ref.long_fraction * 10000)]}
        batches = pack(data.seqs, (tc.short_seq_len, tc.seq_len), tc.batch_tokens, tok.pad_token_id,
                       np.random.default_rng(np.random.SeedSequence(seeds["order"])))
        model = AutoModelForCausalLM.from_pretrained(str(self.base()), dtype="float32")
        resume = _resume_file(path)
        history = train(model, batches, len(batches), tc, seed=self.cfg.seed * 1000 + ref.sft_seed,
                        num_threads=self.cfg.num_threads, stage=ref.label, progress=self.progress,
                        resume=resume, save_every=resume_every(),
                        device=self.cfg.device)
        record = ArmRecord(arm=ref, path=str(path.relative_to(self.root)), examples=data.short_examples + data.long_examples,
                           short_examples=data.short_examples, long_examples=data.long_examples,
                           questions=data.questions, data_seeds=seeds, training=_record(history))
        save_checkpoint(model, tok, path, history, {"arm": record.model_dump(mode="json"), "config_key": self.cfg.cache_key()})
        resume.unlink(missing_ok=True)  # (absent when training was shorter than one save interval)
        self.manifest.put_arm(record)
        self.manifest.write(self.root)


def _install_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Assemble a directory with ``fill`` in a staging sibling, then rename it over ``path``
    (a failure leaves neither a partial ``path`` nor the staging directory)."""
    tmp = staging_dir(path)
    try:
        fill(tmp)
        point("install")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resume_file(checkpoint: Path) -> Path:
    """The resumable training state of the arm saved at ``checkpoint`` (beside it, hidden)."""
    return checkpoint.parent / f".{checkpoint.name}-resume.pt"

def _record(history: list[dict]) -> TrainingRecord:
    last = history[-1]
    return TrainingRecord(tokens=last["tokens"], answer_tokens=last["answer_tokens"], steps=last["step"],
                          seconds=last["elapsed_s"], tokens_per_s=round(tokens_per_second(history), 1),
                          final_loss=last["loss"])


def _read_meta(path: Path) -> dict:
    return json.loads((path / "organism.json").read_text(encoding="utf-8"))


def first_base_steps(config_or_preset: ConfigOrPreset, n_steps: int, workdir: os.PathLike[str] | str) -> list[dict]:
    """The log of the first ``n_steps`` pretraining steps of a from-scratch build (nothing saved but
    the tokenizer in ``workdir``): compare it with a base's ``training_log.jsonl`` to check that the
    base was trained by this code from this configuration."""
    cfg = resolve(config_or_preset)
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    manifest = BuildManifest(lensft_version=__version__, preset=cfg.name, config_key=cfg.cache_key(), seed=cfg.seed,
                             from_scratch=True)
    return _Builder(cfg, root, manifest, None)._pretrain(root / "unused", max_steps=n_steps)


def build(config_or_preset: ConfigOrPreset = "quick", *, seed: int | None = None, mixes: list[float] | None = None,
          sft_seeds: int | None = None, from_scratch: bool = False, out: os.PathLike[str] | str | None = None,
          rebuild: bool = False, progress: ProgressFn | None = None) -> OrganismBuild:
    """Build the organism (or finish or reuse a cached build) and return it.

    Another process building the same directory is waited for (its build is then reused); a
    killed build is finished from its last completed stage (and pretraining from its last saved
    state), ending byte-identical to an uninterrupted build but for wall-clock times.

    Args:
        config_or_preset: a preset name (``"tiny"``, ``"quick"``, ``"full"``) or an :class:`OrganismConfig`.
        seed: the world's seed (overrides the configuration's). A seed other than the shipped
            base's means pretraining a base.
        mixes: long-data fractions of the mix arms, e.g. ``[0.25, 0.5]`` (0 and 1 are always built).
        sft_seeds: train every arm this many times from the one base (SFT seeds 0..n-1).
        from_scratch: pretrain the base even when the package ships one for this configuration.
        out: build directory; default :func:`build_dir`.
        rebuild: delete the build directory first.
        progress: called with a :class:`~lensft.organism.progress.ProgressEvent` after every training step.

    Raises:
        OutputExists: ``out`` is a file or holds something other than this organism's build.
        LensftError: ``out`` holds a corrupt build, or lies inside a model checkpoint.
    """
    cfg = resolve(config_or_preset).with_overrides(seed=seed, mixes=mixes, sft_seeds=sft_seeds)
    root = Path(out) if out is not None else build_dir(cfg, from_scratch=from_scratch)
    check_path(root)
    resume_every()  # a bad override is refused before anything is written
    with locked(root, "lensft organism build", wait=True):
        if rebuild and root.exists():
            shutil.rmtree(root)
        manifest = check_dir(root, cfg, from_scratch)
        root.mkdir(parents=True, exist_ok=True)
        remove_stale(root, recursive=True)  # what killed builds left
        write_text_atomic(root / "config.json", _config_json(cfg, from_scratch))
        if manifest is None:
            manifest = BuildManifest(lensft_version=__version__, preset=cfg.name, config_key=cfg.cache_key(),
                                     seed=cfg.seed, from_scratch=from_scratch)
        b = _Builder(cfg, root, manifest, progress)
        b.tokenizer()
        prompt_sets = b.eval_sets()
        base = b.base()
        arms = b.arms(arm_refs(cfg))
        manifest.write(root)
    return OrganismBuild(root=root, config=cfg, base=base, arms=arms, prompt_sets=prompt_sets,
                         tokenizer=root / "tokenizer", world=root / "world.json", manifest=manifest)


def load(root: os.PathLike[str] | str) -> OrganismBuild:
    """The :class:`OrganismBuild` of an existing build directory (no training): every arm it holds."""
    root = Path(root)
    if not (root / "manifest.json").exists() or not (root / "config.json").exists():
        raise LensftError(f"{root} holds no built organism; build one first")
    cfg = OrganismConfig.model_validate(json.loads((root / "config.json").read_text(encoding="utf-8"))["config"])
    manifest = BuildManifest.read(root)
    if manifest.base is None:
        raise LensftError(f"{root} holds an unfinished organism build; build it again to finish it")
    arms = {a.arm: root / a.path for a in manifest.arms}
    return OrganismBuild(root=root, config=cfg, base=root / manifest.base.path, arms=arms,
                         prompt_sets={n: root / p for n, p in manifest.prompt_sets.items()},
                         tokenizer=root / "tokenizer", world=root / "world.json", manifest=manifest)


def _config_json(cfg: OrganismConfig, from_scratch: bool) -> str:
    return json.dumps({"config": cfg.model_dump(mode="json"), "from_scratch": from_scratch}, indent=1) + "\n"
