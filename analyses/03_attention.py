# %% [markdown]
# # §3 MHA probes / Figures 3, 4, 11, 12 — retrieval heads and attention entropy

# %%
import numpy as np

from _common import load_organism
from lensft.graft import variant_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
retrieval, spread = get_probe("retrieval_heads"), get_probe("attention_spread")

# %%
scores, ent = {}, {}
for arm in ["short", "long"]:
    h = variant_model(triple, arm)
    r = retrieval.run(h, sets["needle"], retrieval.Settings())
    scores[arm] = r.array("score")  # [layer, head]
    s = spread.run(h, sets["arithmetic"], spread.Settings())
    ent[arm] = {p: s.array("entropy")[i] for i, p in enumerate(s.coords["phase"])}  # phase -> [layer, head], nats
    print(arm, "mean retrieval score x100:", round(100 * float(scores[arm].mean()), 2), "retrieval heads:", r.summary["n_retrieval_heads"])

# %%
diff = scores["long"] - scores["short"]
print("long - short retrieval score per layer x head:\n", np.round(diff, 3))
for phase in ent["long"]:
    print(phase, "entropy long - short per layer (nats):", np.round((ent["long"][phase] - ent["short"][phase]).mean(-1), 3))
