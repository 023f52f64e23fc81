"""Rank statistics shared by the methods: the package's one Spearman correlation.

Spearman's rank correlation of two score vectors is the Pearson correlation of their ranks,
ties given their average rank (Spearman 1904). Used to compare attribution methods with each
other (input attribution, context mixing) and edge-attribution scores with exact patching.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .errors import TutorialError
from .validation import check_finite, check_mask

__all__ = ["average_ranks", "rank_correlation", "spearman"]


def average_ranks(v: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """0-based ranks of ``v`` in float64, ties sharing their mean rank."""
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v, dtype=torch.float64)
    ranks[order] = torch.arange(len(v), dtype=torch.float64, device=v.device)
    uniq, inv = torch.unique(v, return_inverse=True)
    if len(uniq) < len(v):
        sums = torch.zeros(len(uniq), dtype=torch.float64, device=v.device).index_add_(0, inv, ranks)
        counts = torch.bincount(inv, minlength=len(uniq)).double()
        ranks = (sums / counts)[inv]
    return ranks


def spearman(a: Float[Tensor, "batch n"], b: Float[Tensor, "batch n"],
             mask: Bool[Tensor, "batch n"] | None = None) -> Float[Tensor, " batch"]:
    """Spearman correlation between the rows of ``a`` and ``b`` over the positions where
    ``mask`` is true: ``[B]``, NaN where a row has fewer than 2 positions or constant scores."""
    a, b = check_finite(a, "a"), check_finite(b, "b")
    if a.shape != b.shape or a.ndim != 2:
        raise TutorialError(f"a and b must both be [batch, n] of one shape, got "
                            f"{tuple(a.shape)} and {tuple(b.shape)}")
    mask = torch.ones_like(a, dtype=torch.bool) if mask is None else \
        check_mask(mask, tuple(a.shape), "mask")
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(a.shape[0]):
        m = mask[i].to(a.device)
        if int(m.sum()) < 2:
            continue
        ra, rb = average_ranks(a[i][m].double()), average_ranks(b[i][m].double())
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
        if den > 0:
            out[i] = float((ra * rb).sum()) / den
    return out


def rank_correlation(a: Float[Tensor, "..."], b: Float[Tensor, "..."]) -> float:
    """Spearman correlation of two score tensors flattened to vectors of equal length >= 2
    (NaN when either is constant)."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TutorialError(f"a and b must be tensors, got {type(a).__name__} and "
                            f"{type(b).__name__}")
    a, b = check_finite(a, "a").detach().flatten().cpu(), check_finite(b, "b").detach().flatten().cpu()
    if a.shape != b.shape or a.numel() < 2:
        raise TutorialError(f"need two score vectors of equal length >= 2, got {tuple(a.shape)} "
                            f"and {tuple(b.shape)}")
    return float(spearman(a[None], b[None])[0])
