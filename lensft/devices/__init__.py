"""Where and in what precision models live: :class:`LoadOptions`, device placement and the memory check.

One typed options object (:class:`LoadOptions`: ``device``, ``dtype``, ``tokens_per_batch``) is
what every loader takes (:func:`lensft.handle.load_model`, :func:`lensft.graft.graft_model`,
:func:`lensft.graft.variant_model`) and what the CLI and the study build from their flags.
:mod:`lensft.devices.memory` estimates what a load needs and refuses, in one line, a load that
cannot fit before any tensor is materialised.
"""

from lensft.devices.memory import MemoryEstimate, available_memory, check_memory, estimate_activation_bytes
from lensft.devices.options import DTYPES, LoadOptions, Placement, resolve_dtype, resolve_placement

__all__ = ["DTYPES", "LoadOptions", "MemoryEstimate", "Placement", "available_memory", "check_memory",
           "estimate_activation_bytes", "resolve_dtype", "resolve_placement"]
