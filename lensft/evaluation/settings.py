"""What one lm-eval run scores: :class:`HarnessSettings` (the ``lm_eval`` probe's settings)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HarnessSettings(BaseModel):
    """Settings of one lm-evaluation-harness run on one model.

    ``tasks`` names lm-eval tasks, groups or tags (``gsm8k_cot``, ``mmlu`` ...); when it is empty
    the probe's prompt set is exported to an lm-eval task and scored instead. ``include_path``
    adds directories of task YAML; ``data_files`` points a registered task at local files
    (``{"gsm8k_cot": "gsm8k/test.jsonl"}`` or ``{"gsm8k": {"test": ..., "train": ...}}``).
    ``num_fewshot`` / ``limit`` / ``batch_size`` / ``gen_kwargs`` / ``bootstrap_iters`` /
    ``fewshot_seed`` are lm-eval's own options with lm-eval's defaults. ``apply_chat_template``
    None means: the prompt set's ``chat`` flag for an exported prompt set (when the tokenizer has
    a chat template), off for registry tasks (lm-eval's default). ``match`` and
    ``max_new_tokens`` apply to exported prompt sets (as in the ``short_tasks`` probe).
    """

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=list, description="lm-eval task/group/tag names; empty: the prompt set")
    num_fewshot: Optional[int] = Field(None, ge=0, description="few-shot examples; None: each task's default")
    limit: Optional[float] = Field(None, gt=0, description="first N documents per task (a fraction when < 1)")
    batch_size: int = Field(8, ge=1)
    include_path: list[str] = Field(default_factory=list, description="directories of extra task YAML files")
    data_files: dict[str, Any] = Field(default_factory=dict, description="task -> local file, or split -> file")
    apply_chat_template: Optional[bool] = None
    gen_kwargs: dict[str, Any] = Field(default_factory=dict, description="generation overrides for generate_until tasks")
    log_samples: bool = Field(True, description="keep per-item records")
    bootstrap_iters: int = Field(100000, ge=0, description="lm-eval's bootstrap for non-mean metrics (0: no stderr)")
    fewshot_seed: int = 1234
    confirm_run_unsafe_code: bool = Field(False, description="allow tasks that execute model-written code (MBPP, HumanEval)")
    match: Literal["exact", "contains"] = "exact"
    max_new_tokens: int = Field(24, ge=1, description="exported prompt sets: greedy answer length cap")

    @field_validator("tasks")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        out = [t.strip() for t in v if t.strip()]
        if len(set(out)) != len(out):
            raise ValueError(f"task names repeat: {out}")
        return out

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and v >= 1 and v != int(v):
            raise ValueError("limit is a whole number of documents, or a fraction below 1")
        return v

    def lm_eval_limit(self) -> int | float | None:
        """``limit`` as lm-eval takes it: an int count, or a float fraction below 1."""
        if self.limit is None:
            return None
        return int(self.limit) if self.limit >= 1 else float(self.limit)
