"""Input attribution at the token-embedding level: saliency, gradient x input, integrated
gradients, occlusion, and the tools to compare them.

Every method explains a scalar **target** per example, ``f(x)_b = target_fn(output)[b]``, where
``output`` is the model's logits ``[B, T, V]`` (or, with ``target_hook``, the activation at that
hook). It returns one score per input token, a tensor ``[B, T]``. Inputs are the token
embeddings ``x[b, t] = W_E[tokens[b, t]]`` (the output of ``hook_embed``); the position
embeddings (and, for BERT, the token-type embeddings and the embedding LayerNorm) are part of
the function being explained. The methods work on any ``TransformerBridge``: a decoder from
:func:`tutorial_utils.models.load_model` or an encoder from ``load_encoder``.

Methods (``x`` the input embeddings ``[B, T, d]``, ``x'`` a baseline, ``g = df/dx``):

* saliency (Simonyan et al. 2014; Li et al. 2016):        ``||g[b, t]||_2``
* gradient x input (Shrikumar et al. 2016; Denil 2014):   ``sum_d g[b, t, d] * x[b, t, d]``
  -- the first-order Taylor estimate of ``f(x) - f(0)`` split over tokens.
* integrated gradients (Sundararajan et al. 2017):
  ``sum_d (x - x')[b, t, d] * int_0^1 g(x' + a (x - x'))[b, t, d] da``, with the integral
  replaced by a quadrature rule over ``n_steps`` points. Completeness:
  ``sum_t IG[b, t] = f(x)_b - f(x')_b`` up to the quadrature error (see :func:`ig_completeness`).
* occlusion / erasure (Zeiler & Fergus 2014; Li et al. 2016 "erasure"):
  ``f(x)_b - f(x with token t replaced or deleted)_b``.

Contrastive explanations (Yin & Neubig 2022, "Interpreting language models with contrastive
explanations") explain "why A and not B": use :func:`contrastive_target`, whose value is
``logit(A) - logit(B)``, with any method.

Targets. ``target_fn`` maps the output of a batch aligned with ``tokens`` (``[B, T, V]``) to
``[B]``. Methods that evaluate many variants of the batch (IG steps, occluded copies) stack the
variants along the batch dimension for one forward pass and call ``target_fn`` on each block of
``B`` rows separately, so a target never has to know about the stacking. Builders:
:func:`logit_target`, :func:`prob_target`, :func:`contrastive_target`, :func:`metric_target`.

>>> model = load_model("offline")                                        # doctest: +SKIP
>>> tokens = model.to_tokens("When Mary and John went to the store, John gave a drink to")
>>> target = contrastive_target(model.to_single_token(" Mary"), model.to_single_token(" John"))
>>> integrated_gradients(model, tokens, target, n_steps=64)              # [1, T]  doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from .names import hook_name
from .errors import TutorialError
from .validation import check_batch_size, check_tokens

TargetFn = Callable[[Tensor], Tensor]
Baseline = str | int | Tensor

EMBED_HOOK = hook_name("embed")
IG_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
            "gausslegendre")
METHODS = ("saliency", "grad_x_input", "integrated_gradients", "occlusion")

__all__ = [
    "TargetFn", "METHODS", "IG_RULES", "logit_target", "prob_target", "contrastive_target",
    "metric_target", "token_embeddings", "baseline_embeddings", "embed_hook", "run_from_embeddings",
    "target_values", "embedding_gradients", "saliency", "gradient_x_input",
    "ig_alphas_and_weights", "integrated_gradients", "ig_completeness", "IGCompleteness",
    "occlusion", "contrastive_erasure", "attribute", "spearman", "method_agreement", "randomized_weights",
]


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------

def _check_ids(value: Any, what: str) -> None:
    """Integer, non-negative ids (checked when the target is made, before any forward)."""
    t = torch.as_tensor(value)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TutorialError(f"{what} must be integer token ids, got dtype {t.dtype} "
                            "(use model.to_single_token(' word'))")
    if t.numel() and int(t.min()) < 0:
        raise TutorialError(f"{what} must be non-negative token ids, got {t.flatten()[:5].tolist()}")


def _as_index(value: int | Sequence[int] | Tensor, B: int, device: torch.device,
              what: str, vocab: int | None = None) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.long, device=device)
    if vocab is not None and t.numel() and int(t.max()) >= vocab:
        raise TutorialError(f"{what} {t.flatten()[:5].tolist()} outside the vocabulary [0, "
                            f"{vocab}) of the model's output: were the ids made by another "
                            "tokenizer? Use model.to_single_token(' word')")
    if t.ndim == 0:
        return t.expand(B)
    if t.ndim != 1 or t.shape[0] != B:
        raise TutorialError(f"{what} must be an int or have one entry per example ({B}), got "
                         f"shape {tuple(t.shape)}")
    return t


def _at_position(output: Tensor, pos: int | Sequence[int] | Tensor) -> Tensor:
    """``output[b, pos[b]]`` for ``output`` ``[B, T, V]`` (or ``[B, V]``, returned as is)."""
    if output.ndim == 2:
        return output
    if output.ndim != 3:
        raise TutorialError(f"target output must be [batch, seq, vocab], got {tuple(output.shape)}")
    B, T = output.shape[:2]
    p = _as_index(pos, B, output.device, "pos")
    if bool(((p >= T) | (p < -T)).any()):
        raise TutorialError(f"target position {p.tolist()} outside a sequence of length {T}")
    return output[torch.arange(B, device=output.device), p % T]


def logit_target(token_ids: int | Sequence[int] | Tensor,
                 pos: int | Sequence[int] | Tensor = -1) -> TargetFn:
    """Target ``logits[b, pos[b], token_ids[b]]`` (an int applies to every example)."""
    _check_ids(token_ids, "logit_target: token_ids")

    def target(output: Tensor) -> Tensor:
        logits = _at_position(output, pos)
        ids = _as_index(token_ids, logits.shape[0], logits.device, "logit_target: token_ids",
                        logits.shape[-1])
        return logits.gather(-1, ids[:, None])[:, 0]

    return target


def prob_target(token_ids: int | Sequence[int] | Tensor,
                pos: int | Sequence[int] | Tensor = -1) -> TargetFn:
    """Target ``softmax(logits[b, pos[b]])[token_ids[b]]``."""
    _check_ids(token_ids, "prob_target: token_ids")

    def target(output: Tensor) -> Tensor:
        probs = _at_position(output, pos).float().softmax(-1)
        ids = _as_index(token_ids, probs.shape[0], probs.device, "prob_target: token_ids",
                        probs.shape[-1])
        return probs.gather(-1, ids[:, None])[:, 0]

    return target


def contrastive_target(target_ids: int | Sequence[int] | Tensor,
                       foil_ids: int | Sequence[int] | Tensor,
                       pos: int | Sequence[int] | Tensor = -1) -> TargetFn:
    """Contrastive target "why A and not B": ``logit(A) - logit(B)`` at ``pos``
    (Yin & Neubig 2022). The softmax normaliser cancels, so only evidence that separates the
    two candidates gets credit."""
    t, f = logit_target(target_ids, pos), logit_target(foil_ids, pos)
    return lambda output: t(output) - f(output)


def metric_target(dataset: Any) -> TargetFn:
    """The per-example task metric of a :class:`~tutorial_utils.tasks.TaskDataset` (logit or
    probability difference at each example's answer position) as a target; use it with
    ``dataset.clean_tokens``."""
    return lambda output: dataset.metric(output, per_example=True)


# --------------------------------------------------------------------------------------------
# Embeddings and forward passes from embeddings
# --------------------------------------------------------------------------------------------



def _is_encoder(model: Any) -> bool:
    """True for a bidirectional (BERT-style) bridge. Reads ``cfg.architecture`` as well as
    ``cfg.original_architecture``, which the BERT bridge leaves as None."""
    from .models import is_encoder

    arch = str(getattr(model.cfg, "architecture", "") or "")
    return is_encoder(model) or "Bert" in arch or "Roberta" in arch


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def token_embeddings(model: Any, tokens: Tensor) -> Tensor:
    """The token embeddings as the embedding component outputs them, ``[B, T, d_model]``:
    ``W_E[tokens]``, times ``sqrt(d_model)`` on Gemma, whose embedding is scaled (``W_E`` alone
    would attribute a different input from the one the model reads)."""
    tokens = check_tokens(model, tokens)
    with torch.no_grad():
        return model.embed(tokens.to(_device(model))).detach().clone()


def _mean_token_embedding(model: Any, chunk: int = 4096) -> Tensor:
    """The mean of :func:`token_embeddings` over the vocabulary, ``[d_model]`` (in chunks)."""
    V = model.W_E.shape[0]
    dev = _device(model)
    total = None
    with torch.no_grad():
        for lo in range(0, V, chunk):
            e = model.embed(torch.arange(lo, min(V, lo + chunk), device=dev)[None])[0]
            part = e.double().sum(0)
            total = part if total is None else total + part
    return (total / V).to(model.W_E.dtype)


def embed_hook(model: Any) -> str:
    """The hook whose output is the token embedding ``W_E[tokens]`` alone. On a decoder that is
    ``hook_embed``; on a BERT-family bridge ``hook_embed`` is the embedding LayerNorm's output
    (word + position + type embeddings, normalised), so the word embedding is read at
    ``embed.hook_out`` instead (replacing ``hook_embed`` there would skip the position
    embeddings and the LayerNorm, attributing another function than the model's)."""
    return "embed.hook_out" if _is_encoder(model) else EMBED_HOOK


def run_from_embeddings(model: Any, tokens: Tensor, embeds: Tensor,
                        target_hook: str | None = None) -> Tensor:
    """Run ``model`` on ``tokens`` with the token embeddings (:func:`embed_hook`) replaced by
    ``embeds``.

    ``embeds`` is ``[B, T, d_model]`` (gradients flow back to it). Returns the logits
    ``[B, T, V]``, or the activation at ``target_hook`` when given.
    """
    if embeds.shape[:2] != tokens.shape or embeds.shape[-1] != model.cfg.d_model:
        raise TutorialError(f"embeds {tuple(embeds.shape)} do not match tokens "
                         f"{tuple(tokens.shape)} x d_model {model.cfg.d_model}")

    def replace(act: Tensor, hook: Any) -> Tensor:
        return embeds.to(act.dtype)

    hooks = [(embed_hook(model), replace)]
    captured: dict[str, Tensor] = {}
    if target_hook is not None:
        def grab(act: Tensor, hook: Any) -> Tensor:
            captured["act"] = act
            return act

        hooks.append((target_hook, grab))
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return captured["act"] if target_hook is not None else logits


def _check_target_hook(model: Any, target_hook: str | None) -> None:
    if target_hook is not None:
        from .validation import check_hook_names

        check_hook_names(model, [target_hook])


def _chunks(n_variants: int, B: int, batch_size: int) -> list[tuple[int, int]]:
    """Split ``n_variants`` stacked copies of a batch of ``B`` into chunks of at most
    ``batch_size`` rows (at least one variant per chunk)."""
    check_batch_size(batch_size)
    per = max(1, batch_size // max(B, 1))
    return [(i, min(i + per, n_variants)) for i in range(0, n_variants, per)]


def _blockwise_target(target_fn: TargetFn, output: Tensor, n: int, B: int) -> Tensor:
    """Apply ``target_fn`` to each of the ``n`` blocks of ``B`` rows; returns ``[n, B]``."""
    values = []
    for k in range(n):
        v = target_fn(output[k * B:(k + 1) * B])
        if not isinstance(v, Tensor) or v.shape != (B,):
            raise TutorialError(f"target_fn must return a tensor of shape [batch] = ({B},), got "
                             f"{getattr(v, 'shape', type(v).__name__)}")
        values.append(v)
    return torch.stack(values)


def target_values(model: Any, tokens: Tensor, target_fn: TargetFn,
                  embeds: Tensor | None = None, target_hook: str | None = None,
                  grad: bool = False) -> Tensor:
    """``f(x)``: the target of each example, ``[B]``; ``embeds`` overrides the token
    embeddings (``[B, T, d]``) or, stacked, ``[n*B, T, d]`` for ``n`` variants (returns
    ``[n, B]``)."""
    tokens = check_tokens(model, tokens).to(_device(model))
    B = tokens.shape[0]
    if embeds is None:
        embeds = token_embeddings(model, tokens)
    if embeds.shape[0] % B:
        raise TutorialError(f"embeds batch {embeds.shape[0]} is not a multiple of {B}")
    n = embeds.shape[0] // B
    with torch.set_grad_enabled(grad):
        out = run_from_embeddings(model, tokens.repeat(n, 1), embeds, target_hook)
        vals = _blockwise_target(target_fn, out, n, B)
    return vals[0] if n == 1 else vals


def embedding_gradients(model: Any, tokens: Tensor, target_fn: TargetFn,
                        embeds: Tensor | None = None,
                        target_hook: str | None = None) -> tuple[Tensor, Tensor]:
    """``(f(x) [B], df/dx [B, T, d])`` for the token embeddings ``x`` (or ``embeds``).

    Examples do not interact, so the gradient of ``sum_b f(x)_b`` gives every example's own
    gradient in one backward pass.
    """
    tokens = check_tokens(model, tokens).to(_device(model))
    _check_target_hook(model, target_hook)
    x = token_embeddings(model, tokens) if embeds is None else embeds.detach().clone()
    x.requires_grad_(True)
    with torch.enable_grad():
        out = run_from_embeddings(model, tokens, x, target_hook)
        vals = _blockwise_target(target_fn, out, 1, tokens.shape[0])[0]
        (grad,) = torch.autograd.grad(vals.sum(), x)
    return vals.detach(), grad.detach()


# --------------------------------------------------------------------------------------------
# Gradient methods
# --------------------------------------------------------------------------------------------

def saliency(model: Any, tokens: Tensor, target_fn: TargetFn,
             target_hook: str | None = None) -> Tensor:
    """Gradient saliency: ``||df/dx[b, t]||_2`` over the embedding dimension, ``[B, T]``
    (Simonyan et al. 2014; Li et al. 2016). Non-negative: it says how sensitive, not in which
    direction."""
    _, g = embedding_gradients(model, tokens, target_fn, target_hook=target_hook)
    return g.norm(dim=-1)


def gradient_x_input(model: Any, tokens: Tensor, target_fn: TargetFn,
                     target_hook: str | None = None) -> Tensor:
    """Gradient x input: ``sum_d df/dx[b, t, d] * x[b, t, d]``, ``[B, T]`` (Shrikumar et al.
    2016). For small ``eps``, ``f(x) - f(x - eps * x_t) ~= eps * GxI[b, t]``."""
    x = token_embeddings(model, tokens)
    _, g = embedding_gradients(model, tokens, target_fn, embeds=x, target_hook=target_hook)
    return (g * x.to(g.device)).sum(-1)


def baseline_embeddings(model: Any, tokens: Tensor, baseline: Baseline = "zero",
                        keep_first_token: bool = True) -> Tensor:
    """The baseline embeddings ``x'`` ``[B, T, d]`` for integrated gradients and occlusion.

    ``baseline``: ``"zero"`` (the zero vector), ``"mean"`` (the mean token embedding),
    a token id (that token's embedding at every position, e.g. ``<unk>`` or a pad token; as the
    model embeds it, so with Gemma's scale), or a
    tensor broadcastable to ``[B, T, d]``. With ``keep_first_token`` the first position (BOS /
    [CLS], part of the format rather than of the input) keeps its real embedding, so it gets
    zero attribution.
    """
    tokens = check_tokens(model, tokens).to(_device(model))
    x = token_embeddings(model, tokens)
    W_E = model.W_E.detach()
    if isinstance(baseline, str):
        if baseline == "zero":
            base = torch.zeros_like(x)
        elif baseline == "mean":
            base = _mean_token_embedding(model).to(x.device).expand_as(x).clone()
        else:
            raise TutorialError(f"unknown baseline {baseline!r}; use 'zero', 'mean', a token id "
                             "or a tensor")
    elif isinstance(baseline, int) and not isinstance(baseline, bool):
        if not 0 <= baseline < W_E.shape[0]:
            raise TutorialError(f"baseline token id {baseline} outside the vocabulary "
                             f"[0, {W_E.shape[0]})")
        base = token_embeddings(model, torch.full_like(tokens, baseline))
    elif isinstance(baseline, Tensor):
        try:
            base = baseline.to(x.device, x.dtype).expand_as(x).clone()
        except RuntimeError as exc:
            raise TutorialError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to "
                             f"{tuple(x.shape)}") from exc
    else:
        raise TutorialError(f"baseline must be 'zero', 'mean', a token id or a tensor, got "
                         f"{type(baseline).__name__}")
    if keep_first_token:
        base[:, 0] = x[:, 0]
    return base


def ig_alphas_and_weights(n_steps: int, rule: str = "riemann_trapezoid"
                          ) -> tuple[Tensor, Tensor]:
    """Quadrature points ``a_k`` in [0, 1] and weights ``w_k`` (summing to 1) for
    ``int_0^1 h(a) da ~= sum_k w_k h(a_k)``; the same rules as Captum's
    ``IntegratedGradients`` (``riemann_left/right/middle/trapezoid``, ``gausslegendre``)."""
    if n_steps < 1 or (rule == "riemann_trapezoid" and n_steps < 2):
        raise TutorialError(f"n_steps must be >= 1 (>= 2 for the trapezoid rule), got {n_steps}")
    n, f64 = n_steps, torch.float64
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
    elif rule == "gausslegendre":
        import numpy as np

        x, wt = np.polynomial.legendre.leggauss(n)
        a, w = torch.tensor((x + 1) / 2, dtype=f64), torch.tensor(wt / 2, dtype=f64)
    else:
        raise TutorialError(f"unknown integration rule {rule!r}; valid: {IG_RULES}")
    return a, w


def _check_zero_baseline(model: Any, baseline: Any) -> None:
    """Refuse the zero baseline on a model without a learned position embedding (rotary:
    Pythia, Llama, Qwen2, Mistral, Gemma). There a baseline token's residual stream is exactly
    0, where LayerNorm/RMSNorm is singular (``x/|x|`` jumps at 0): the straight path starts on
    a discontinuity and completeness fails (measured on tiny random Llama/Gemma checkpoints:
    relative errors of 10^6 and more, and still 0.2 on Pythia with 256 steps)."""
    from .readout import has_pos_embed

    if isinstance(baseline, str) and baseline == "zero" and not has_pos_embed(model):
        kind = getattr(model.cfg, "positional_embedding_type", "?")
        raise TutorialError(
            f"baseline='zero' is not defined for this model ({kind} positions, no position "
            "embedding in the residual stream): every baseline token's residual stream would be "
            "exactly 0, where the (RMS/Layer)Norm is singular, so integrated gradients would "
            "not be complete. Use a token baseline (baseline=<an id such as the pad or unk "
            "token>) or baseline='mean'.")


def integrated_gradients(model: Any, tokens: Tensor, target_fn: TargetFn,
                         baseline: Baseline = "zero", n_steps: int = 64,
                         rule: str = "riemann_trapezoid", keep_first_token: bool = True,
                         batch_size: int = 512, target_hook: str | None = None,
                         per_dim: bool = False, progress: bool = False) -> Tensor:
    """Integrated gradients over the token embeddings (Sundararajan et al. 2017).

    ``IG[b, t] = sum_d (x - x')[b, t, d] * sum_k w_k * df/dx(x' + a_k (x - x'))[b, t, d]``

    with ``x'`` from :func:`baseline_embeddings` and ``(a_k, w_k)`` from
    :func:`ig_alphas_and_weights`. All ``n_steps`` interpolated copies of the batch are stacked
    along the batch dimension and run in chunks of at most ``batch_size`` rows.

    Returns ``[B, T]`` (``[B, T, d]`` with ``per_dim``). Completeness, ``IG.sum(-1) ~= f(x) -
    f(x')``, is checked by :func:`ig_completeness`.
    """
    tokens = check_tokens(model, tokens).to(_device(model))
    _check_target_hook(model, target_hook)
    _check_zero_baseline(model, baseline)
    alphas, weights = ig_alphas_and_weights(n_steps, rule)
    x = token_embeddings(model, tokens)
    base = baseline_embeddings(model, tokens, baseline, keep_first_token)
    B = tokens.shape[0]
    diff = x - base
    total = torch.zeros_like(x, dtype=torch.float64)
    chunks = _chunks(n_steps, B, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="integrated gradients")
    for lo, hi in chunks:
        a = alphas[lo:hi].to(x.device, x.dtype)
        emb = (base[None] + a[:, None, None, None] * diff[None]).reshape(-1, *x.shape[1:])
        emb.requires_grad_(True)
        with torch.enable_grad():
            out = run_from_embeddings(model, tokens.repeat(hi - lo, 1), emb, target_hook)
            vals = _blockwise_target(target_fn, out, hi - lo, B)
            (g,) = torch.autograd.grad(vals.sum(), emb)
        g = g.reshape(hi - lo, *x.shape).double()
        total += (weights[lo:hi].to(x.device)[:, None, None, None] * g).sum(0)
    attr = (diff.double() * total).to(x.dtype)
    return attr if per_dim else attr.sum(-1)


@dataclass
class IGCompleteness:
    """Completeness of integrated gradients, per example ``[B]``: ``attribution_sum`` should
    equal ``f_input - f_baseline``; ``relative_error = |sum - delta| / |delta|``."""

    attribution_sum: Tensor
    f_input: Tensor
    f_baseline: Tensor

    @property
    def delta(self) -> Tensor:
        return self.f_input - self.f_baseline

    @property
    def relative_error(self) -> Tensor:
        return (self.attribution_sum - self.delta).abs() / self.delta.abs().clamp_min(1e-12)


def ig_completeness(model: Any, tokens: Tensor, target_fn: TargetFn, attributions: Tensor,
                    baseline: Baseline = "zero", keep_first_token: bool = True,
                    target_hook: str | None = None) -> IGCompleteness:
    """Compare ``attributions.sum(-1)`` (``[B, T]`` from :func:`integrated_gradients`, same
    baseline) with ``f(x) - f(x')`` from two forward passes."""
    tokens = check_tokens(model, tokens).to(_device(model))
    base = baseline_embeddings(model, tokens, baseline, keep_first_token)
    f_x = target_values(model, tokens, target_fn, target_hook=target_hook)
    f_b = target_values(model, tokens, target_fn, embeds=base, target_hook=target_hook)
    return IGCompleteness(attributions.detach().sum(-1).to(f_x.device), f_x, f_b)


# --------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------

def occlusion(model: Any, tokens: Tensor, target_fn: TargetFn,
              replacement: Baseline | str = "zero", positions: Sequence[int] | None = None,
              batch_size: int = 512, target_hook: str | None = None,
              progress: bool = False) -> Tensor:
    """Occlusion / erasure: ``score[b, t] = f(x)_b - f(x with token t occluded)_b``, ``[B, T]``.

    ``replacement``: ``"delete"`` removes token ``t`` (erasure, Li et al. 2016; decoders only:
    the sequence is shifted right and a copy of the first token (BOS) fills position 0, so
    the positions after ``t`` keep their index; caveat: that input starts with two BOS tokens,
    which a model may never have seen: notebook 01 shows the course model collapsing on it, so
    every deletion scores alike; for a contrastive target use :func:`contrastive_erasure`, which
    deletes and reads the prediction one position earlier), or anything :func:`baseline_embeddings`
    accepts (``"zero"``, ``"mean"``, a token id such as ``<unk>``, a tensor) to replace token
    ``t``'s embedding. ``positions`` to occlude default to every position but the first (BOS);
    positions not occluded score 0. All occluded copies are stacked along the batch and run in
    chunks of at most ``batch_size`` rows.
    """
    tokens = check_tokens(model, tokens).to(_device(model))
    _check_target_hook(model, target_hook)
    B, T = tokens.shape
    pos = list(range(1, T)) if positions is None else [int(p) for p in positions]
    bad = [p for p in pos if not 0 <= p < T]
    if bad:
        raise TutorialError(f"cannot occlude position(s) {bad}: the sequence has {T} tokens "
                         f"(positions 0..{T - 1})")
    if not pos:
        raise TutorialError("no positions to occlude")
    delete = isinstance(replacement, str) and replacement == "delete"
    if delete:
        if _is_encoder(model):
            raise TutorialError("replacement='delete' is for causal decoders; use a replacement "
                             "token or embedding for an encoder")
        if 0 in pos:
            raise TutorialError("cannot delete position 0 (the first token fills the gap)")
    x = token_embeddings(model, tokens)
    base = None if delete else baseline_embeddings(model, tokens, replacement,
                                                   keep_first_token=False)
    f_x = target_values(model, tokens, target_fn, target_hook=target_hook)
    scores = torch.zeros(B, T, dtype=f_x.dtype, device=f_x.device)
    chunks = _chunks(len(pos), B, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="occlusion")
    for lo, hi in chunks:
        ps = pos[lo:hi]
        if delete:
            toks = torch.cat([torch.cat([tokens[:, :1], tokens[:, :p], tokens[:, p + 1:]], 1)
                              for p in ps])
            emb = token_embeddings(model, toks)
        else:
            toks = tokens.repeat(len(ps), 1)
            emb = x.repeat(len(ps), 1, 1).reshape(len(ps), B, T, -1)
            for k, p in enumerate(ps):
                emb[k, :, p] = base[:, p]
            emb = emb.reshape(len(ps) * B, T, -1)
        with torch.no_grad():
            out = run_from_embeddings(model, toks, emb, target_hook)
            vals = _blockwise_target(target_fn, out, len(ps), B)
        for k, p in enumerate(ps):
            scores[:, p] = f_x - vals[k]
    return scores


def contrastive_erasure(model: Any, tokens: Tensor, target_ids: Sequence[int] | Tensor,
                        foil_ids: Sequence[int] | Tensor, answer_pos: Sequence[int] | Tensor
                        ) -> Tensor:
    """Erasure that keeps the prompt well-formed (Li et al. 2016; contrastive target as in Yin &
    Neubig 2022): ``score[b, t] = f_b(x) - f_b(x without token t)``, ``[B, T]``, with
    ``f_b = logit(target_ids[b]) - logit(foil_ids[b])`` read at ``answer_pos[b]`` in ``x`` and at
    ``answer_pos[b] - 1`` in the shortened prompt (every token after ``t`` moves one place left).

    Unlike :func:`occlusion` with ``replacement="delete"`` (which shifts right and starts the
    prompt with two BOS tokens), the erased prompt is an ordinary, shorter prompt. Decoders only.
    Position 0 (BOS) and positions after ``answer_pos[b]`` score 0. To keep one batch, each
    shortened prompt is padded with a copy of its last token, a position the causal model never
    reads from ``answer_pos - 1``. All ``T - 1`` erased copies run in one stacked forward pass.
    """
    tokens = check_tokens(model, tokens).to(_device(model))
    if _is_encoder(model):
        raise TutorialError("contrastive_erasure is for causal decoders (it reads the prediction "
                            "one position earlier)")
    B, T = tokens.shape
    pos = torch.as_tensor(answer_pos, dtype=torch.long).flatten().to(tokens.device)
    if pos.shape != (B,) or int(pos.min()) < 1 or int(pos.max()) >= T:
        raise TutorialError(f"answer_pos must hold one position in [1, {T - 1}] per example "
                            f"({B}), got {answer_pos!r}")
    f_x = target_values(model, tokens, contrastive_target(target_ids, foil_ids, pos=pos))
    erased = torch.cat([torch.cat([tokens[:, :t], tokens[:, t + 1:], tokens[:, -1:]], 1)
                        for t in range(1, T)])  # [(T-1)*B, T]
    earlier = contrastive_target(target_ids, foil_ids, pos=pos - 1)
    with torch.no_grad():
        out = run_from_embeddings(model, erased, token_embeddings(model, erased), None)
        vals = _blockwise_target(earlier, out, T - 1, B)  # [T-1, B]
    scores = torch.zeros(B, T, dtype=f_x.dtype, device=f_x.device)
    t = torch.arange(1, T, device=f_x.device)
    scores[:, 1:] = torch.where(t[None] <= pos[:, None], f_x[:, None] - vals.T, 0.0)
    return scores


# --------------------------------------------------------------------------------------------
# One entry point, and comparisons
# --------------------------------------------------------------------------------------------

def attribute(model: Any, tokens: Tensor, target_fn: TargetFn, method: str,
              **kwargs: Any) -> Tensor:
    """Per-token scores ``[B, T]`` from ``method`` in :data:`METHODS` (keyword arguments go
    to that method's function)."""
    fns = {"saliency": saliency, "grad_x_input": gradient_x_input,
           "integrated_gradients": integrated_gradients, "occlusion": occlusion}
    if method not in fns:
        raise TutorialError(f"unknown attribution method {method!r}; valid: {METHODS}")
    return fns[method](model, tokens, target_fn, **kwargs)


def _ranks(v: Tensor) -> Tensor:
    """Average ranks (ties share the mean rank), 0-based."""
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v, dtype=torch.float64)
    ranks[order] = torch.arange(len(v), dtype=torch.float64, device=v.device)
    uniq, inv = torch.unique(v, return_inverse=True)
    if len(uniq) < len(v):
        sums = torch.zeros(len(uniq), dtype=torch.float64, device=v.device).index_add_(0, inv, ranks)
        counts = torch.bincount(inv, minlength=len(uniq)).double()
        ranks = (sums / counts)[inv]
    return ranks


def spearman(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Spearman rank correlation between the rows of ``a`` and ``b`` (``[B, T]``) over the
    positions where ``mask`` (``[B, T]`` bool) is true; returns ``[B]`` (NaN where a row has
    fewer than 2 positions or constant scores)."""
    if a.shape != b.shape or a.ndim != 2:
        raise TutorialError(f"a and b must both be [batch, seq], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if mask is None:
        mask = torch.ones_like(a, dtype=torch.bool)
    if mask.shape != a.shape:
        raise TutorialError(f"mask {tuple(mask.shape)} does not match scores {tuple(a.shape)}")
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(a.shape[0]):
        m = mask[i].to(a.device)
        if int(m.sum()) < 2:
            continue
        ra, rb = _ranks(a[i][m].double()), _ranks(b[i][m].double())
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
        if den > 0:
            out[i] = float((ra * rb).sum()) / den
    return out


def method_agreement(scores: Mapping[str, Tensor], mask: Tensor | None = None,
                     absolute: bool = False) -> tuple[list[str], Tensor]:
    """Mean Spearman correlation (over examples) between every pair of methods.

    ``scores`` maps a method name to ``[B, T]`` scores of the same examples. With ``absolute``
    the magnitudes are compared (sensible when one method, like saliency, is unsigned).
    Returns ``(names, matrix [M, M])``.
    """
    names = list(scores)
    if not names:
        raise TutorialError("no methods to compare")
    shapes = {tuple(v.shape) for v in scores.values()}
    if len(shapes) != 1:
        raise TutorialError(f"all score tensors must have the same shape, got {shapes}")
    M = len(names)
    mat = torch.ones(M, M, dtype=torch.float64)
    for i in range(M):
        for j in range(i + 1, M):
            a, b = scores[names[i]], scores[names[j]]
            if absolute:
                a, b = a.abs(), b.abs()
            mat[i, j] = mat[j, i] = torch.nanmean(spearman(a, b, mask))
    return names, mat


@contextlib.contextmanager
def randomized_weights(model: Any, seed: int = 0,
                       include: Callable[[str], bool] | None = None) -> Iterator[Any]:
    """Temporarily re-initialise the model's weights (the model-randomisation sanity check of
    Adebayo et al. 2018): each included parameter ``p`` is replaced by
    ``mean(p) + std(p) * N(0, 1)`` (same scale, no learned structure), and restored on exit.

    By default every parameter except the token and position embeddings is randomised, so the
    inputs being attributed stay the same (a tied unembedding stays trained with them).
    """
    embed_words = ("wte", "wpe", "word_embeddings", "position_embeddings",
                   "token_type_embeddings", "embed")
    if include is None:
        include = lambda name: not any(w in name for w in embed_words)  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    saved: dict[str, Tensor] = {}
    params = dict(model.named_parameters())
    try:
        with torch.no_grad():
            for name, p in params.items():
                if not include(name):
                    continue
                saved[name] = p.detach().clone()
                std = float(p.float().std()) if p.numel() > 1 else 0.0
                noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
                p.copy_(p.float().mean().to(p.dtype) + std * noise)
        if not saved:
            raise TutorialError("include() selected no parameter to randomise")
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)
