"""Gradient attributions over the token embeddings ``x`` (``g = df/dx``, ``[B, T, d]``):

* saliency (Simonyan et al. 2014; Li et al. 2016):        ``||g[b, t]||_2``
* gradient x input (Shrikumar et al. 2016; Denil 2014):   ``sum_d g[b, t, d] * x[b, t, d]``
  -- the first-order Taylor estimate of ``f(x) - f(0)`` split over tokens.
* integrated gradients (Sundararajan et al. 2017):
  ``sum_d (x - x')[b, t, d] * int_0^1 g(x' + a (x - x'))[b, t, d] da``, with the integral
  replaced by a quadrature rule over ``n_steps`` points. Completeness:
  ``sum_t IG[b, t] = f(x)_b - f(x')_b`` up to the quadrature error (see :func:`ig_completeness`).

Padded positions (``attention_mask``, or found as :mod:`.forward` says) score 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..readout import has_pos_embed
from ..validation import check_choice, check_finite, check_int
from .forward import (Baseline, Batch, _baseline, _device, _gradients, _repeat_mask,
                      _run_from_embeddings, _token_embeddings, chunks, prepare)
from .targets import TargetFn, evaluate_target

if TYPE_CHECKING:
    from ..models import Model

IG_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
            "gausslegendre")
#: The most quadrature points :func:`integrated_gradients` accepts. The integral converges in
#: tens to a few hundred steps on these models (check with :func:`ig_completeness`); far more
#: is a typo that would run for hours.
MAX_IG_STEPS = 4096

__all__ = ["IGCompleteness", "IG_RULES", "MAX_IG_STEPS", "gradient_x_input",
           "ig_alphas_and_weights", "ig_completeness", "integrated_gradients", "saliency"]


def saliency(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
             target_hook: str | None = None,
             attention_mask: Int[Tensor, "batch pos"] | None = None
             ) -> Float[Tensor, "batch pos"]:
    """Gradient saliency: ``||df/dx[b, t]||_2`` over the embedding dimension, ``[B, T]``
    (Simonyan et al. 2014; Li et al. 2016). Non-negative: it says how sensitive, not in which
    direction."""
    batch = prepare(model, tokens, attention_mask, target_hook, "saliency", target_fn)
    _, g = _gradients(model, batch, target_fn, None, target_hook)
    return g.norm(dim=-1)


def gradient_x_input(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
                     target_hook: str | None = None,
                     attention_mask: Int[Tensor, "batch pos"] | None = None
                     ) -> Float[Tensor, "batch pos"]:
    """Gradient x input: ``sum_d df/dx[b, t, d] * x[b, t, d]``, ``[B, T]`` (Shrikumar et al.
    2016). For small ``eps``, ``f(x) - f(x - eps * x_t) ~= eps * GxI[b, t]``."""
    batch = prepare(model, tokens, attention_mask, target_hook, "gradient_x_input", target_fn)
    x = _token_embeddings(model, batch.tokens)
    _, g = _gradients(model, batch, target_fn, x, target_hook)
    return (g * x.to(g.device)).sum(-1)


def ig_alphas_and_weights(n_steps: int, rule: str = "riemann_trapezoid"
                          ) -> tuple[Float[Tensor, "steps"], Float[Tensor, "steps"]]:
    """Quadrature points ``a_k`` in [0, 1] and weights ``w_k`` (summing to 1) for
    ``int_0^1 h(a) da ~= sum_k w_k h(a_k)``; the same rules as Captum's
    ``IntegratedGradients`` (``riemann_left/right/middle/trapezoid``, ``gausslegendre``).
    ``n_steps`` is an integer in ``[1, MAX_IG_STEPS]`` (``[2, ...]`` for the trapezoid)."""
    rule = check_choice(rule, IG_RULES, "rule")
    n = check_int(n_steps, "n_steps", 2 if rule == "riemann_trapezoid" else 1, MAX_IG_STEPS)
    f64 = torch.float64
    if rule == "riemann_left":
        a, w = torch.arange(n, dtype=f64) / n, torch.full((n,), 1 / n, dtype=f64)
    elif rule == "riemann_right":
        a, w = torch.arange(1, n + 1, dtype=f64) / n, torch.full((n,), 1 / n, dtype=f64)
    elif rule == "riemann_middle":
        a, w = (torch.arange(n, dtype=f64) + 0.5) / n, torch.full((n,), 1 / n, dtype=f64)
    elif rule == "riemann_trapezoid":
        a = torch.linspace(0, 1, n, dtype=f64)
        w = torch.full((n,), 1 / (n - 1), dtype=f64)
        w[0] = w[-1] = 1 / (2 * (n - 1))
    else:  # gausslegendre
        import numpy as np

        x, wt = np.polynomial.legendre.leggauss(n)
        a, w = torch.tensor((x + 1) / 2, dtype=f64), torch.tensor(wt / 2, dtype=f64)
    return a, w


def _check_zero_baseline(model: Model, baseline: Any) -> None:
    """Refuse the zero baseline on a model without a learned position embedding (rotary:
    Pythia, Llama, Qwen2, Mistral, Gemma). There a baseline token's residual stream is exactly
    0, where LayerNorm/RMSNorm is singular (``x/|x|`` jumps at 0): the straight path starts on
    a discontinuity and completeness fails (measured on tiny random Llama/Gemma checkpoints:
    relative errors of 10^6 and more, and still 0.2 on Pythia with 256 steps)."""
    if isinstance(baseline, str) and baseline == "zero" and not has_pos_embed(model):
        kind = getattr(model.cfg, "positional_embedding_type", "?")
        raise TutorialError(
            f"baseline='zero' is not defined for this model ({kind} positions, no position "
            "embedding in the residual stream): every baseline token's residual stream would be "
            "exactly 0, where the (RMS/Layer)Norm is singular, so integrated gradients would "
            "not be complete. Use a token baseline (baseline=<an id such as the pad or unk "
            "token>) or baseline='mean'.")


def integrated_gradients(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
                         baseline: Baseline = "zero", n_steps: int = 64,
                         rule: str = "riemann_trapezoid", keep_first_token: bool = True,
                         batch_size: int = 512, target_hook: str | None = None,
                         per_dim: bool = False, progress: bool = False,
                         attention_mask: Int[Tensor, "batch pos"] | None = None
                         ) -> Float[Tensor, "batch pos"] | Float[Tensor, "batch pos d_model"]:
    """Integrated gradients over the token embeddings (Sundararajan et al. 2017).

    ``IG[b, t] = sum_d (x - x')[b, t, d] * sum_k w_k * df/dx(x' + a_k (x - x'))[b, t, d]``

    with ``x'`` from :func:`~tutorial_utils.input_attribution.baseline_embeddings` and
    ``(a_k, w_k)`` from :func:`ig_alphas_and_weights` (``n_steps`` at most
    :data:`MAX_IG_STEPS`). All ``n_steps`` interpolated copies of the batch are stacked along
    the batch dimension and run in chunks of at most ``batch_size`` rows (``progress`` shows a
    bar over the chunks).

    ``keep_first_token`` keeps the BOS/``[CLS]`` that opens a row at its real embedding (zero
    attribution); a row without one keeps nothing, so its first word is attributed. On an
    encoder only the opening ``[CLS]`` is kept: the closing ``[SEP]`` is moved to the baseline
    like any word and gets its own attribution. Padded positions score 0. Returns ``[B, T]`` (``[B, T, d]`` with ``per_dim``). Completeness,
    ``IG.sum(-1) ~= f(x) - f(x')``, is checked by :func:`ig_completeness`.
    """
    batch = prepare(model, tokens, attention_mask, target_hook, "integrated_gradients", target_fn)
    _check_zero_baseline(model, baseline)
    alphas, weights = ig_alphas_and_weights(n_steps, rule)
    check_choice(per_dim, (True, False), "per_dim")
    parts = chunks(len(alphas), batch.tokens.shape[0], batch_size)
    x = _token_embeddings(model, batch.tokens)
    base = _baseline(model, batch, baseline, keep_first_token)
    tokens, B = batch.tokens, batch.tokens.shape[0]
    diff = x - base
    total = torch.zeros_like(x, dtype=torch.float64)
    if progress:
        from tqdm.auto import tqdm

        parts = tqdm(parts, desc="integrated gradients")
    for lo, hi in parts:
        a = alphas[lo:hi].to(x.device, x.dtype)
        emb = (base[None] + a[:, None, None, None] * diff[None]).reshape(-1, *x.shape[1:])
        emb.requires_grad_(True)
        with torch.enable_grad():
            out = _run_from_embeddings(model, tokens.repeat(hi - lo, 1), emb, target_hook,
                                      _repeat_mask(batch.forward_mask, hi - lo))
            vals = evaluate_target(target_fn, out, hi - lo, B, batch.mask)
            (g,) = torch.autograd.grad(vals.sum(), emb)
        g = g.reshape(hi - lo, *x.shape).double()
        total += (weights[lo:hi].to(x.device)[:, None, None, None] * g).sum(0)
    attr = (diff.double() * total).to(x.dtype)
    return attr if per_dim else attr.sum(-1)


@dataclass
class IGCompleteness:
    """Completeness of integrated gradients, per example ``[B]``: ``attribution_sum`` should
    equal ``f_input - f_baseline``; ``relative_error = |sum - delta| / |delta|``."""

    attribution_sum: Float[Tensor, "batch"]
    f_input: Float[Tensor, "batch"]
    f_baseline: Float[Tensor, "batch"]

    @property
    def delta(self) -> Float[Tensor, "batch"]:
        return self.f_input - self.f_baseline

    @property
    def relative_error(self) -> Float[Tensor, "batch"]:
        return (self.attribution_sum - self.delta).abs() / self.delta.abs().clamp_min(1e-12)


def ig_completeness(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
                    attributions: Float[Tensor, "batch pos"], baseline: Baseline = "zero",
                    keep_first_token: bool = True, target_hook: str | None = None,
                    attention_mask: Int[Tensor, "batch pos"] | None = None) -> IGCompleteness:
    """Compare ``attributions.sum(-1)`` (``[B, T]`` from :func:`integrated_gradients`, same
    baseline and mask) with ``f(x) - f(x')`` from two forward passes."""
    batch = prepare(model, tokens, attention_mask, target_hook, "ig_completeness", target_fn)
    attributions = check_finite(attributions, "attributions")
    if tuple(attributions.shape) != tuple(batch.tokens.shape):
        raise TutorialError(f"attributions must be [batch, seq] = {tuple(batch.tokens.shape)} "
                            f"(from integrated_gradients on these tokens), got "
                            f"{tuple(attributions.shape)}")
    base = _baseline(model, batch, baseline, keep_first_token)
    f_x = _values(model, batch, target_fn, None, target_hook)
    f_b = _values(model, batch, target_fn, base, target_hook)
    return IGCompleteness(attributions.detach().sum(-1).to(f_x.device), f_x, f_b)


def _values(model: Model, batch: Batch, target_fn: TargetFn, embeds: Tensor | None,
            target_hook: str | None) -> Tensor:
    """``f`` on a checked batch (``embeds`` replacing the token embeddings)."""
    x = _token_embeddings(model, batch.tokens) if embeds is None else embeds
    with torch.no_grad():
        out = _run_from_embeddings(model, batch.tokens, x.to(_device(model)), target_hook,
                                  batch.forward_mask)
        return evaluate_target(target_fn, out, 1, batch.tokens.shape[0], batch.mask)[0]
