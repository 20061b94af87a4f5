"""lensft: long- vs short-context fine-tuning, taken apart.

Data flows one way: checkpoints -> graft -> model handle -> probes -> results -> report.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
