"""Task datasets (clean/corrupted prompt pairs) and their metrics.

>>> from tutorial_utils.tasks import make_task
>>> ds = make_task("greater_than", model, n=50)      # doctest: +SKIP
>>> ds.metric(model(ds.clean_tokens))                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .base import TaskBuildError, TaskDataset, accuracy, task_metric
from .facts import make_facts, top1_accuracy
from .greater_than import make_greater_than
from .ioi import make_ioi
from .sva import make_sva
from ..errors import TutorialError

TASKS = {
    "greater_than": make_greater_than,
    "sva": make_sva,
    "ioi": make_ioi,
    "facts": make_facts,
}


def make_task(name: str, tokenizer_or_model: Any, **kwargs: Any) -> TaskDataset:
    """Build the dataset of task ``name`` (one of :data:`TASKS`) for a tokenizer or model."""
    if name not in TASKS:
        raise TutorialError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name](tokenizer_or_model, **kwargs)


__all__ = [
    "TASKS", "TaskBuildError", "TaskDataset", "accuracy", "make_facts", "make_greater_than",
    "make_ioi", "make_sva", "make_task", "task_metric", "top1_accuracy",
]
