# %% [markdown]
# # The whole study in one call, then the report from its result files

# %%
import os
import tempfile

from lensft.report.claims import claims_table
from lensft.report.data import StudyData
from lensft.report.pipeline import run_study as run
from lensft.study import STEP_NAMES, StepConfig, StudyConfig

out = os.environ.get("LENSFT_STUDY_OUT") or tempfile.mkdtemp(prefix="lensft-study-")
# Study-level organism_dir holds one build per seed (<dir>/seed-<i>); LENSFT_STUDY_ORGANISM_DIR names it.
steps = ({n: StepConfig(max_items=int(os.environ["LENSFT_MAX_ITEMS"])) for n in STEP_NAMES}
         if "LENSFT_MAX_ITEMS" in os.environ else {})
cfg = StudyConfig(organism=os.environ.get("LENSFT_ORGANISM", "quick"),
                  organism_dir=os.environ.get("LENSFT_STUDY_ORGANISM_DIR"), png=False, mixes=[0.5], steps=steps)
outcome = run(cfg, out)
print("report:", outcome.report)
print("wall time per step (s):", outcome.step_seconds)

# %%
for c in claims_table(StudyData.load(out)):
    print(f"{c.id}. {c.claim}: measured {c.measured} (paper {c.paper}) -> {c.verdict}")
