"""lm-eval on a real pretrained model (SmolLM2-135M-Instruct): the harness, given lensft's in-memory
model, answers what the model knows and agrees with lensft's short_tasks item by item, through
the model's real tokenizer (BOS handling) and chat template."""

from __future__ import annotations

import pytest
from test_eval import _check_against_short_tasks

from lensft.evaluation.settings import HarnessSettings
from lensft.handle import load_model
from lensft.probes.registry import get_probe
from lensft.probes.short_tasks import ShortTaskSettings, score_tasks
from lensft.prompts import TaskItem, make_prompt_set

pytestmark = pytest.mark.real

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Japan", "Tokyo")]


@pytest.mark.parametrize("chat", [True, False])
def test_smollm2_capitals_through_lm_eval(smollm2, chat: bool) -> None:
    h = load_model(smollm2)
    ask = "What is the capital of {}? Answer with one word." if chat else "The capital of {} is"
    items = [TaskItem(id=f"g{i}", task="capital", prompt=ask.format(c), answer=a) for i, (c, a) in enumerate(CAPITALS)]
    items += [TaskItem(id=f"m{i}", task="capital_mc", prompt=ask.format(c), answer=a, label=0,
                       choices=[a, CAPITALS[(i + 1) % 4][1], CAPITALS[(i + 2) % 4][1]]) for i, (c, a) in enumerate(CAPITALS)]
    ps = make_prompt_set("capitals", "1", "task", items, chat=chat)
    run = get_probe("lm_eval").evaluate(h, ps, HarnessSettings(match="contains", max_new_tokens=6))
    reference = score_tasks(h, ps, ShortTaskSettings(match="contains", max_new_tokens=6))
    _check_against_short_tasks(run, reference, {"capitals_capital": "capital", "capitals_capital_mc": "capital_mc"})
    s = run.result.summary
    assert s["capitals_capital_mc/acc,none"] == 1.0  # a 135M instruct model knows these four capitals
    assert s["capitals_capital/contains_match,none"] == 1.0
    assert run.result.settings["chat_applied"] is chat
