r"""The package's one metric contract and its one normalisation.

The metric contract
-------------------
::

    metric(logits: Float[Tensor, "batch pos vocab"], dataset: TaskDataset)
        -> Float[Tensor, "batch"] | Float[Tensor, ""]

A metric is called with the logits of **one** run of the dataset's ``B`` examples, in the
dataset's order, and the dataset (or sub-dataset) they came from; it returns one value per example
(``[B]``) or their mean (``[]``). Methods that run many patched variants at once stack them along
the batch themselves and hand the metric one variant at a time
(:func:`tutorial_utils.tasks.base.metric_of_variants`), so a metric cannot mix variants and
examples. ``None`` (the default everywhere) is the dataset's own task metric
(:meth:`TaskDataset.metric`). Raw token pairs enter through :meth:`TaskDataset.from_tokens`
with such a metric. Methods that need one value per example (input attribution,
``per_example=True``) need the ``[B]`` form; methods that take gradients need a tensor computed
from the logits.

Refused with a :class:`~tutorial_utils.errors.TutorialError` naming the problem: a metric that is
not callable or does not take two arguments (:func:`check_metric`, before any forward pass), and
an output that is not a number or tensor, has another shape, or is NaN or infinite
(:func:`check_metric_value`).

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

import inspect
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import TutorialError

if TYPE_CHECKING:  # pragma: no cover
    from .base import TaskDataset

__all__ = ["DEGENERATE_ATOL", "Metric", "check_metric", "check_metric_value", "normalize"]

Metric = Callable[[Float[Tensor, "batch pos vocab"], "TaskDataset"],
                  Union[Float[Tensor, " batch"], Float[Tensor, ""]]]
Number = Union[float, int, Tensor]
DEGENERATE_ATOL = 1e-6

_CONTRACT = ("a metric is metric(logits[B, T, V], dataset) -> [B] (one value per example) or [] "
             "(their mean), called on one run of the dataset's B examples "
             "(see tutorial_utils.tasks.metrics)")


def check_metric(metric: Any, what: str = "metric") -> None:
    """Refuse, before any forward pass, a metric that is neither ``None`` nor a function of two
    arguments ``(logits, dataset)``."""
    if metric is None:
        return
    if not callable(metric):
        raise TutorialError(f"{what} must be a function (logits, dataset) -> [B] or [], or None "
                            f"for the dataset's task metric; got {type(metric).__name__}")
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    try:
        sig.bind(None, None)
    except TypeError:
        raise TutorialError(f"{what} {getattr(metric, '__name__', metric)!r} cannot be called "
                            f"as {what}(logits, dataset): {_CONTRACT}") from None


def check_metric_value(value: Any, n_examples: int, what: str = "metric",
                       need_grad: bool = False) -> Float[Tensor, "..."]:
    """The output of one call of a metric on ``n_examples`` rows, as a float tensor ``[B]`` or
    ``[]``; a :class:`TutorialError` for anything else, or for a NaN or infinite value.

    ``need_grad``: the value must be a tensor computed from the logits (gradient methods)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TutorialError(f"{what} returned {type(value).__name__} ({value!r}): {_CONTRACT}")
    if not isinstance(value, Tensor):
        if need_grad:
            raise TutorialError(f"{what} returned a {type(value).__name__}, not a tensor computed "
                                f"from the logits, so no gradient can flow through it (return "
                                f"the tensor itself, without float() or .item()): {_CONTRACT}")
        try:
            value = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TutorialError(f"{what} returned {type(value).__name__}: {_CONTRACT}") from None
    if value.is_complex() or value.dtype == torch.bool:
        raise TutorialError(f"{what} returned a {value.dtype} tensor: {_CONTRACT}")
    if need_grad and not value.requires_grad:
        raise TutorialError(f"{what} returned a tensor that does not depend on the logits (no "
                            f"gradient; was it detached or built with torch.tensor(...)?): "
                            f"{_CONTRACT}")
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != n_examples):
        raise TutorialError(f"{what} returned shape {tuple(value.shape)} for logits of "
                            f"{n_examples} example(s): {_CONTRACT}")
    if not bool(torch.isfinite(value.detach()).all()):
        raise TutorialError(f"{what} returned a non-finite value "
                            f"({value.detach().flatten()[:4].tolist()}): a NaN or infinite metric "
                            "would make every result built on it meaningless; check for a "
                            "log of 0 or a division by 0 in it")
    return value if value.is_floating_point() else value.float()


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
        if not bool(torch.isfinite(x).all()):
            raise TutorialError(f"normalize: {name} is not finite: {x.flatten()[:4].tolist()}")
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
