# %% [markdown]
# # §4 / Table 6 — knowledge preference, per-layer view and activation patching

# %%
import numpy as np

from _common import load_organism
from lensft.graft import GraftSpec, graft_model, variant_model
from lensft.probes.patching import patch_across
from lensft.probes.registry import get_probe

b, triple, sets = load_organism()
know = get_probe("knowledge_preference")
settings = know.Settings(generate=False)

# %%
models = {"short": variant_model(triple, "short"), "long": variant_model(triple, "long"),
          "short+long.mha": graft_model(triple, GraftSpec.build(mha="long", ffn="short"))}
for name, h in models.items():
    r = know.run(h, sets["conflict"], settings)
    print(f"{name:15s} yes/no accuracy {100 * r.summary['yn_accuracy']:.1f}%  context preferred {100 * r.summary['ctx_pref_rate']:.1f}%",
          " lens margin per layer:", np.round(r.array("lens_margin")[0], 2).tolist())

# %% [markdown]
# Patch the long arm's block outputs into the short arm, one layer at a time (margin in nats).

# %%
p = patch_across(models["short"], models["long"], sets["conflict"], "both")
print("gap long - short:", round(p.summary["gap"], 3))
for i, comp in enumerate(p.coords["component"]):
    print(comp, np.round(p.array("delta")[i], 3).tolist())
