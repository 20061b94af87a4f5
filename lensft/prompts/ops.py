"""Operations on prompt sets in memory: cap items per task, combine sets, content identity."""

from __future__ import annotations

from typing import Optional

from lensft.hashing import sha256_json
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import PromptSet


def content_hash(ps: PromptSet) -> str:
    """sha256 of a prompt set's header and items: its identity for result caches."""
    return sha256_json(ps.model_dump(mode="json"))


def cap_per_task(ps: PromptSet, max_items: Optional[int]) -> PromptSet:
    """At most ``max_items`` items of each task (items without a task: of the set), in file order.

    Returns ``ps`` itself when nothing is dropped, so its version is kept.
    """
    if max_items is None:
        return ps
    counts: dict[str, int] = {}
    items = []
    for it in ps.items:
        t = getattr(it, "task", "") or ""
        if counts.get(t, 0) < max_items:
            counts[t] = counts.get(t, 0) + 1
            items.append(it)
    if len(items) == len(ps.items):
        return ps
    h = ps.header
    return make_prompt_set(h.name, h.version, h.kind, items, description=h.description, chat=h.chat)


def combine(name: str, sets: list[PromptSet]) -> PromptSet:
    """One prompt set holding every item of ``sets`` (all of one kind); its version is its content hash.

    Raises:
        ValueError: the sets are of different kinds.
    """
    kinds = {s.header.kind for s in sets}
    if len(kinds) != 1:
        raise ValueError(f"cannot combine prompt sets of kinds {sorted(kinds)}")
    kind = kinds.pop()
    items = [it for s in sets for it in s.items]
    desc = "; ".join(f"{s.header.name} v{s.header.version}" for s in sets)
    draft = make_prompt_set(name, "0", kind, items, description=desc, chat=sets[0].header.chat)
    return make_prompt_set(name, content_hash(draft)[:12], kind, items, description=desc, chat=draft.header.chat)
