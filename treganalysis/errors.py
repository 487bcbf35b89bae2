"""Errors raised for bad input.

Every error names the file (where there is one), what is wrong and how to fix it, so the
command line can print one clear line instead of a traceback.
"""

from __future__ import annotations

__all__ = ["TregAnalysisError", "FCSError", "PanelError", "SpilloverError", "TransformError"]


class TregAnalysisError(ValueError):
    """Base class of the errors that report a user's input problem (not a bug)."""


class FCSError(TregAnalysisError):
    """An FCS file cannot be read: truncated, inconsistent or unsupported."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class PanelError(TregAnalysisError):
    """A marker of the panel is missing from a file, or matches several channels."""


class SpilloverError(TregAnalysisError):
    """A spillover matrix cannot be used with a sample."""


class TransformError(TregAnalysisError):
    """Invalid transform parameters."""
