# %% [markdown]
# # §5 / Figures 6, 7, Table 7 — SFT mixes (organism only)

# %%
from _common import load_organism
from lensft.handle import load_model
from lensft.probes.registry import get_probe

b, triple, sets = load_organism(mixes=[0.5])
tasks, know = get_probe("short_tasks"), get_probe("knowledge_preference")

# %%
for arm, path in b.arms.items():  # ArmRef -> checkpoint, in order of SFT seed and long fraction
    fraction = arm.long_fraction
    h = load_model(path, label=arm.label)
    arith = tasks.run(h, sets["arithmetic"], tasks.Settings()).summary["accuracy"]
    facts = tasks.run(h, sets["fact_recall"], tasks.Settings()).summary["accuracy"]
    yn = know.run(h, sets["conflict"], know.Settings(generate=False)).summary["yn_accuracy"]
    print(f"long data {100 * fraction:5.1f}%: arithmetic {100 * arith:5.1f}%  fact_recall {100 * facts:5.1f}%  conflict yes/no {100 * yn:5.1f}%")
