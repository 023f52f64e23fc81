"""What every attribution method shares: the input embeddings, the baselines, a forward pass from
embeddings, and the checks a batch passes first (tokens, padding, the target hook).

Inputs are the token embeddings ``x[b, t] = W_E[tokens[b, t]]`` (the output of
:func:`embed_hook`); the position embeddings (and, for BERT, the token-type embeddings and the
embedding LayerNorm) are part of the function being explained.

**Padding.** Every function that takes a batch takes ``attention_mask`` (``[B, T]``, 1 = real
token); without it the padding is found as :func:`tutorial_utils.model_checks.padding_mask`
says (an encoder's ``[PAD]``; a decoder's trailing BOS run). The forward pass gets the mask
where it changes the real positions (left padding, encoders), the padded positions score 0 in
every attribution, and a target that reads a padded position is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..interchange import stacked_forward
from ..names import hook_name
from ..model_checks import (check_hook_names, check_model, check_tokens, first_real_positions,
                            format_token_ids, forward_attention_mask, is_encoder, padding_mask)
from ..validation import check_batch_size, check_choice, check_finite, check_mask
from .targets import TargetFn, check_target_positions, evaluate_target

if TYPE_CHECKING:
    from ..models import Model

Baseline = str | int | Tensor
EMBED_HOOK = hook_name("embed")

__all__ = ["Baseline", "EMBED_HOOK", "Batch", "baseline_embeddings", "embed_hook",
           "embedding_gradients", "prepare", "run_from_embeddings", "target_values",
           "token_embeddings"]


@dataclass
class Batch:
    """A checked batch: ``tokens`` ``[B, T]`` on the model's device, ``mask`` (True = real
    token; None when nothing is padded) and ``forward_mask`` (the 0/1 ``attention_mask`` the
    forward pass needs, or None)."""

    tokens: Int[Tensor, "batch pos"]
    mask: Bool[Tensor, "batch pos"] | None
    forward_mask: Int[Tensor, "batch pos"] | None

    def real(self) -> Bool[Tensor, "batch pos"]:
        """``[B, T]`` True at real tokens."""
        if self.mask is None:
            return torch.ones_like(self.tokens, dtype=torch.bool)
        return self.mask


def _device(model: Model) -> torch.device:
    return next(model.parameters()).device


def prepare(model: Model, tokens: Any, attention_mask: Any = None, target_hook: str | None = None,
            what: str = "input attribution", target_fn: Any = None) -> Batch:
    """Every check a method runs before its first forward pass: the model, the tokens, the
    padding (see the module docstring), ``target_hook`` and, when given, ``target_fn``
    (:func:`~tutorial_utils.input_attribution.targets.check_target_positions`)."""
    check_model(model, what)
    toks = check_tokens(model, tokens).to(_device(model))
    mask = padding_mask(model, toks, attention_mask)
    if target_hook is not None:
        check_hook_names(model, [target_hook])
    if target_fn is not None:
        check_target_positions(target_fn, toks.shape[0], toks.shape[1], mask)
    return Batch(toks, mask, forward_attention_mask(model, mask))


def token_embeddings(model: Model, tokens: Int[Tensor, "batch pos"]
                     ) -> Float[Tensor, "batch pos d_model"]:
    """The token embeddings as the embedding component outputs them, ``[B, T, d_model]``:
    ``W_E[tokens]``, times ``sqrt(d_model)`` on Gemma, whose embedding is scaled (``W_E`` alone
    would attribute a different input from the one the model reads)."""
    return _token_embeddings(model, check_tokens(model, tokens))


def _token_embeddings(model: Model, tokens: Tensor) -> Tensor:
    """:func:`token_embeddings` without the token check, for callers holding a checked batch."""
    with torch.no_grad():
        return model.embed(tokens.to(_device(model))).detach().clone()


def _mean_token_embedding(model: Model, chunk: int = 4096) -> Float[Tensor, "d_model"]:
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


def embed_hook(model: Model) -> str:
    """The hook whose output is the token embedding ``W_E[tokens]`` alone. On a decoder that is
    ``hook_embed``; on a BERT-family bridge ``hook_embed`` is the embedding LayerNorm's output
    (word + position + type embeddings, normalised), so the word embedding is read at
    ``embed.hook_out`` instead (replacing ``hook_embed`` there would skip the position
    embeddings and the LayerNorm, attributing another function than the model's)."""
    return hook_name("embed_out") if is_encoder(model) else EMBED_HOOK


def run_from_embeddings(model: Model, tokens: Int[Tensor, "batch pos"],
                        embeds: Float[Tensor, "batch pos d_model"],
                        target_hook: str | None = None,
                        attention_mask: Int[Tensor, "batch pos"] | None = None
                        ) -> Float[Tensor, "batch pos vocab"]:
    """Run ``model`` on ``tokens`` with the token embeddings (:func:`embed_hook`) replaced by
    ``embeds``.

    ``embeds`` is ``[B, T, d_model]`` (gradients flow back to it); ``attention_mask`` (0/1,
    ``[B, T]``) is handed to the forward pass as it is. Returns the logits ``[B, T, V]``, or
    the activation at ``target_hook`` when given.
    """
    check_model(model, "run_from_embeddings")
    tokens = check_tokens(model, tokens)
    if attention_mask is not None:
        attention_mask = check_mask(attention_mask, tuple(tokens.shape), "attention_mask").long()
    if not isinstance(embeds, Tensor) or embeds.ndim != 3 or \
            tuple(embeds.shape[:2]) != tuple(tokens.shape) or embeds.shape[-1] != model.cfg.d_model:
        raise TutorialError(f"embeds {tuple(getattr(embeds, 'shape', ()))} do not match tokens "
                            f"{tuple(tokens.shape)} x d_model {model.cfg.d_model}")
    return _run_from_embeddings(model, tokens, embeds, target_hook, attention_mask)


def _run_from_embeddings(model: Model, tokens: Tensor, embeds: Tensor,
                         target_hook: str | None = None,
                         attention_mask: Tensor | None = None) -> Tensor:
    """:func:`run_from_embeddings` without its checks, for callers that checked the batch once
    at entry (:func:`prepare`): ``tokens`` on the model's device, ``embeds`` ``[B, T, d]``,
    ``attention_mask`` a 0/1 long tensor or None."""

    def replace(act: Tensor, hook: Any) -> Tensor:
        return embeds.to(act.dtype)

    hooks = [(embed_hook(model), replace)]
    captured: dict[str, Tensor] = {}
    if target_hook is not None:
        def grab(act: Tensor, hook: Any) -> Tensor:
            captured["act"] = act
            return act

        hooks.append((target_hook, grab))
    logits = stacked_forward(model, tokens, 1, hooks, grad=None, attention_mask=attention_mask)
    return captured["act"] if target_hook is not None else logits


def chunks(n_variants: int, B: int, batch_size: Any) -> list[tuple[int, int]]:
    """Split ``n_variants`` stacked copies of a batch of ``B`` into chunks of at most
    ``batch_size`` rows (at least one variant per chunk)."""
    batch_size = check_batch_size(batch_size)
    per = max(1, batch_size // max(B, 1))
    return [(i, min(i + per, n_variants)) for i in range(0, n_variants, per)]


def _repeat_mask(mask: Tensor | None, n: int) -> Tensor | None:
    return None if mask is None else mask.repeat(n, 1)


def _check_embeds(embeds: Any, shape: tuple[int, ...], what: str = "embeds") -> Tensor:
    t = check_finite(embeds, what)
    if not t.dtype.is_floating_point:
        raise TutorialError(f"{what} must be float embeddings, got dtype {t.dtype}")
    if t.ndim != 3 or t.shape[0] % shape[0] or tuple(t.shape[1:]) != tuple(shape[1:]):
        raise TutorialError(f"{what} must be [batch (or n x batch), seq, d_model] = "
                            f"[{shape[0]}, {shape[1]}, {shape[2]}], got {tuple(t.shape)}")
    return t


def target_values(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
                  embeds: Float[Tensor, "nbatch pos d_model"] | None = None,
                  target_hook: str | None = None, grad: bool = False,
                  attention_mask: Int[Tensor, "batch pos"] | None = None
                  ) -> Float[Tensor, " batch"] | Float[Tensor, "n batch"]:
    """``f(x)``: the target of each example, ``[B]``; ``embeds`` overrides the token
    embeddings (``[B, T, d]``) or, stacked, ``[n*B, T, d]`` for ``n`` variants (returns
    ``[n, B]``)."""
    batch = prepare(model, tokens, attention_mask, target_hook, "target_values", target_fn)
    B = batch.tokens.shape[0]
    if embeds is None:
        embeds = _token_embeddings(model, batch.tokens)
    else:
        embeds = _check_embeds(embeds, (B, batch.tokens.shape[1], model.cfg.d_model))
    n = embeds.shape[0] // B
    with torch.set_grad_enabled(grad):
        out = _run_from_embeddings(model, batch.tokens.repeat(n, 1), embeds, target_hook,
                                  _repeat_mask(batch.forward_mask, n))
        vals = evaluate_target(target_fn, out, n, B, batch.mask)
    return vals[0] if n == 1 else vals


def embedding_gradients(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
                        embeds: Float[Tensor, "batch pos d_model"] | None = None,
                        target_hook: str | None = None,
                        attention_mask: Int[Tensor, "batch pos"] | None = None
                        ) -> tuple[Float[Tensor, "batch"], Float[Tensor, "batch pos d_model"]]:
    """``(f(x) [B], df/dx [B, T, d])`` for the token embeddings ``x`` (or ``embeds``).

    Examples do not interact, so the gradient of ``sum_b f(x)_b`` gives every example's own
    gradient in one backward pass. Padded positions get a zero gradient.
    """
    batch = prepare(model, tokens, attention_mask, target_hook, "embedding_gradients", target_fn)
    return _gradients(model, batch, target_fn, embeds, target_hook)


def _gradients(model: Model, batch: Batch, target_fn: TargetFn, embeds: Tensor | None,
               target_hook: str | None) -> tuple[Tensor, Tensor]:
    tokens = batch.tokens
    if embeds is None:
        x = _token_embeddings(model, tokens)
    else:
        x = _check_embeds(embeds, (tokens.shape[0], tokens.shape[1], model.cfg.d_model))
        if x.shape[0] != tokens.shape[0]:
            raise TutorialError(f"embeds must be [batch, seq, d_model] with batch "
                                f"{tokens.shape[0]}, got {tuple(x.shape)}")
        x = x.detach().clone().to(_device(model))
    x.requires_grad_(True)
    with torch.enable_grad():
        out = _run_from_embeddings(model, tokens, x, target_hook, batch.forward_mask)
        vals = evaluate_target(target_fn, out, 1, tokens.shape[0], batch.mask)[0]
        (grad,) = torch.autograd.grad(vals.sum(), x)
    grad = grad.detach() * batch.real()[..., None].to(grad.dtype)
    return vals.detach(), grad


BASELINES = ("zero", "mean")


def baseline_embeddings(model: Model, tokens: Int[Tensor, "batch pos"],
                        baseline: Baseline = "zero", keep_first_token: bool = True,
                        attention_mask: Int[Tensor, "batch pos"] | None = None
                        ) -> Float[Tensor, "batch pos d_model"]:
    """The baseline embeddings ``x'`` ``[B, T, d]`` for integrated gradients and occlusion.

    ``baseline``: ``"zero"`` (the zero vector), ``"mean"`` (the mean token embedding),
    a token id (that token's embedding at every position, e.g. ``<unk>`` or a pad token; as the
    model embeds it, so with Gemma's scale), or a finite tensor broadcastable to ``[B, T, d]``.

    With ``keep_first_token`` the first real token of each row keeps its real embedding when
    it is the format token that opens every sequence (BOS, ``[CLS]``: part of the format, not of
    the input), so it gets zero attribution; a row that does not open with one keeps nothing
    (its first word is attributed like any other); an encoder's closing ``[SEP]`` is not kept
    (it is replaced like any word and gets its own attribution). Padded positions always keep
    their real embedding (zero attribution).
    """
    batch = prepare(model, tokens, attention_mask, None, "baseline_embeddings")
    return _baseline(model, batch, baseline, keep_first_token)


def _baseline(model: Model, batch: Batch, baseline: Baseline, keep_first_token: bool) -> Tensor:
    tokens = batch.tokens
    check_choice(keep_first_token, (True, False), "keep_first_token")
    x = _token_embeddings(model, tokens)
    V = model.W_E.shape[0]
    if isinstance(baseline, str):
        check_choice(baseline, BASELINES, "baseline (or a token id, or a tensor)")
        if baseline == "zero":
            base = torch.zeros_like(x)
        else:
            base = _mean_token_embedding(model).to(x.device).expand_as(x).clone()
    elif isinstance(baseline, int) and not isinstance(baseline, bool):
        if not 0 <= baseline < V:
            raise TutorialError(f"baseline token id {baseline} outside the vocabulary [0, {V})")
        base = _token_embeddings(model, torch.full_like(tokens, baseline))
    elif isinstance(baseline, Tensor):
        if not baseline.dtype.is_floating_point:
            raise TutorialError(f"a baseline tensor must hold float embeddings, got dtype "
                                f"{baseline.dtype} (for a token baseline pass its id as an int)")
        check_finite(baseline, "baseline")
        try:
            base = baseline.to(x.device, x.dtype).expand_as(x).clone()
        except RuntimeError as exc:
            raise TutorialError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to "
                                f"{tuple(x.shape)}") from exc
    else:
        raise TutorialError(f"baseline must be 'zero', 'mean', a token id or a tensor, got "
                            f"{type(baseline).__name__}")
    keep = ~(attributed_positions(model, batch) if keep_first_token else batch.real())
    return torch.where(keep[..., None], x, base)


def opening_format_positions(model: Model, batch: Batch) -> Bool[Tensor, "batch pos"]:
    """``[B, T]`` True at each row's first real token when it is the format token that opens
    every sequence (BOS, ``[CLS]``; any first token when the model names none), per row, so a
    left-padded row's opening BOS is found in its own column."""
    tokens = batch.tokens
    B = tokens.shape[0]
    first = first_real_positions(batch.mask, B, tokens.device)
    rows = torch.arange(B, device=tokens.device)
    fmt = format_token_ids(model)
    opens = torch.tensor([fmt is None or int(t) in fmt for t in tokens[rows, first].tolist()],
                         device=tokens.device, dtype=torch.bool)
    out = torch.zeros_like(tokens, dtype=torch.bool)
    out[rows[opens], first[opens]] = True
    return out


def attributed_positions(model: Model, batch: Batch) -> Bool[Tensor, "batch pos"]:
    """``[B, T]`` True at the positions an attribution scores by default: every real token of
    the row but its opening format token (:func:`opening_format_positions`)."""
    return batch.real() & ~opening_format_positions(model, batch)


def check_mask_arg(mask: Any, shape: tuple[int, int], what: str = "mask") -> Bool[Tensor, "batch pos"] | None:
    """An optional ``[B, T]`` boolean (or 0/1) mask of positions, or None."""
    return None if mask is None else check_mask(mask, shape, what)
