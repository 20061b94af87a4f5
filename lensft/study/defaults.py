"""Small built-in prompt sets for a study on a user triple (no organism world to draw from).

They are generic English items (capitals, small sums, cloze, a secret number in a haystack); a
real study should pass its own sets with ``--prompts role=FILE``. Versions are fixed strings, so
results cached on them stay valid until the sets change.
"""

from __future__ import annotations

from importlib import resources

from lensft.prompts import NeedleItem, PromptSet, Span, TaskItem, make_prompt_set, read_prompt_set

VERSION = "1"

_CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
             ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo")]
_FILLER = ["The weather was mild that day.", "A train left the station on time.", "The market sold apples and pears.",
           "Children played near the river.", "The library opened at nine.", "A dog slept under the table."]


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


def needle_set(n: int = 10) -> PromptSet:
    items = []
    for i in range(n):
        num = str(1000 + 37 * i)
        hay = [_FILLER[(i + j) % len(_FILLER)] for j in range(8)]
        depth = (i % 5) / 4
        k = int(round(depth * len(hay)))
        needle = f"The secret number is {num}."
        before = " ".join(hay[:k])
        text = (before + " " if before else "") + needle + " " + " ".join(hay[k:]) + " What is the secret number?"
        start = text.index(num)
        items.append(NeedleItem(id=f"needle-{i}", prompt=text, needle=Span(name="answer", start=start, end=start + len(num)),
                                answer=num, context_tokens=len(text) // 4, depth=depth))
    return make_prompt_set("default_needle", VERSION, "needle", items,
                           description="built-in needle in a haystack: a secret number among filler sentences")


def conflict_set() -> PromptSet:
    path = resources.files("lensft.probes") / "data" / "conflict_default.jsonl"
    with resources.as_file(path) as p:
        return read_prompt_set(p)
