"""Small built-in prompt sets for a study on a user triple (no organism world to draw from).

They are generic English items (capitals, small sums, cloze), Wu et al.-style needles in offline
filler, and the real-world conflict set; a real study should pass its own sets with
``--prompts role=FILE``. Versions are fixed strings, so
results cached on them stay valid until the sets change.
"""

from __future__ import annotations

from importlib import resources

from lensft.prompts import PromptSet, TaskItem, build_needle_set, make_prompt_set, read_prompt_set

VERSION = "1"

_CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
             ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo")]


def task_set() -> PromptSet:
    items = [TaskItem(id=f"capital-{i}", task="fact_recall", prompt=f"What is the capital of {c}?", answer=a)
             for i, (c, a) in enumerate(_CAPITALS)]
    for i in range(10):
        a, b = 2 + i, 3 + (i * 7) % 9
        items.append(TaskItem(id=f"sum-{i}", task="arithmetic", prompt=f"What is {a} plus {b}?", answer=str(a + b)))
    for i, (c, a) in enumerate(_CAPITALS[:6]):
        items.append(TaskItem(id=f"cloze-{i}", task="cloze", prompt=f"Complete: Ana flew to {a}, the capital of {c}. "
                              f"She loved the city of", answer=a))
    return make_prompt_set("default_tasks", VERSION, "task", items,
                           description="built-in generic short tasks (capitals, sums, cloze)")


def needle_set(tokenizer: object = None, lengths: tuple[int, ...] = (1000, 2000), per_length: int = 12) -> PromptSet:
    """Wu et al.-style needles (``lensft.prompts.build_needle_set``) in lensft's offline filler,
    sized in the triple's own tokens when its tokenizer is given."""
    return build_needle_set(lengths, per_length, style="wu", seed=0, tokenizer=tokenizer, name="default_needle")


def conflict_set() -> PromptSet:
    path = resources.files("lensft.probes") / "data" / "conflict_default.jsonl"
    with resources.as_file(path) as p:
        return read_prompt_set(p)
