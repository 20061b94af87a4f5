# %% [markdown]
# # §3.2 / Figures 1–2 — decoupling MHA and FFN, plus a per-layer sweep
# Build every MHA × FFN combination in memory with `graft_model`, then graft one layer at a time.

# %%
from _common import load_organism
from lensft.graft import GraftSpec, graft_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
probe = get_probe("short_tasks")

# %%
grid = {}
for mha in ["short", "long"]:
    for ffn in ["short", "long"]:
        h = graft_model(triple, GraftSpec.build(mha=mha, ffn=ffn))  # host = the FFN's source
        grid[mha, ffn] = {t: probe.run(h, sets[t], probe.Settings()).summary["accuracy"] for t in ("arithmetic", "fact_recall")}
        print(f"MHA {mha:5s} FFN {ffn:5s}", {t: round(100 * a, 1) for t, a in grid[mha, ffn].items()})

# %%
print("long MHA into short, arithmetic:", round(100 * (grid["long", "short"]["arithmetic"] - grid["short", "short"]["arithmetic"]), 1), "points (paper GSM8K: +13.1)")
print("long FFN into short, fact_recall:", round(100 * (grid["short", "long"]["fact_recall"] - grid["short", "short"]["fact_recall"]), 1), "points (paper World Capital: +2.4)")

# %% [markdown]
# Per-layer sweep: the long arm's MHA in one layer of the short model at a time.

# %%
for layer in range(triple.n_layers):
    h = graft_model(triple, GraftSpec.build(mha="long", ffn="short", host="short", layers=f"{layer}:{layer + 1}"))
    a = probe.run(h, sets["arithmetic"], probe.Settings()).summary["accuracy"]
    print(f"layer {layer}: arithmetic {100 * a:.1f}% (short alone {100 * grid['short', 'short']['arithmetic']:.1f}%)")
