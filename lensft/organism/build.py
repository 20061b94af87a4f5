"""Build (or load from cache) the whole organism: world, tokenizer, eval sets, base, SFT arms.

Layout of a build directory (``<cache>/<config hash>/`` unless ``out`` is given)::

    config.json          the OrganismConfig (mixes as last requested)
    world.json           the synthetic world
    tokenizer/           HF tokenizer with chat template
    data/*.jsonl         held-out prompt sets (lensft prompt-set format)
    checkpoints/base     pretrained long-context base
    checkpoints/short    SFT on short data (long fraction 0)
    checkpoints/long     SFT on long data (long fraction 1)
    checkpoints/mix-0.50 SFT on a mixture (long fraction 0.5), one per requested mix
    build.json           per-stage wall time, token counts, tokens/s

Every stage writes atomically and is skipped when its output exists, so a second build is
instant and asking for a new mix trains only that mix. Stages draw from independent seed
streams, so skipping one never changes another.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from lensft.errors import LensftError, OutputExists
from lensft.organism.config import ConfigOrPreset, OrganismConfig, resolve
from lensft.organism.corpus import CorpusMaker
from lensft.organism.evalsets import write_eval_sets
from lensft.organism.packing import pack
from lensft.organism.sft_data import arm_sequences, make_pool
from lensft.organism.tokenizer import save_tokenizer, train_tokenizer
from lensft.organism.training import (
    ProgressFn,
    make_model,
    save_checkpoint,
    tokens_per_second,
    train,
)
from lensft.organism.world import World, make_world

log = logging.getLogger(__name__)

# seed streams: np.random.SeedSequence([seed, STREAM])
_CORPUS, _EVAL, _PRETRAIN_PACK, _SFT_SHORT, _SFT_LONG, _SFT_PACK = 2, 3, 5, 6, 7, 8


def default_cache_dir() -> Path:
    """``$LENSFT_CACHE/organism`` if ``LENSFT_CACHE`` is set, else ``~/.cache/lensft/organism``."""
    root = os.environ.get("LENSFT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "lensft") / "organism"


def arm_name(long_fraction: float) -> str:
    """``short`` for 0, ``long`` for 1, ``mix-0.50`` style names in between."""
    if long_fraction <= 0.0:
        return "short"
    if long_fraction >= 1.0:
        return "long"
    return f"mix-{long_fraction:.2f}"


@dataclass
class OrganismBuild:
    """Paths of a built organism (every checkpoint a Hugging Face directory)."""

    root: Path
    config: OrganismConfig
    base: Path
    short: Path
    long: Path
    mixes: dict[str, Path]
    prompt_sets: dict[str, Path]
    tokenizer: Path
    world: Path
    stages: dict[str, dict] = field(default_factory=dict)

    @property
    def checkpoints(self) -> dict[str, Path]:
        """``base``, ``short``, the mixes in increasing long fraction, ``long``."""
        return {"base": self.base, "short": self.short, **self.mixes, "long": self.long}

    def arms(self) -> dict[float, Path]:
        """SFT checkpoints keyed by long fraction (0.0 short ... 1.0 long)."""
        out = {0.0: self.short}
        out.update({float(n.split("-")[1]): p for n, p in self.mixes.items()})
        out[1.0] = self.long
        return dict(sorted(out.items()))


class _Builder:
    def __init__(self, cfg: OrganismConfig, root: Path, progress: ProgressFn | None):
        self.cfg, self.root, self.progress = cfg, root, progress
        self.stages: dict[str, dict] = {}
        self._world: World | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._cpt: float | None = None

    def rng(self, stream: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.cfg.seed, stream, *extra]))

    def _timed(self, name: str, t0: float, **info: object) -> None:
        self.stages[name] = {"seconds": round(time.perf_counter() - t0, 3), **info}
        log.info("organism stage %s: %s", name, self.stages[name])

    # -- stages -----------------------------------------------------------------------------
    @property
    def world(self) -> World:
        if self._world is None:
            self._world = make_world(self.cfg.world, self.cfg.seed)
            problems = self._world.check()
            if problems:
                raise AssertionError(f"inconsistent world: {problems}")
            path = self.root / "world.json"
            if not path.exists():
                _write_json(path, self._world.to_json())
        return self._world

    def corpus_docs(self) -> list[str]:
        """The first chunk of the pretraining corpus (the tokenizer's training text)."""
        maker = CorpusMaker(self.world, self.cfg.corpus, self.rng(_CORPUS))
        return maker.documents(int(self.cfg.pretrain.tokens * 1.2))

    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            path = self.root / "tokenizer"
            if not (path / "tokenizer.json").exists():
                t0 = time.perf_counter()
                docs = self.corpus_docs()
                tok = train_tokenizer(docs, self.cfg.model.vocab_size)
                tmp = self.root / ".tokenizer.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                save_tokenizer(tok, tmp)
                os.replace(tmp, path)
                self._timed("tokenizer", t0, vocab=len(tok))
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        return self._tokenizer

    def chars_per_token(self) -> float:
        """Average characters per token of world text (to size long documents in tokens)."""
        if self._cpt is None:
            rng = np.random.default_rng(0)
            maker = CorpusMaker(self.world, self.cfg.corpus, rng)
            sample = [maker.bio() for _ in range(200)]
            enc = self.tokenizer().backend_tokenizer.encode_batch(sample, add_special_tokens=False)
            self._cpt = sum(len(s) for s in sample) / max(1, sum(len(e.ids) for e in enc))
        return self._cpt

    def eval_sets(self) -> dict[str, Path]:
        data = self.root / "data"
        if not (data / "conflict.jsonl").exists():
            t0 = time.perf_counter()
            tmp = self.root / ".data.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            write_eval_sets(self.world, self.cfg.eval, self.rng(_EVAL), tmp, self.chars_per_token())
            shutil.rmtree(data, ignore_errors=True)
            os.replace(tmp, data)
            self._timed("eval_sets", t0)
        return {p.stem: p for p in sorted(data.glob("*.jsonl"))}

    def base(self) -> Path:
        path = self.root / "checkpoints" / "base"
        if (path / "model.safetensors").exists():
            return path
        tok = self.tokenizer()
        t0 = time.perf_counter()
        pt = self.cfg.pretrain
        maker = CorpusMaker(self.world, self.cfg.corpus, self.rng(_CORPUS))
        seqs, masks, total = [], [], 0
        while total < pt.tokens:  # the first chunk is the tokenizer's training text
            docs = maker.documents(int(pt.tokens * 1.2) if not seqs else max(1000, pt.tokens - total))
            for e in tok.backend_tokenizer.encode_batch(docs, add_special_tokens=True):
                ids = np.asarray(e.ids[: pt.seq_len], dtype=np.int64)[: pt.tokens - total]
                if len(ids) < 2:
                    break
                m = np.ones(len(ids), dtype=bool)
                m[0] = False  # never predict a document's BOS from the previous packed document
                seqs.append(ids)
                masks.append(m)
                total += len(ids)
        packed = pack(seqs, masks, (pt.short_seq_len, pt.seq_len), pt.batch_tokens, tok.pad_token_id,
                      self.rng(_PRETRAIN_PACK))
        self._timed("pretrain_data", t0, tokens=packed.n_tokens, rows=packed.n_rows)
        t0 = time.perf_counter()
        model = make_model(self.cfg.model, tok, self.cfg.seed)
        history = train(model, packed, pt, seed=self.cfg.seed, num_threads=self.cfg.num_threads,
                        stage="base", progress=self.progress)
        meta = {"organism": self.cfg.name, "variant": "base", "config_hash": self.cfg.cache_key(),
                "tokens": packed.n_tokens, "params": model.num_parameters()}
        save_checkpoint(model, tok, path, history, meta)
        self._timed("base", t0, tokens=packed.n_tokens, tokens_per_s=round(tokens_per_second(history), 1),
                    final_loss=history[-1]["loss"], params=model.num_parameters())
        return path

    def arms(self, fractions: list[float]) -> dict[float, Path]:
        paths = {m: self.root / "checkpoints" / arm_name(m) for m in fractions}
        todo = [m for m in fractions if not (paths[m] / "model.safetensors").exists()]
        if not todo:
            return paths
        base, tok = self.base(), self.tokenizer()
        sft = self.cfg.sft
        t0 = time.perf_counter()
        common = {"tokenizer": tok, "budget": sft.train.tokens, "chars_per_token": self.chars_per_token(),
                  "max_len": sft.train.seq_len}
        short = make_pool(self.world, sft, rng=self.rng(_SFT_SHORT), long=False, **common)
        long = make_pool(self.world, sft, rng=self.rng(_SFT_LONG), long=True, **common)
        self._timed("sft_data", t0, short_examples=len(short.ids), long_examples=len(long.ids))
        for m in todo:
            t0 = time.perf_counter()
            ids, masks, stats = arm_sequences(short, long, m, sft.train.tokens)
            packed = pack(ids, masks, (sft.train.short_seq_len, sft.train.seq_len), sft.train.batch_tokens,
                          tok.pad_token_id, self.rng(_SFT_PACK, round(m * 10000)))
            model = AutoModelForCausalLM.from_pretrained(str(base), dtype="float32")
            name = arm_name(m)
            history = train(model, packed, sft.train, seed=self.cfg.seed, num_threads=self.cfg.num_threads,
                            stage=name, progress=self.progress)
            meta = {"organism": self.cfg.name, "variant": name, "long_fraction": m, "config_hash": self.cfg.cache_key(),
                    "loss_tokens": packed.n_loss_tokens, **stats}
            save_checkpoint(model, tok, paths[m], history, meta)
            self._timed(name, t0, loss_tokens=packed.n_loss_tokens, rows=packed.n_rows,
                        tokens_per_s=round(tokens_per_second(history), 1), final_loss=history[-1]["loss"], **stats)
        return paths


def build(config_or_preset: ConfigOrPreset = "quick", *, seed: int | None = None,
          mixes: list[float] | None = None, out: os.PathLike[str] | str | None = None,
          rebuild: bool = False, progress: ProgressFn | None = None) -> OrganismBuild:
    """Build the organism (or return the cached build) and return the paths of everything.

    Args:
        config_or_preset: a preset name (``"quick"``, ``"full"``, ``"test"``) or an :class:`OrganismConfig`.
        seed: overrides the configuration's seed.
        mixes: long-data fractions of the SFT arms to build besides the pure ``short`` (0) and
            ``long`` (1) arms, e.g. ``[0.25, 0.5, 0.75]``; 0 and 1 in the list are accepted and ignored.
        out: build directory; default ``default_cache_dir() / config.cache_key()``.
        rebuild: delete the build directory first.
        progress: ``progress(stage, step, total, loss)`` after every training step.
    """
    cfg = resolve(config_or_preset).with_overrides(seed=seed, mixes=mixes)
    root = Path(out) if out is not None else default_cache_dir() / cfg.cache_key()
    if rebuild and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = root / "config.json"
    if cfg_path.exists():
        old = OrganismConfig.model_validate_json(cfg_path.read_text(encoding="utf-8"))
        if old.cache_key() != cfg.cache_key():
            raise OutputExists(f"{root} holds an organism built with another configuration; "
                               "pass --rebuild to replace it or choose another --out")
    elif any(root.iterdir()):
        raise OutputExists(f"{root} is not empty and holds no organism; choose an empty or new --out directory")
    _write_json(cfg_path, cfg.model_dump(mode="json"))

    t_all = time.perf_counter()
    b = _Builder(cfg, root, progress)
    world_path, tok_path = root / "world.json", root / "tokenizer"
    _ = b.world
    b.tokenizer()
    prompt_sets = b.eval_sets()
    base = b.base()
    fractions = sorted({0.0, 1.0, *[m for m in cfg.mixes if 0.0 < m < 1.0]})
    arms = b.arms(fractions)
    stages = _update_build_json(root, b.stages, time.perf_counter() - t_all)
    return OrganismBuild(root=root, config=cfg, base=base, short=arms[0.0], long=arms[1.0],
                         mixes={arm_name(m): p for m, p in arms.items() if 0.0 < m < 1.0},
                         prompt_sets=prompt_sets, tokenizer=tok_path, world=world_path, stages=stages)


def load(root: os.PathLike[str] | str) -> OrganismBuild:
    """An :class:`OrganismBuild` for an existing build directory (no training)."""
    root = Path(root)
    cfg_path = root / "config.json"
    if not cfg_path.exists() or not (root / "checkpoints" / "base" / "model.safetensors").exists():
        raise LensftError(f"{root} holds no built organism; run `lensft organism build` first")
    cfg = OrganismConfig.model_validate_json(cfg_path.read_text(encoding="utf-8"))
    ck = root / "checkpoints"
    mixes = {p.name: p for p in sorted(ck.glob("mix-*")) if (p / "model.safetensors").exists()}
    stages = json.loads((root / "build.json").read_text())["stages"] if (root / "build.json").exists() else {}
    return OrganismBuild(root=root, config=cfg, base=ck / "base", short=ck / "short", long=ck / "long", mixes=mixes,
                         prompt_sets={p.stem: p for p in sorted((root / "data").glob("*.jsonl"))},
                         tokenizer=root / "tokenizer", world=root / "world.json", stages=stages)


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _update_build_json(root: Path, stages: dict[str, dict], seconds: float) -> dict[str, dict]:
    path = root / "build.json"
    old = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    merged = {**old.get("stages", {}), **stages}
    _write_json(path, {"stages": merged, "last_run_seconds": round(seconds, 3)})
    return merged
