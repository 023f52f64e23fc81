"""How good a dictionary is, as the field reports it (Bricken et al. 2023; Gao et al. 2024;
Dunefsky et al. 2024):

* **L0**: the mean number of active features per token, ``E[#{i : f_i > 0}]``;
* **fraction of variance explained**: ``FVE = 1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2``
  over all tokens of the evaluation set;
* **dead features**: the share of features never active on the evaluation set;
* **loss recovered**: with ``L_clean`` the model's next-token cross-entropy,
  ``L_spliced`` the same with the dictionary's reconstruction spliced in at its output site, and
  ``L_zero`` with that site zero-ablated,

      loss recovered = (L_zero - L_spliced) / (L_zero - L_clean)

  (1: as good as the model; 0: as bad as deleting the site; NaN when zeroing the site
  changes nothing).

Splicing is done in the unfolded model (:class:`~tutorial_utils.features.unfolded.UnfoldedGPT2`):
an SAE replaces the residual stream at its site, a transcoder replaces its layer's MLP output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..validation import check_mask
from .dictionary import SparseDictionary
from .unfolded import UnfoldedGPT2

__all__ = ["ReconstructionStats", "SpliceStats", "fraction_variance_explained",
           "next_token_loss", "reconstruction_stats", "splice_stats", "splice_edit"]


@dataclass
class ReconstructionStats:
    """L0, FVE and the dead share of one dictionary on one evaluation set."""

    l0: float
    fve: float
    dead_fraction: float
    n_tokens: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class SpliceStats:
    """Next-token losses (nats per token) and the share recovered."""

    loss_clean: float
    loss_spliced: float
    loss_zero: float
    loss_recovered: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fraction_variance_explained(y: Float[Tensor, "n d"], y_hat: Float[Tensor, "n d"]) -> float:
    """``1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2`` (means over the rows of ``y``)."""
    if y.shape != y_hat.shape or y.ndim != 2:
        raise TutorialError(f"fraction_variance_explained: y and y_hat must both be [n, d], got "
                            f"{tuple(y.shape)} and {tuple(y_hat.shape)}")
    total = (y - y.mean(0)).pow(2).sum()
    return float(1 - (y - y_hat).pow(2).sum() / total)


@torch.no_grad()
def reconstruction_stats(d: SparseDictionary, x: Float[Tensor, "n d_in"],
                         y: Float[Tensor, "n d_out"], batch_size: int = 8192) -> ReconstructionStats:
    """L0, FVE and dead share of ``d`` on the pairs ``(x, y)`` (``y = x`` for an SAE)."""
    if x.shape[0] != y.shape[0]:
        raise TutorialError(f"reconstruction_stats: x and y must have the same rows, got "
                            f"{tuple(x.shape)} and {tuple(y.shape)}")
    l0, fired, hats = 0.0, torch.zeros(d.config.n_features, dtype=torch.bool), []
    for i in range(0, x.shape[0], batch_size):
        f = d.encode(x[i:i + batch_size])
        active = f > 0
        l0 += float(active.sum())
        fired |= active.any(0)
        hats.append(d.decode(f))
    return ReconstructionStats(l0=l0 / x.shape[0], fve=fraction_variance_explained(y, torch.cat(hats)),
                               dead_fraction=float((~fired).float().mean()), n_tokens=int(x.shape[0]))


def next_token_loss(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"],
                    mask: Bool[Tensor, "batch pos"] | None = None) -> Float[Tensor, ""]:
    """Mean cross-entropy of predicting ``tokens[:, 1:]`` from ``logits[:, :-1]``.

    ``mask`` (True = a real token, False = padding): only the predictions of a real token from
    a real one count, ``mask[:, t-1] & mask[:, t]`` for target ``t``."""
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                         tokens[:, 1:].reshape(-1), reduction="none")
    if mask is None:
        return ce.mean()
    keep = _target_mask(mask, tokens).reshape(-1)
    return ce[keep].mean()


def _target_mask(mask: Any, tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos_1"]:
    """``[B, T-1]``: the targets of :func:`next_token_loss` that count (a checked mask)."""
    m = check_mask(mask, tuple(tokens.shape), "mask")
    keep = m[:, :-1] & m[:, 1:]
    if not bool(keep.any()):
        raise TutorialError("mask leaves no next-token prediction between two real tokens")
    return keep


def splice_edit(d: SparseDictionary, mode: str = "spliced"):
    """The (resid_edit, mlp_override) pair that splices ``d`` in (``mode="spliced"``) or
    zero-ablates its output site (``mode="zero"``)."""
    c = d.config
    if mode not in ("spliced", "zero"):
        raise TutorialError(f"mode must be 'spliced' or 'zero', got {mode!r}")
    if c.kind == "transcoder":
        if (c.site_in, c.site_out) != ("ln2_out", "mlp_out"):
            raise TutorialError(f"splicing a transcoder needs site_in='ln2_out' and "
                                f"site_out='mlp_out', got {c.site_in!r} -> {c.site_out!r}")

        def mlp(layer: int, m_in: Tensor, m_out: Tensor) -> Tensor:
            if layer != c.layer:
                return m_out
            return d(m_in) if mode == "spliced" else torch.zeros_like(m_out)
        return None, mlp
    if c.site_in != "resid_pre" or c.site_out != "resid_pre":
        raise TutorialError(f"splicing an SAE is implemented at site 'resid_pre', got "
                            f"{c.site_in!r}")

    def edit(layer: int, x: Tensor) -> Tensor:
        if layer != c.layer:
            return x
        return d(x) if mode == "spliced" else torch.zeros_like(x)
    return edit, None


@torch.no_grad()
def splice_stats(lm: UnfoldedGPT2, d: SparseDictionary, tokens: Int[Tensor, "batch pos"],
                 batch_size: int = 64, mask: Bool[Tensor, "batch pos"] | None = None
                 ) -> SpliceStats:
    """Next-token loss clean, with ``d`` spliced in, and with its site zero-ablated, on
    ``tokens`` (documents of the corpus); see the module docstring. ``mask`` (True = a real
    token): padded prompts, only predictions between real tokens count
    (:func:`next_token_loss`); each loss is the mean over every counted prediction."""
    lm.check_tokens(tokens)
    if mask is not None:
        _target_mask(mask, tokens)                   # checked before any forward
        mask = check_mask(mask, tuple(tokens.shape), "mask")
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n = 0
    for i in range(0, tokens.shape[0], batch_size):
        t = tokens[i:i + batch_size]
        m = None if mask is None else mask[i:i + batch_size]
        if m is None:
            w = t.shape[0] * (t.shape[1] - 1)
        else:
            w = int((m[:, :-1] & m[:, 1:]).sum())
            if w == 0:
                continue
        sums["clean"] += float(next_token_loss(lm.run(t).logits, t, m)) * w
        for mode in ("spliced", "zero"):
            edit, mlp = splice_edit(d, mode)
            logits = lm.run(t, resid_edit=edit, mlp_override=mlp).logits
            sums[mode] += float(next_token_loss(logits, t, m)) * w
        n += w
    clean, spliced, zero = (sums[k] / n for k in ("clean", "spliced", "zero"))
    recovered = (zero - spliced) / (zero - clean) if zero != clean else float("nan")
    return SpliceStats(clean, spliced, zero, recovered)
