"""The package's one error type.

Every check in ``tutorial_utils`` raises :class:`TutorialError` before any heavy work, with a
message that names the bad argument, what was expected and how to fix it (the model of
einops' messages, which name the offending pattern and shapes).
"""

from __future__ import annotations

__all__ = ["TutorialError"]


class TutorialError(ValueError):
    """A bad argument to a ``tutorial_utils`` function: the message names the argument, what
    was expected and how to fix it. A ``ValueError``, so ``except ValueError`` still works."""
