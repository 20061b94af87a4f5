"""jaxtyping shape annotations are checked at run time under pytest (pyproject addopts): a call with
the wrong shape must fail, so the annotations on probe math are more than comments."""

from __future__ import annotations

import pytest
import torch

from lensft.probes.ffn_activations import batch_moments


def test_a_shape_annotation_is_enforced() -> None:
    acts = torch.randn(2, 5, 8)
    masks = torch.ones(3, 2, 5, dtype=torch.bool)
    thresholds = torch.tensor([0.01])
    assert batch_moments(acts, masks, thresholds).shape == (3, 2, 5)
    bad_masks = torch.ones(3, 4, 5, dtype=torch.bool)  # batch 4 against the activations' batch 2
    with pytest.raises(Exception, match="(?i)type-check|shape|dimension"):
        batch_moments(acts, bad_masks, thresholds)
