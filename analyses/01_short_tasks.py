# %% [markdown]
# # §2 / Table 1 — does long-context SFT help short tasks?
# Score every SFT arm of the model organism on its held-out short tasks with the `short_tasks` probe.

# %%
from _common import load_organism
from lensft.graft import variant_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
probe = get_probe("short_tasks")
tasks = ["fact_recall", "arithmetic", "cloze", "reading"]

# %%
acc = {}
for arm in ["base", "short", "long"]:
    handle = variant_model(triple, arm)  # shares the triple's loaded tensors
    acc[arm] = {t: probe.run(handle, sets[t], probe.Settings()).summary["accuracy"] for t in tasks if t in sets}
    print(arm, {t: round(100 * a, 1) for t, a in acc[arm].items()})

# %%
gap = sum(acc["long"].values()) / len(acc["long"]) - sum(acc["short"].values()) / len(acc["short"])
print(f"long - short, mean over tasks: {100 * gap:+.1f} points (paper: +2.68)")
