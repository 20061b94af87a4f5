"""Standard benchmarks through EleutherAI's lm-evaluation-harness (``lm-eval`` 0.4.x), offline.

lm-eval's Hugging Face wrapper (``HFLM``) is handed lensft's *in-memory* model, so a checkpoint,
a variant of a triple and an in-memory graft are all scored the same way and a per-layer sweep
never writes a checkpoint. Tasks come from lm-eval's registry (datasets from the local Hugging
Face cache), from the user's own task YAML over local JSON/JSONL files (an include path), or from
a lensft prompt set of kind ``task`` exported as an lm-eval task directory
(:func:`lensft.evaluation.export.export_task_dir`). The network is switched off for every run
(:func:`lensft.evaluation.offline.hf_offline`).

Modules: ``settings`` (what a run scores), ``offline`` and ``quiet`` (the run's environment),
``tasks`` (task managers, local data overrides, missing-dataset errors), ``harness`` (one lm-eval
run on a model handle), ``convert`` (lm-eval results to a :class:`~lensft.results.ProbeResult`),
``compare`` (paired per-document differences between two results), ``export`` and ``hooks``
(prompt sets as lm-eval tasks), ``suite`` and ``suite_run`` (benchmark lists such as the
paper's, run on one model), ``probe`` (the registered ``lm_eval`` probe). lm-eval itself is
imported only when a run starts, never by importing these modules.
"""
