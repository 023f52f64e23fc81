"""The package's one metric convention and its one normalisation.

Metric signature
----------------
Every method that runs the model on stacked variants takes

    metric(logits: FloatTensor[n*B, T, V], dataset: TaskDataset) -> FloatTensor[n]

the metric of each of the ``n`` variants of the dataset's ``B`` examples, averaged over the
examples (rows ``k*B:(k+1)*B`` are variant ``k``). The default is the dataset's own task metric
(:meth:`TaskDataset.metric`, a probability or logit difference at the answer position). Raw
token pairs enter through :meth:`TaskDataset.from_tokens` with such a metric.

The one per-example form is input attribution's *target* (:mod:`tutorial_utils.input_attribution`),
``target(logits[B, T, V]) -> [B]``: gradients need one value per example, not a mean.
``input_attribution.metric_target(dataset)`` is the task metric in that form.

Normalisation
-------------
    normalize(value, clean, corrupted) = (value - corrupted) / (clean - corrupted)

1 = the clean behaviour, 0 = the corrupted behaviour (Wang et al. 2023, section 4; Hanna et al.
2023; Heimersheim & Nanda 2024). **Degenerate policy, the same in every function of the
package:** where ``|clean - corrupted| <= atol`` (default ``1e-6``) the corruption does not
change the metric and the ratio is undefined; the result is NaN there (``on_degenerate="nan"``,
the default) or a :class:`~tutorial_utils.errors.TutorialError` (``"raise"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Union

import torch
from torch import Tensor

from .errors import TutorialError

if TYPE_CHECKING:  # pragma: no cover
    from .tasks.base import TaskDataset

__all__ = ["DEGENERATE_ATOL", "Metric", "check_metric_output", "default_metric", "normalize"]

Metric = Callable[[Tensor, "TaskDataset"], Tensor]
Number = Union[float, int, Tensor]
DEGENERATE_ATOL = 1e-6


def default_metric(logits: Tensor, dataset: "TaskDataset") -> Tensor:
    """The dataset's task metric of each stacked variant: ``[n]`` for ``logits[n*B, ...]``."""
    n = logits.shape[0] // max(1, len(dataset))
    return dataset.metric(logits).reshape(n)


def check_metric_output(value: Any, n: int) -> Tensor:
    """The metric's output as FloatTensor[n], or a TutorialError saying what was expected."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float32)
        except Exception:  # noqa: BLE001
            raise TutorialError(f"metric must return a tensor [n] (one value per stacked "
                                f"variant), got {type(value).__name__}") from None
    if value.numel() != n:
        raise TutorialError(
            f"metric returned shape {tuple(value.shape)} for {n} stacked variant(s): a metric is "
            "metric(logits[n*B, T, V], dataset) -> [n], the mean over the B examples of each "
            "variant (see tutorial_utils.metrics)")
    return value.reshape(n).float()


def normalize(value: Number, clean: Number, corrupted: Number, *,
              on_degenerate: Literal["nan", "raise"] = "nan",
              atol: float = DEGENERATE_ATOL) -> Number:
    """``(value - corrupted) / (clean - corrupted)``, elementwise with broadcasting.

    Args:
        value, clean, corrupted: floats or tensors of broadcastable shapes.
        on_degenerate: where ``|clean - corrupted| <= atol``: ``"nan"`` (default) or
            ``"raise"`` a :class:`TutorialError`.

    Returns:
        A float if every input is a number or a 0-d tensor, else a FloatTensor.
    """
    if on_degenerate not in ("raise", "nan"):
        raise TutorialError(f"on_degenerate must be 'nan' or 'raise', got {on_degenerate!r}")
    all_scalar = all(not isinstance(x, Tensor) or x.ndim == 0 for x in (value, clean, corrupted))
    v, c, k = (torch.as_tensor(x, dtype=torch.float64).detach().cpu()
               for x in (value, clean, corrupted))
    for name, x in (("value", v), ("clean", c), ("corrupted", k)):
        if torch.isinf(x).any() or (name != "value" and torch.isnan(x).any()):
            raise TutorialError(f"normalize: {name} is not finite: {x.flatten()[:4].tolist()}")
    if torch.isnan(v).any():
        raise TutorialError(f"normalize: value is not finite: {v.flatten()[:4].tolist()}")
    denom = c - k
    degenerate = denom.abs() <= atol
    if degenerate.any() and on_degenerate == "raise":
        raise TutorialError(
            f"clean metric ({c.flatten()[:4].tolist()}) equals corrupted metric "
            f"({k.flatten()[:4].tolist()}) within atol={atol}: the corruption does not change the "
            "metric, so the normalised value is undefined; use a corruption that changes the "
            "answer, or on_degenerate='nan'")
    out = (v - k) / torch.where(degenerate, torch.ones_like(denom), denom)
    out = torch.where(degenerate, torch.full_like(out, float("nan")), out)
    if all_scalar:
        return float(out)
    return out.to(torch.float32)
