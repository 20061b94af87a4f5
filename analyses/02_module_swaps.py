# %% [markdown]
# # §3.2 / Figures 1–2 — decoupling MHA and FFN, plus a per-layer sweep
# The paper's swaps keep everything but one block from the *host*: `short + long.mha` is the short
# checkpoint with the long checkpoint's attention. Build them in memory with `graft_model`, then graft one
# layer at a time.

# %%
from _common import load_organism
from lensft.graft import GraftSpec, graft_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
probe = get_probe("short_tasks")

# %%
acc = {}
for host, donor in (("short", "long"), ("long", "short")):
    for block in (None, "mha", "ffn"):
        blocks = {"mha": host, "ffn": host} | ({block: donor} if block else {})
        spec = GraftSpec.build(host=host, **blocks)
        h = graft_model(triple, spec)
        acc[spec.label] = {t: probe.run(h, sets[t], probe.Settings()).summary["accuracy"] for t in ("arithmetic", "fact_recall")}
        print(f"{spec.label:18s}", {t: round(100 * a, 1) for t, a in acc[spec.label].items()})

# %%
print("short + long.mha − short, arithmetic:", round(100 * (acc["short + long.mha"]["arithmetic"] - acc["short"]["arithmetic"]), 1), "points (paper GSM8K: +13.1)")
print("short + long.ffn − short, fact_recall:", round(100 * (acc["short + long.ffn"]["fact_recall"] - acc["short"]["fact_recall"]), 1), "points (paper World Capital: +2.4)")
print("(point estimates on one organism; `lensft study` gives paired bootstrap intervals)")

# %% [markdown]
# Per-layer sweep: the long arm's MHA in one layer of the short model at a time.

# %%
for layer in range(triple.n_layers):
    h = graft_model(triple, GraftSpec.build(mha="long", ffn="short", host="short", layers=f"{layer}:{layer + 1}"))
    a = probe.run(h, sets["arithmetic"], probe.Settings()).summary["accuracy"]
    print(f"layer {layer}: arithmetic {100 * a:.1f}% (short alone {100 * acc['short']['arithmetic']:.1f}%)")
