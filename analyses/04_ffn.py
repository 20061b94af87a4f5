# %% [markdown]
# # §3 FFN probes / Figures 5, 10 — FFN activation mean, variance and sparsity per layer

# %%
import numpy as np

from _common import load_organism
from lensft.graft import variant_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
ffn = get_probe("ffn_activations")

# %%
stats = {}
for arm in ["short", "long"]:
    r = ffn.run(variant_model(triple, arm), sets["fact_recall"], ffn.Settings())
    site, phase = r.coords["site"].index("act"), r.coords["phase"].index("all")
    stats[arm] = {k: r.array(k)[site, phase] for k in ("mean", "var")}
    stats[arm]["sparsity"] = r.array("sparsity")[site, phase, :, 0]
    print(arm, {k: np.round(v, 4).tolist() for k, v in stats[arm].items()})

# %%
for k in ("mean", "var", "sparsity"):
    rel = 100 * (stats["long"][k] - stats["short"][k]) / np.abs(stats["short"][k])
    print(f"relative difference long vs short, {k} (%):", np.round(rel, 1).tolist())
