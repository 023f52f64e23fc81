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

from typing import Any, Sequence

import torch
from torch import Tensor

from .names import hook_name
from .models import require_decoder
from .errors import TutorialError
from .validation import check_no_logit_softcap

__all__ = ["MAX_FULL_VOCAB_VALUES", "activations_at", "check_cache_tokens", "check_decoder",
           "check_pos", "check_token_ids", "final_norm_kind", "gather_pos", "ln_affine",
           "normalise", "project", "read_out_weights"]


#: Above this many projected values (components x batch x tokens) a full-vocabulary component
#: projection is refused: pass ``token_ids``.
MAX_FULL_VOCAB_VALUES = 200_000_000


# --------------------------------------------------------------------------------------------
# Input validation (all before any forward pass)
# --------------------------------------------------------------------------------------------

def check_decoder(model: Any, what: str) -> None:
    """A decoder bridge, else a ``ValueError`` (see :func:`tutorial_utils.models.require_decoder`)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TutorialError(f"{what} needs a TransformerBridge from tutorial_utils.models.load_model, "
                         f"got {type(model).__name__}")
    require_decoder(model, what)
    if not hasattr(model, "W_U"):
        raise TutorialError(f"{what} needs a model with an unembedding W_U")
    check_no_logit_softcap(model, what)




def check_pos(pos: int | Tensor | Sequence[int], B: int, T: int) -> Tensor:
    """``pos`` as a LongTensor[B] of non-negative positions (negative ints count from the end)."""
    if isinstance(pos, bool):
        raise TutorialError("pos must be an int or a LongTensor[batch] of positions, got a bool")
    if isinstance(pos, int):
        if not -T <= pos < T:
            raise TutorialError(f"pos {pos} out of range for sequences of length {T}")
        return torch.full((B,), pos % T, dtype=torch.long)
    p = torch.as_tensor(pos)
    if p.is_floating_point() or p.dtype == torch.bool:
        raise TutorialError(f"pos must hold integer positions, got dtype {p.dtype}")
    if p.ndim == 0:
        return check_pos(int(p), B, T)
    if p.shape != (B,):
        raise TutorialError(f"pos must be an int or have shape [batch] = [{B}], got {tuple(p.shape)}")
    p = p.long().cpu()
    bad = (p < -T) | (p >= T)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise TutorialError(f"pos[{i}] = {int(p[i])} out of range for sequences of length {T}")
    return p % T


def check_token_ids(model: Any, token_ids: Any, B: int, required: bool = False) -> Tensor | None:
    """``token_ids`` as a LongTensor [K] (shared) or [B, K] (per example), or None (full vocab)."""
    if token_ids is None:
        if required:
            raise TutorialError("token_ids is required here (e.g. the 100 year tokens, or "
                             "TaskDataset.candidate_ids)")
        return None
    ids = torch.as_tensor(token_ids)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TutorialError(f"token_ids must be integer ids, got dtype {ids.dtype}")
    if ids.ndim == 0:
        ids = ids[None]
    if ids.ndim == 2 and ids.shape[0] != B:
        raise TutorialError(f"per-example token_ids must have shape [batch={B}, K], got "
                         f"{tuple(ids.shape)}")
    if ids.ndim not in (1, 2) or ids.shape[-1] == 0:
        raise TutorialError(f"token_ids must have shape [K] or [batch, K] with K >= 1, got "
                         f"{tuple(ids.shape)}")
    V = model.cfg.d_vocab
    bad = (ids < 0) | (ids >= V)
    if bad.any():
        raise TutorialError(f"token_ids {ids[bad][:5].tolist()} outside the vocabulary [0, {V})")
    return ids.long().cpu()


# --------------------------------------------------------------------------------------------
# Activations at one position per example
# --------------------------------------------------------------------------------------------

def gather_pos(act: Tensor, pos: Tensor) -> Tensor:
    """``act[b, pos[b]]`` for an activation [B, T, ...] -> [B, ...]."""
    return act[torch.arange(act.shape[0], device=act.device), pos.to(act.device)]


def check_cache_tokens(model: Any, tokens: Tensor, cache: Any) -> None:
    """A cache must come from ``tokens``. Compared by token ids: a cache that records its
    tokens (``cache.tokens``, e.g. set by you after ``run_with_cache``) must hold exactly these
    ids; otherwise the ids are read back from its token embeddings ``hook_embed`` (the row of
    ``W_E`` each position holds) and compared. A cache with neither is refused: a cache of
    other prompts of the same shape would give silently wrong numbers."""
    cached = getattr(cache, "tokens", None)
    if isinstance(cached, Tensor):
        if cached.shape != tokens.shape or not torch.equal(cached.cpu(), tokens.cpu()):
            raise TutorialError("cache: its tokens (cache.tokens) are not these tokens: the "
                                "cache must come from a run of this model on these tokens")
        return
    try:
        emb = cache[hook_name("embed")]
    except KeyError:
        raise TutorialError("cache: cannot tell which tokens it came from (it has neither "
                            "cache.tokens nor 'hook_embed'); run model.run_with_cache(tokens) "
                            "without a names_filter, or set cache.tokens = tokens, or pass "
                            "cache=None") from None
    if emb.shape[:2] != tokens.shape:
        raise TutorialError(f"cache: its batch/seq shape {tuple(emb.shape[:2])} differs from the "
                            f"tokens' {tuple(tokens.shape)}: the cache must come from these tokens")
    W_E = getattr(model, "W_E", None)
    if W_E is not None and W_E.shape[0] == model.cfg.d_vocab:
        W = W_E.detach().to(emb.device, torch.float32)
        e = emb.detach().float().reshape(-1, W.shape[1])
        # the token id each cached position holds: the nearest row of W_E
        ids = torch.cdist(e, W).argmin(-1).reshape(tokens.shape).cpu()
        same = ids == tokens.cpu()
        if not bool(same.all()):
            # ties (identical embedding rows) count as equal when the embeddings match
            want = W[tokens.to(W.device)].reshape(-1, W.shape[1])
            close = torch.isclose(e, want, atol=1e-4, rtol=1e-3).all(-1).reshape(tokens.shape)
            if not bool((same | close.cpu()).all()):
                b, t = (~(same | close.cpu())).nonzero()[0].tolist()
                raise TutorialError(
                    f"cache: its token ids differ from these tokens (first at example {b}, "
                    f"position {t}: cached id {int(ids[b, t])}, given {int(tokens[b, t])}); "
                    "the cache must come from a run of this model on these tokens")


def activations_at(model: Any, tokens: Tensor, pos: Tensor, names: list[str], cache: Any,
                    batch_size: int) -> dict[str, Tensor]:
    """Each hook in ``names`` at ``pos``: from ``cache`` if given, else from batched forwards."""
    B, T = tokens.shape
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    if cache is not None:
        check_cache_tokens(model, tokens, cache)
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
        if batch_size <= 0:
            raise TutorialError(f"batch_size must be positive, got {batch_size}")
        dev = next(model.parameters()).device
        starts = range(0, B, batch_size)
        it = starts
        if len(starts) > 1:
            from tqdm.auto import tqdm

            it = tqdm(starts, desc=f"forward passes ({batch_size} examples each)", leave=False)
        with torch.no_grad():
            for s in it:
                chunk = tokens[s:s + batch_size].to(dev)
                _, c = model.run_with_cache(chunk, names_filter=list(names))
                for n in names:
                    out[n].append(gather_pos(c[n], pos[s:s + batch_size]))
                del c
    return {n: torch.cat(v, 0).detach().float() for n, v in out.items()}


# --------------------------------------------------------------------------------------------
# The read-out: final LayerNorm and unembedding
# --------------------------------------------------------------------------------------------

def final_norm_kind(model: Any) -> tuple[bool, bool]:
    """(centre, normalise) of ``ln_final``: LayerNorm centres, RMSNorm does not."""
    nt = getattr(model.cfg, "normalization_type", "LN")
    if nt is None:
        return False, False
    if getattr(model.cfg, "final_rms", False) or str(nt).startswith("RMS"):
        return False, True
    return True, True


def has_pos_embed(model: Any) -> bool:
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


def ln_affine(model: Any) -> tuple[Tensor | None, Tensor | None]:
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


def read_out_weights(model: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
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


def normalise(x: Tensor, model: Any, scale: Tensor | None) -> Tensor:
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


def project(x: Tensor, W_U: Tensor, ids: Tensor | None, bias: Tensor | None) -> Tensor:
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
