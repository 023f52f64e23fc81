"""Steering: adding a direction to the residual stream and measuring what the model does
(Turner et al. 2023, "activation addition"; Marks & Tegmark 2023 and Rimsky et al. 2024 for
difference-of-means directions; Templeton et al. 2024 for steering with SAE features).

    resid_pre_l[answer position]  <-  resid_pre_l[answer position] + alpha * u

with ``u`` a unit direction: a difference of class means, ``mean(x | group) - mean(x | not
group)`` over a *training* set of prompts (normalised), or an SAE feature's decoder column.
Every coefficient ``alpha`` runs as one stacked variant of a single forward. A flip is an
example the model got right (task metric > 0) whose metric the steering makes negative (the
model now prefers the verb that disagrees with the subject it was given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..errors import TutorialError
from ..tasks.base import TaskDataset, metric_of_variants
from .unfolded import UnfoldedGPT2

__all__ = ["SteeringResult", "difference_of_means", "steer"]


@torch.no_grad()
def difference_of_means(lm: UnfoldedGPT2, dataset: TaskDataset, layer: int,
                        group: Bool[Tensor, "batch"] | Sequence[bool]) -> Float[Tensor, "d_model"]:
    """The unit vector along ``mean(x | group) - mean(x | not group)``, ``x`` the residual
    stream before block ``layer`` at each example's answer position."""
    lm.check_layer(layer)
    group = torch.as_tensor(list(group) if not isinstance(group, Tensor) else group,
                            dtype=torch.bool)
    if group.shape != (len(dataset),) or group.all() or not group.any():
        raise TutorialError(f"group must be {len(dataset)} booleans with both values present")
    name = f"resid_pre.{layer}"
    x = lm.activations(lm.check_tokens(dataset.clean_tokens), (name,))[name]
    x = x[torch.arange(len(dataset)), dataset.answer_pos]
    v = x[group].mean(0) - x[~group].mean(0)
    return v / v.norm()


@dataclass
class SteeringResult:
    """Per coefficient: the task metric of every example ``[n_coef, B]``, its mean, and the
    flip rate: the share of the examples the unsteered model gets right (metric > 0) whose
    metric the steering makes negative."""

    coefficients: list[float]
    metric: Tensor
    mean_metric: Tensor
    flip_rate: Tensor


@torch.no_grad()
def steer(lm: UnfoldedGPT2, dataset: TaskDataset, layer: int, direction: Float[Tensor, "d_model"],
          coefficients: Sequence[float], rows: Bool[Tensor, "batch"] | None = None
          ) -> SteeringResult:
    """Add ``alpha * direction / ||direction||`` at the answer position before block ``layer``
    for every ``alpha`` in ``coefficients`` (0 included gives the unsteered run), on the examples
    ``rows`` (default all); one stacked forward, whose ``alpha = 0`` variant (added when
    ``coefficients`` lacks it, and not returned then) is the unsteered run the flips are counted
    against."""
    lm.check_layer(layer)
    if not isinstance(direction, Tensor) or direction.shape != (lm.w.d_model,):
        raise TutorialError(f"direction must be a tensor [{lm.w.d_model}] (d_model)")
    if float(direction.norm()) == 0.0:
        raise TutorialError("direction is the zero vector")
    coefs = [float(c) for c in coefficients]
    if not coefs:
        raise TutorialError("give at least one steering coefficient")
    ds = dataset if rows is None else dataset.subset(torch.as_tensor(rows).nonzero()[:, 0].tolist())
    stacked = coefs if 0.0 in coefs else [0.0] + coefs
    B, K = len(ds), len(stacked)
    u = direction / direction.norm()
    toks = lm.check_tokens(ds.clean_tokens).repeat(K, 1)
    r = torch.arange(K * B)
    pos = ds.answer_pos.repeat(K)
    alpha = torch.tensor(stacked).repeat_interleave(B)

    def edit(l: int, x: Tensor) -> Tensor:
        if l != layer:
            return x
        x = x.clone()
        x[r, pos] = x[r, pos] + alpha[:, None] * u
        return x

    logits = lm.run(toks, resid_edit=edit).logits
    metric = metric_of_variants(None, logits, ds, K, per_example=True)         # [K, B]
    base = metric[stacked.index(0.0)]
    if stacked is not coefs:
        metric = metric[1:]
    right = base > 0
    flips = ((metric < 0) & right[None]).float().sum(1) / right.float().sum().clamp_min(1.0)
    return SteeringResult(coefs, metric, metric.mean(1), flips)
