"""Checkpoint I/O: lazy readers, triples, compatibility reports and streamed writing."""

from lensft.checkpoints.reader import CheckpointReader, TensorMeta, open_checkpoint

__all__ = ["CheckpointReader", "TensorMeta", "open_checkpoint"]
