"""The shared read-out of the logit lens (:mod:`tutorial_utils.logit_lens`) and direct logit
attribution (:mod:`tutorial_utils.dla`): input checks, activations at one position per example,
and the model's own final LayerNorm + unembedding::

    logits = LN_final(x) @ W_U + b_U,     LN_final(x) = (x - mean(x)) / s(x),
    s(x) = sqrt(mean((x - mean(x))^2) + eps).

*Compatibility mode.* The course's models (:func:`tutorial_utils.models.load_model`) run in
TransformerLens's compatibility mode: the final LayerNorm's weight and bias are folded into
``W_U``/``b_U`` (``ln_final`` only centres and divides by ``s``), the writing weights are centred,
and so is the unembedding: ``W_U`` has zero mean over the vocabulary, so **the model's logits,
every logit-lens point and every DLA row are centred logits** (zero mean over the full vocabulary
at each position). Softmax is shift invariant, so probabilities and logit differences are
unaffected; raw logit values differ from those of the Hugging Face model by a per-position
constant. If ``ln_final`` still carries a weight or bias (a bridge outside compatibility mode) it is
applied: the weight is folded into the read-out, and the bias read out becomes the row
``bias.ln_final``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .model_checks import (check_cache, check_model, check_no_logit_softcap, check_real_positions,
                           check_tokens, forward_attention_mask, padding_mask, require_decoder)
from .validation import check_batch_size, check_positions

if TYPE_CHECKING:
    from .models import Model

__all__ = ["MAX_FULL_VOCAB_VALUES", "activations_at", "check_decoder", "final_norm_kind",
           "gather_pos", "has_pos_embed", "ln_affine", "normalise", "prepare_batch", "project", "read_out_weights"]


#: Above this many projected values (components x batch x tokens) a full-vocabulary component
#: projection is refused: pass ``token_ids``.
MAX_FULL_VOCAB_VALUES = 200_000_000


# --------------------------------------------------------------------------------------------
# Input validation (all before any forward pass)
# --------------------------------------------------------------------------------------------

def check_decoder(model: Model, what: str) -> None:
    """A decoder bridge with an unembedding and linear logits, else a ``TutorialError``."""
    check_model(model, what)
    require_decoder(model, what)
    if not hasattr(model, "W_U"):
        raise TutorialError(f"{what} needs a model with an unembedding W_U")
    check_no_logit_softcap(model, what)


def prepare_batch(model: Model, tokens: Any, pos: Any, attention_mask: Any, cache: Any,
                  batch_size: Any) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"],
                                            Int[Tensor, "batch pos"] | None]:
    """The checks every read-out method runs first: ``(tokens [B, T], pos [B], forward mask)``.

    Tokens are checked against the model; padding is found (:func:`~tutorial_utils.
    model_checks.padding_mask`) and every position read must be a real token; a cache must come
    from this model on these tokens, and a cache of a padded batch is refused (it cannot say
    whether it was run with the mask)."""
    tokens = check_tokens(model, tokens)
    B, T = tokens.shape
    p = check_positions(pos, B, T)
    if cache is not None:
        check_cache(model, tokens, cache)
    else:
        check_batch_size(batch_size)
    mask = padding_mask(model, tokens, attention_mask)
    check_real_positions(mask, p)
    fwd = forward_attention_mask(model, mask)
    if cache is not None:
        if fwd is not None:
            raise TutorialError("cache: with padding that changes the real tokens' run (left "
                                "padding, or an encoder), a cache cannot be checked for the "
                                "mask it was run with; pass cache=None and attention_mask")
    return tokens, p, fwd


# --------------------------------------------------------------------------------------------
# Activations at one position per example
# --------------------------------------------------------------------------------------------

def gather_pos(act: Float[Tensor, "batch pos ..."], pos: Int[Tensor, "batch"]
               ) -> Float[Tensor, "batch ..."]:
    """``act[b, pos[b]]`` for an activation [B, T, ...] -> [B, ...]."""
    return act[torch.arange(act.shape[0], device=act.device), pos.to(act.device)]


def activations_at(model: Model, tokens: Int[Tensor, "batch pos"], pos: Int[Tensor, "batch"],
                   names: list[str], cache: Any, batch_size: int,
                   attention_mask: Int[Tensor, "batch pos"] | None = None
                   ) -> dict[str, Float[Tensor, "batch ..."]]:
    """Each hook in ``names`` at ``pos``: from ``cache`` if given (checked by
    :func:`prepare_batch`), else from batched forwards (with ``attention_mask``, the forward
    mask :func:`prepare_batch` returns)."""
    B, T = tokens.shape
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    if cache is not None:
        for n in names:
            try:
                act = cache[n]
            except KeyError:
                raise TutorialError(f"the cache has no activation {n!r}: run the model with "
                                    "run_with_cache and no names_filter, or pass cache=None") from None
            if act.shape[:2] != (B, T):
                raise TutorialError(f"cached {n!r} has batch/seq shape {tuple(act.shape[:2])} but "
                                    f"tokens are {(B, T)}: the cache must come from these tokens")
            out[n].append(gather_pos(act, pos))
    else:
        batch_size = check_batch_size(batch_size)
        dev = next(model.parameters()).device
        starts = range(0, B, batch_size)
        it = starts
        if len(starts) > 1:
            from tqdm.auto import tqdm

            it = tqdm(starts, desc=f"forward passes ({batch_size} examples each)", leave=False)
        with torch.no_grad():
            for s in it:
                chunk = tokens[s:s + batch_size].to(dev)
                kw = {} if attention_mask is None else \
                    {"attention_mask": attention_mask[s:s + batch_size].to(dev)}
                _, c = model.run_with_cache(chunk, names_filter=list(names), **kw)
                for n in names:
                    out[n].append(gather_pos(c[n], pos[s:s + batch_size]))
                del c
    return {n: torch.cat(v, 0).detach().float() for n, v in out.items()}


# --------------------------------------------------------------------------------------------
# The read-out: final LayerNorm and unembedding
# --------------------------------------------------------------------------------------------

def final_norm_kind(model: Model) -> tuple[bool, bool]:
    """(centre, normalise) of ``ln_final``: LayerNorm centres, RMSNorm does not."""
    nt = getattr(model.cfg, "normalization_type", "LN")
    if nt is None:
        return False, False
    if getattr(model.cfg, "final_rms", False) or str(nt).startswith("RMS"):
        return False, True
    return True, True


def has_pos_embed(model: Model) -> bool:
    """True when the model adds a learned position embedding to the residual stream (GPT-2,
    BERT); False for rotary (Pythia, Llama, Qwen2, Mistral, Gemma) and other schemes that act
    inside attention, where there is no ``pos_embed`` component."""
    return str(getattr(model.cfg, "positional_embedding_type", "standard")) == "standard"


def _weight_offset(ln: Any) -> bool:
    """True for a norm that multiplies by ``1 + weight`` (Gemma's RMSNorm: its stored weight
    0 means the identity), read from the Hugging Face module the bridge wraps."""
    orig = getattr(ln, "original_component", None) or getattr(ln, "_original_component", None)
    return orig is not None and type(orig).__name__.startswith("Gemma") and \
        "RMSNorm" in type(orig).__name__


def ln_affine(model: Model) -> tuple[Float[Tensor, "d_model"] | None, Float[Tensor, "d_model"] | None]:
    """The weight and bias ``ln_final`` still applies (None when folded away, i.e. ones/zeros)."""
    w = b = None
    ln = getattr(model, "ln_final", None)
    if ln is None:
        return None, None
    for name, p in ln.named_parameters():
        leaf = name.split(".")[-1]
        if leaf in ("weight", "w") and w is None:
            w = p.detach().float()
        elif leaf in ("bias", "b") and b is None:
            b = p.detach().float()
    if w is not None and _weight_offset(ln):
        w = 1.0 + w  # Gemma's RMSNorm multiplies by (1 + weight)
    if w is not None and torch.allclose(w, torch.ones_like(w)):
        w = None
    if b is not None and not b.abs().max() > 0:
        b = None
    return w, b


def read_out_weights(model: Model, device: torch.device) -> tuple[
        Float[Tensor, "d_model vocab"], Float[Tensor, "vocab"], Float[Tensor, "vocab"] | None]:
    """Effective ``W_U`` [d_model, V] (LN weight folded in), ``b_U`` [V], and the LN bias
    read out through ``W_U`` (``ln_b @ W_U``, [V]) or None."""
    W_U = model.W_U.detach().float().to(device)
    b_U = getattr(model, "b_U", None)
    b_U = torch.zeros(W_U.shape[1], device=device) if b_U is None else b_U.detach().float().to(device)
    w, b = ln_affine(model)
    ln_bias = None
    if b is not None:
        ln_bias = b.to(device) @ W_U
    if w is not None:
        W_U = w.to(device)[:, None] * W_U
    return W_U, b_U, ln_bias


def normalise(x: Float[Tensor, "... batch d_model"], model: Model,
              scale: Float[Tensor, "batch 1"] | None) -> Float[Tensor, "... batch d_model"]:
    """Apply ``ln_final``'s normalisation to ``x`` [..., B, d]: centre (LayerNorm) and divide by
    ``scale`` [B, 1] (frozen) or by ``x``'s own RMS (``scale=None``)."""
    centre, norm = final_norm_kind(model)
    if centre:
        x = x - x.mean(-1, keepdim=True)
    if not norm:
        return x
    if scale is None:
        eps = float(getattr(model.cfg, "eps", 1e-5))
        return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x / scale


def project(x: Float[Tensor, "... batch d_model"], W_U: Float[Tensor, "d_model vocab"],
            ids: Int[Tensor, "*batch k"] | None, bias: Float[Tensor, "vocab"] | None
            ) -> Float[Tensor, "... batch k_or_vocab"]:
    """``x @ W_U (+ bias)`` restricted to ``ids``: x [..., B, d] -> [..., B, K or V]."""
    if ids is None:
        out = x @ W_U
        return out if bias is None else out + bias
    ids = ids.to(W_U.device)
    if ids.ndim == 1:
        out = x @ W_U[:, ids]
        return out if bias is None else out + bias[ids]
    # per-example ids [B, K]
    out = torch.einsum("...bd,dbk->...bk", x, W_U[:, ids])
    return out if bias is None else out + bias[ids]
