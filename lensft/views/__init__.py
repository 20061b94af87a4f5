"""Views of a loaded model in other interpretability libraries.

:func:`transformer_lens_view` (also ``ModelHandle.transformer_lens()``) opens any model lensft
loads or grafts as a TransformerLens ``HookedTransformer`` or ``TransformerBridge``, built from
the handle's in-memory weights. TransformerLens itself is imported on first use.
"""

from lensft.views.tl_view import Backend, BackendChoice, choose_backend, transformer_lens_view

__all__ = ["Backend", "BackendChoice", "choose_backend", "transformer_lens_view"]
