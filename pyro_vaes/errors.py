"""Exceptions raised by pyro-vaes.

Every check that refuses bad input raises one of these, before any training starts or any
file is written, with a message that names the problem.
"""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be used: empty, non-finite, outside the likelihood's support, or shaped
    differently from what the model expects."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, foreign, or does not match the model."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite during training.

    Attributes ``epoch`` and ``step`` say where; the last good checkpoint (if any) is kept.
    """

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class RunFolderError(Exception):
    """A run folder cannot be used as asked: not a run, someone else's files, held by another
    process, a damaged ``config.json`` or ``metrics.json``, or options that differ from the
    run's."""
