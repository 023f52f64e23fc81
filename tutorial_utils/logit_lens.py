"""The logit lens and direct logit attribution (DLA): reading the residual stream in vocabulary space.

**Logit lens** (nostalgebraist 2020, "interpreting GPT: the logit lens"). The residual stream after
``l`` blocks, ``x_l = embed + pos_embed + sum_{l'<l} (attn_out_{l'} + mlp_out_{l'})``, is pushed
through the model's own read-out as if the network stopped there::

    logits_l = LN_final(x_l) @ W_U + b_U,     LN_final(x) = (x - mean(x)) / s(x),
    s(x) = sqrt(mean((x - mean(x))^2) + eps).

The points are ``embed`` (the token + position embeddings, resid_pre of block 0) and ``L{l}``,
the residual stream *after* block ``l`` (its resid_post, which is resid_pre of block ``l + 1``), for
``l = 0 .. n_layers - 1``; the last, ``L{n-1}``, is what the unembedding reads. ``incl_mid=True``
adds ``L{l}.mid`` (resid_mid: after block ``l``'s attention, before its MLP).

*Which LayerNorm scale.* ``scale="own"`` (the default, the standard logit lens) normalises each point
by its own statistics ``s(x_l)``, which is what ``LN_final`` would do if the model ended there; the
last point then reproduces the model's logits exactly. ``scale="final"`` freezes the last
point's scale ``s(x_final)`` (read from ``ln_final.hook_scale``) for every point: the map from the
residual stream to logits becomes linear, so the points are partial sums of the component
attributions below (``logits at L{l} = sum of the DLA of embed, pos_embed and blocks 0..l, + b_U``,
with ``per_head=False``), at the
cost of intermediate points whose overall magnitude is not what ``LN_final`` would give them.

**Direct logit attribution** (Elhage et al. 2021, "A Mathematical Framework for Transformer
Circuits"; used in Wang et al. 2023 on IOI and Hanna et al. 2023 on Greater-Than). With the final
scale frozen from the same run, the read-out is linear, and the final residual stream is a sum of
the components' outputs, so the logits decompose exactly::

    logits = sum_c (c - mean(c)) / s(x_final) @ W_U  +  b_U,
    c in {embed, pos_embed, head (l, h) = z_{l,h} @ W_O[l, h], b_O[l], mlp_out_l}.

``hook_mlp_out`` already contains the MLP's output bias ``b_out``; the attention output biases
``b_O`` are not attributable to any single head and appear as the row ``bias.attn`` when heads are
split (inside ``a{l}`` when they are not), and ``b_U`` as ``bias.b_U``.

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

*Metrics.* Logit differences are linear in the logits, so projecting DLA onto a direction
(:meth:`DLAResult.project`, :func:`logit_diff_attribution`) decomposes them exactly. Probability
differences (Greater-Than, agreement) are not: :func:`task_metric_attribution` with
``linearise=True`` attributes the first-order term ``g . logits`` with ``g = d metric / d logits``
at the clean run, which tells how the metric would move, to first order, if a component's direct
contribution were removed; the rows then sum to ``g . logits``, not to the metric.

Everything is computed at one position per example (``pos``: an int or ``TaskDataset.answer_pos``),
in one batched forward pass (chunked by ``batch_size``), or from a cache you already have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from .validation import TutorialError, check_hook_names, check_tokens
from .models import require_decoder


#: Above this many projected values (components x batch x tokens) a full-vocabulary component
#: projection is refused: pass ``token_ids``.
MAX_FULL_VOCAB_VALUES = 200_000_000


# --------------------------------------------------------------------------------------------
# Input validation (all before any forward pass)
# --------------------------------------------------------------------------------------------

def _check_model(model: Any, what: str) -> None:
    """A decoder bridge, else a ``ValueError`` (see :func:`tutorial_utils.models.require_decoder`)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TutorialError(f"{what} needs a TransformerBridge from tutorial_utils.models.load_model, "
                         f"got {type(model).__name__}")
    require_decoder(model, what)
    if not hasattr(model, "W_U"):
        raise TutorialError(f"{what} needs a model with an unembedding W_U")




def _check_pos(pos: int | Tensor | Sequence[int], B: int, T: int) -> Tensor:
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
        return _check_pos(int(p), B, T)
    if p.shape != (B,):
        raise TutorialError(f"pos must be an int or have shape [batch] = [{B}], got {tuple(p.shape)}")
    p = p.long().cpu()
    bad = (p < -T) | (p >= T)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise TutorialError(f"pos[{i}] = {int(p[i])} out of range for sequences of length {T}")
    return p % T


def _check_token_ids(model: Any, token_ids: Any, B: int, required: bool = False) -> Tensor | None:
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

def _gather_pos(act: Tensor, pos: Tensor) -> Tensor:
    """``act[b, pos[b]]`` for an activation [B, T, ...] -> [B, ...]."""
    return act[torch.arange(act.shape[0], device=act.device), pos.to(act.device)]


def _check_cache_tokens(model: Any, tokens: Tensor, cache: Any) -> None:
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
        emb = cache["hook_embed"]
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


def _activations_at(model: Any, tokens: Tensor, pos: Tensor, names: list[str], cache: Any,
                    batch_size: int) -> dict[str, Tensor]:
    """Each hook in ``names`` at ``pos``: from ``cache`` if given, else from batched forwards."""
    B, T = tokens.shape
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    if cache is not None:
        _check_cache_tokens(model, tokens, cache)
        for n in names:
            try:
                act = cache[n]
            except KeyError:
                raise TutorialError(f"the cache has no activation {n!r}: run the model with "
                                 "run_with_cache and no names_filter, or pass cache=None") from None
            if act.shape[:2] != (B, T):
                raise TutorialError(f"cached {n!r} has batch/seq shape {tuple(act.shape[:2])} but "
                                 f"tokens are {(B, T)}: the cache must come from these tokens")
            out[n].append(_gather_pos(act, pos))
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
                    out[n].append(_gather_pos(c[n], pos[s:s + batch_size]))
                del c
    return {n: torch.cat(v, 0).detach().float() for n, v in out.items()}


# --------------------------------------------------------------------------------------------
# The read-out: final LayerNorm and unembedding
# --------------------------------------------------------------------------------------------

def _final_norm_kind(model: Any) -> tuple[bool, bool]:
    """(centre, normalise) of ``ln_final``: LayerNorm centres, RMSNorm does not."""
    nt = getattr(model.cfg, "normalization_type", "LN")
    if nt is None:
        return False, False
    if getattr(model.cfg, "final_rms", False) or str(nt).startswith("RMS"):
        return False, True
    return True, True


def _ln_affine(model: Any) -> tuple[Tensor | None, Tensor | None]:
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
    if w is not None and torch.allclose(w, torch.ones_like(w)):
        w = None
    if b is not None and not b.abs().max() > 0:
        b = None
    return w, b


def _readout(model: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
    """Effective ``W_U`` [d_model, V] (LN weight folded in), ``b_U`` [V], and the LN bias
    read out through ``W_U`` (``ln_b @ W_U``, [V]) or None."""
    W_U = model.W_U.detach().float().to(device)
    b_U = getattr(model, "b_U", None)
    b_U = torch.zeros(W_U.shape[1], device=device) if b_U is None else b_U.detach().float().to(device)
    w, b = _ln_affine(model)
    ln_bias = None
    if b is not None:
        ln_bias = b.to(device) @ W_U
    if w is not None:
        W_U = w.to(device)[:, None] * W_U
    return W_U, b_U, ln_bias


def _normalise(x: Tensor, model: Any, scale: Tensor | None) -> Tensor:
    """Apply ``ln_final``'s normalisation to ``x`` [..., B, d]: centre (LayerNorm) and divide by
    ``scale`` [B, 1] (frozen) or by ``x``'s own RMS (``scale=None``)."""
    centre, norm = _final_norm_kind(model)
    if centre:
        x = x - x.mean(-1, keepdim=True)
    if not norm:
        return x
    if scale is None:
        eps = float(getattr(model.cfg, "eps", 1e-5))
        return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x / scale


def _project(x: Tensor, W_U: Tensor, ids: Tensor | None, bias: Tensor | None) -> Tensor:
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


# --------------------------------------------------------------------------------------------
# Logit lens
# --------------------------------------------------------------------------------------------

@dataclass
class LogitLensResult:
    """The logit lens at one position per example.

    Attributes:
        labels: ``n_points`` names: ``embed``, then ``L0`` ... ``L{n-1}`` (the residual stream after
            block ``l``; the last is what the unembedding reads), with ``L{l}.mid`` before each
            ``L{l}`` when ``incl_mid``.
        logits: ``[n_points, B, K]`` (centred) logits of ``token_ids``, or ``[n_points, B, V]``.
        log_norm: ``[n_points, B]`` log-sum-exp over the *full* vocabulary, so probabilities of
            a token subset are the model's real probabilities, not a softmax over the subset.
        token_ids: the ids projected onto (``[K]`` or ``[B, K]``) or None for the full vocabulary.
        top_ids, top_logits: ``[n_points, B, top_k]`` the highest-scoring tokens of the full
            vocabulary at each point.
        pos: ``[B]`` the positions read.
        scale: ``"own"`` or ``"final"`` (see the module docstring).
        ranks: ``[n_points, B, K]`` rank of each of ``token_ids`` in the full vocabulary
            (0 = top; ties count in the token's favour), or None for the full vocabulary.
    """

    labels: list[str]
    logits: Tensor
    log_norm: Tensor
    token_ids: Tensor | None
    top_ids: Tensor
    top_logits: Tensor
    pos: Tensor
    scale: str
    ranks: Tensor | None = None

    def index(self, label: str) -> int:
        """Row of the point ``label``."""
        if label not in self.labels:
            raise TutorialError(f"no point {label!r}; points: {self.labels}")
        return self.labels.index(label)

    def log_probs(self) -> Tensor:
        """``[n_points, B, K]`` log-probabilities (normalised over the full vocabulary)."""
        return self.logits - self.log_norm[..., None]

    def probs(self) -> Tensor:
        """``[n_points, B, K]`` probabilities (normalised over the full vocabulary)."""
        return self.log_probs().exp()

    def rank_of(self) -> Tensor:
        """``[n_points, B, K]`` the rank of each of ``token_ids`` in the full vocabulary (0 = the
        top token); see :attr:`ranks`."""
        if self.ranks is None:
            raise TutorialError("ranks are only kept when token_ids are given")
        return self.ranks

    def top_tokens(self, tokenizer_or_model: Any, example: int = 0, k: int | None = None
                   ) -> list[list[str]]:
        """The ``k`` best tokens of the full vocabulary at each point for one example, decoded."""
        tok = getattr(tokenizer_or_model, "tokenizer", tokenizer_or_model)
        if not 0 <= example < self.logits.shape[1]:
            raise TutorialError(f"example {example} out of range for a batch of {self.logits.shape[1]}")
        k = self.top_ids.shape[-1] if k is None else k
        if k > self.top_ids.shape[-1]:
            raise TutorialError(f"only the top {self.top_ids.shape[-1]} were kept; rerun with top_k={k}")
        return [tok.convert_ids_to_tokens(self.top_ids[p, example, :k].tolist())
                for p in range(len(self.labels))]


def _resid_names(model: Any, incl_mid: bool) -> tuple[list[str], list[str]]:
    """Labels and hooks of the logit-lens points: ``embed`` (resid_pre of block 0), then for each
    block ``l`` optionally ``L{l}.mid`` (resid_mid) and ``L{l}`` (resid_post = resid_pre of l+1)."""
    labels, names = ["embed"], ["blocks.0.hook_resid_pre"]
    for l in range(model.cfg.n_layers):
        if incl_mid:
            labels.append(f"L{l}.mid")
            names.append(f"blocks.{l}.hook_resid_mid")
        labels.append(f"L{l}")
        names.append(f"blocks.{l}.hook_resid_post")
    return labels, names


def logit_lens(
    model: Any,
    tokens: Tensor,
    pos: int | Tensor = -1,
    token_ids: Any = None,
    cache: Any = None,
    incl_mid: bool = False,
    scale: str = "own",
    top_k: int = 5,
    batch_size: int = 64,
) -> LogitLensResult:
    """The logit lens at position ``pos`` of every example.

    ``logits[p, b] = LN_final(x_p[b, pos[b]]) @ W_U[:, token_ids] + b_U[token_ids]`` for each point
    ``p`` of the residual stream (see the module docstring for the points and for ``scale``).

    Args:
        model: a decoder ``TransformerBridge`` (compatibility mode, as ``load_model`` returns).
        tokens: ``[B, T]`` token ids (BOS included), e.g. ``TaskDataset.clean_tokens``.
        pos: an int (negative counts from the end) or ``LongTensor[B]`` (``TaskDataset.answer_pos``).
        token_ids: ``[K]`` ids shared by all examples, ``[B, K]`` per example, or None for the
            full vocabulary.
        cache: an ``ActivationCache`` of ``model`` on ``tokens`` (no forward pass is run).
        incl_mid: also read resid_mid of every block.
        scale: ``"own"`` (each point normalised by its own LayerNorm statistics: the standard
            logit lens) or ``"final"`` (the last point's scale frozen: linear, matches DLA).
        top_k: how many best tokens of the full vocabulary to keep per point.
        batch_size: examples per forward pass.

    Returns:
        a :class:`LogitLensResult` with ``logits`` ``[n_points, B, K]``.
    """
    _check_model(model, "the logit lens")
    if scale not in ("own", "final"):
        raise TutorialError(f"scale must be 'own' or 'final', got {scale!r}")
    tokens = check_tokens(model, tokens)
    B, T = tokens.shape
    p = _check_pos(pos, B, T)
    ids = _check_token_ids(model, token_ids, B)
    V = model.cfg.d_vocab
    if not 0 <= top_k <= V:
        raise TutorialError(f"top_k must be in [0, {V}], got {top_k}")
    labels, names = _resid_names(model, incl_mid)
    names_all = names + ["ln_final.hook_scale"]
    if cache is None:
        check_hook_names(model, names_all)
    acts = _activations_at(model, tokens, p, names_all, cache, batch_size)
    x = torch.stack([acts[n] for n in names], 0)                     # [P, B, d]
    frozen = acts["ln_final.hook_scale"].reshape(B, 1)
    xn = _normalise(x, model, frozen if scale == "final" else None)
    W_U, b_U, ln_bias = _readout(model, x.device)
    bias = b_U if ln_bias is None else b_U + ln_bias
    full = _project(xn, W_U, None, bias)                              # [P, B, V]
    log_norm = full.logsumexp(-1)
    top = full.topk(top_k, dim=-1) if top_k else None
    ranks = None
    if ids is None:
        logits = full
    else:
        ids_d = ids.to(full.device)
        idx = ids_d.expand(B, -1) if ids_d.ndim == 1 else ids_d
        logits = full.gather(-1, idx[None].expand(len(labels), -1, -1))
        # rank = number of tokens scoring strictly higher (sorted search: memory [B, V])
        ranks = torch.stack([
            full.shape[-1] - torch.searchsorted(full[i].sort(-1).values, logits[i].contiguous(), right=True)
            for i in range(len(labels))])
    empty = torch.zeros(len(labels), B, 0, device=full.device)
    return LogitLensResult(
        labels=labels, logits=logits, log_norm=log_norm, token_ids=ids,
        top_ids=top.indices if top is not None else empty.long(),
        top_logits=top.values if top is not None else empty,
        pos=p, scale=scale, ranks=ranks,
    )


# --------------------------------------------------------------------------------------------
# Components: their outputs at pos, projected
# --------------------------------------------------------------------------------------------

def _component_names(model: Any) -> list[str]:
    L = model.cfg.n_layers
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale",
             f"blocks.{L - 1}.hook_resid_post"]
    for l in range(L):
        names += [f"blocks.{l}.attn.hook_z", f"blocks.{l}.hook_attn_out",
                  f"blocks.{l}.hook_mlp_out"]
    return names


def _component_stack(model: Any, acts: dict[str, Tensor], per_head: bool
                     ) -> tuple[list[str], Tensor]:
    """Labels and outputs ``[C, B, d_model]`` of every component writing to the final residual
    stream (before normalisation), bias rows included; they sum to resid_post of the last block.

    Head outputs are ``z[l, h] @ W_O[l, h]`` (what ``hook_result`` holds, without ``b_O``)."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    labels, rows = ["embed", "pos_embed"], [acts["hook_embed"], acts["hook_pos_embed"]]
    b_O_total = None
    for l in range(L):
        attn = model.blocks[l].attn
        if per_head:
            z = acts[f"blocks.{l}.attn.hook_z"]                      # [B, H, d_head]
            W_O = attn.W_O.detach().float().to(z.device)             # [H, d_head, d_model]
            heads = torch.einsum("bhe,hed->hbd", z, W_O)
            labels += [f"a{l}.h{h}" for h in range(H)]
            rows += list(heads)
            b_O = getattr(attn, "b_O", None)
            if b_O is not None:
                b_O = b_O.detach().float().to(z.device)
                b_O_total = b_O if b_O_total is None else b_O_total + b_O
        else:
            labels.append(f"a{l}")
            rows.append(acts[f"blocks.{l}.hook_attn_out"])
        labels.append(f"m{l}")
        rows.append(acts[f"blocks.{l}.hook_mlp_out"])
    if per_head and b_O_total is not None:
        labels.append("bias.attn")
        rows.append(b_O_total.expand_as(rows[0]))
    return labels, torch.stack(rows, 0)


@dataclass
class ComponentLensResult:
    """Each component's output at ``pos`` read through the final LayerNorm and ``W_U``.

    Attributes:
        labels: ``embed``, ``pos_embed``, ``a{l}.h{h}`` (or ``a{l}``), ``m{l}`` and, for DLA with
            heads split, ``bias.attn`` (the summed ``b_O``), then ``bias.b_U`` (and
            ``bias.ln_final`` outside compatibility mode).
        values: ``[n_components, B, K]`` (or ``[..., V]`` for the full vocabulary).
        token_ids: ``[K]``, ``[B, K]`` or None.
        pos: ``[B]``.
        scale: ``"final"`` (frozen final scale: DLA) or ``"own"``.
    """

    labels: list[str]
    values: Tensor
    token_ids: Tensor | None
    pos: Tensor
    scale: str

    def index(self, label: str) -> int:
        if label not in self.labels:
            raise TutorialError(f"no component {label!r}; components: {self.labels}")
        return self.labels.index(label)

    def get(self, label: str) -> Tensor:
        """``[B, K]`` values of one component."""
        return self.values[self.index(label)]

    def head_grid(self) -> Tensor:
        """``[n_layers, n_heads, B, K]`` the per-head rows arranged by layer and head."""
        heads = [(lab, i) for i, lab in enumerate(self.labels)
                 if lab.startswith("a") and ".h" in lab]
        if not heads:
            raise TutorialError("this result has no per-head rows (computed with per_head=False)")
        L = 1 + max(int(lab[1:].split(".")[0]) for lab, _ in heads)
        H = 1 + max(int(lab.split(".h")[1]) for lab, _ in heads)
        grid = torch.zeros(L, H, *self.values.shape[1:], dtype=self.values.dtype,
                           device=self.values.device)
        for lab, i in heads:
            l, h = int(lab[1:].split(".")[0]), int(lab.split(".h")[1])
            grid[l, h] = self.values[i]
        return grid

    def project(self, weights: Any) -> Tensor:
        """``[n_components, B]``: ``sum_k weights[k] * values[..., k]`` (``weights`` ``[K]`` or
        ``[B, K]``). Exact for any linear function of the logits, e.g. a logit difference."""
        w = torch.as_tensor(weights, dtype=self.values.dtype, device=self.values.device)
        K = self.values.shape[-1]
        if w.shape not in ((K,), (self.values.shape[1], K)):
            raise TutorialError(f"weights must have shape [K={K}] or [B, K] = "
                             f"{list(self.values.shape[1:])}, got {tuple(w.shape)}")
        return (self.values * w).sum(-1)


@dataclass
class DLAResult(ComponentLensResult):
    """Direct logit attribution: :class:`ComponentLensResult` with the final scale frozen and the
    bias rows, so that ``values.sum(0) == logits`` (the model's centred logits of ``token_ids``).

    Extra attributes:
        logits: ``[B, K]`` the model's logits of ``token_ids`` at ``pos`` (centred in
            compatibility mode).
    """

    logits: Tensor = field(default_factory=lambda: torch.zeros(0))

    def total(self) -> Tensor:
        """``[B, K]`` the sum over all rows; equals :attr:`logits` up to float error."""
        return self.values.sum(0)


def _components_projected(model: Any, tokens: Tensor, pos: Any, token_ids: Any, cache: Any,
                          per_head: bool, scale: str, batch_size: int, required_ids: bool,
                          what: str, with_bias: bool):
    _check_model(model, what)
    if scale not in ("own", "final"):
        raise TutorialError(f"scale must be 'own' or 'final', got {scale!r}")
    tokens = check_tokens(model, tokens)
    B, T = tokens.shape
    p = _check_pos(pos, B, T)
    ids = _check_token_ids(model, token_ids, B, required=required_ids)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_comp = 2 + L * ((H if per_head else 1) + 1) + 3
    if ids is None and n_comp * B * model.cfg.d_vocab > MAX_FULL_VOCAB_VALUES:
        raise TutorialError(f"projecting {n_comp} components x {B} examples onto the full vocabulary "
                         f"({model.cfg.d_vocab}) is too large: pass token_ids")
    names = _component_names(model)
    if cache is None:
        check_hook_names(model, names)
    acts = _activations_at(model, tokens, p, names, cache, batch_size)
    labels, stack = _component_stack(model, acts, per_head)          # [C, B, d]
    frozen = acts["ln_final.hook_scale"].reshape(B, 1)
    W_U, b_U, ln_bias = _readout(model, stack.device)
    values = _project(_normalise(stack, model, frozen if scale == "final" else None), W_U, ids,
                      None)
    if with_bias:
        K_shape = values.shape[1:]
        extra = [("bias.b_U", b_U)] + ([("bias.ln_final", ln_bias)] if ln_bias is not None else [])
        for lab, vec in extra:
            if ids is None:
                row = vec.expand(K_shape)
            elif ids.ndim == 1:
                row = vec[ids.to(vec.device)].expand(K_shape)
            else:
                row = vec[ids.to(vec.device)]
            labels.append(lab)
            values = torch.cat([values, row[None]], 0)
    resid = acts[f"blocks.{L - 1}.hook_resid_post"]
    bias_all = b_U if ln_bias is None else b_U + ln_bias
    logits = _project(_normalise(resid, model, frozen), W_U, ids, bias_all)
    return labels, values, ids, p, logits


def component_logit_lens(
    model: Any,
    tokens: Tensor,
    pos: int | Tensor = -1,
    token_ids: Any = None,
    cache: Any = None,
    per_head: bool = True,
    scale: str = "final",
    batch_size: int = 64,
) -> ComponentLensResult:
    """Each component's output at ``pos`` read out as logits (no ``b_U``):
    ``values[c, b] = LN_final(c[b, pos[b]]) @ W_U[:, token_ids]``.

    With ``scale="final"`` (default) each output is centred and divided by the final residual
    stream's frozen scale: these are the direct logit attributions (without bias rows; see
    :func:`direct_logit_attribution`). With ``scale="own"`` each output is normalised by its own
    RMS, as if it alone were the residual stream ("what does this component, on its own,
    predict?"): the magnitudes are then comparable across components but no longer add up.

    Components: ``embed``, ``pos_embed``, each head ``a{l}.h{h}`` (``z @ W_O``, no ``b_O``) and,
    with heads split, ``bias.attn``; or each attention layer ``a{l}`` (``hook_attn_out``, with
    ``b_O``) when ``per_head=False``; each MLP ``m{l}`` (``hook_mlp_out``, with ``b_out``).
    Shapes and other arguments as for :func:`logit_lens`; ``values`` is ``[n_components, B, K]``.
    """
    labels, values, ids, p, _ = _components_projected(
        model, tokens, pos, token_ids, cache, per_head, scale, batch_size, False,
        "component_logit_lens", with_bias=False)
    return ComponentLensResult(labels=labels, values=values, token_ids=ids, pos=p, scale=scale)


def direct_logit_attribution(
    model: Any,
    tokens: Tensor,
    pos: int | Tensor,
    token_ids: Any,
    cache: Any = None,
    per_head: bool = True,
    batch_size: int = 64,
) -> DLAResult:
    """Direct logit attribution of every component to the logits of ``token_ids`` at ``pos``.

    ``values[c, b, k] = (c_b - mean(c_b)) / s_b @ W_U[:, t_k]`` with ``s_b`` the final LayerNorm
    scale of the same run (frozen), plus the rows ``bias.attn`` (summed ``b_O``, heads split
    only) and ``bias.b_U``. Exact decomposition: ``values.sum(0) == logits`` (the model's centred
    logits). A head's DLA is only its *direct* path to the logits: effects through later layers,
    and through the LayerNorm scale, are not counted (Elhage et al. 2021; Wang et al. 2023).

    Args:
        token_ids: ``[K]`` or per-example ``[B, K]`` ids (required), e.g. the year tokens or
            ``TaskDataset.candidate_ids``.
        per_head: one row per head (``a{l}.h{h}``) rather than per attention layer (``a{l}``).
        others as for :func:`logit_lens`.

    Returns:
        a :class:`DLAResult`: ``values`` ``[n_components, B, K]``, ``logits`` ``[B, K]``.
    """
    labels, values, ids, p, logits = _components_projected(
        model, tokens, pos, token_ids, cache, per_head, "final", batch_size, True,
        "direct logit attribution", with_bias=True)
    return DLAResult(labels=labels, values=values, token_ids=ids, pos=p, scale="final",
                     logits=logits)


def logit_diff_attribution(dla: ComponentLensResult, correct_ids: Any, wrong_ids: Any) -> Tensor:
    """``[n_components, B]`` each component's direct contribution to
    ``mean_{c in correct} logit_c - mean_{w in wrong} logit_w``.

    ``correct_ids`` and ``wrong_ids`` are token ids: an int or a list/tuple shared by all examples,
    or a tensor ``[B]`` / ``[B, n]`` giving each example its own ids (e.g. IOI's indirect object
    and subject); each must be among ``dla.token_ids`` for its example.
    Exact: summed over all rows (bias rows included) it equals the model's logit difference.
    """
    ids = dla.token_ids
    if ids is None:
        raise TutorialError("this result covers the full vocabulary; index it directly")
    B, K = dla.values.shape[1], dla.values.shape[2]
    ids_bk = ids if ids.ndim == 2 else ids[None].expand(B, K)

    def weights(sel: Any, name: str) -> Tensor:
        if isinstance(sel, Tensor):                                   # per example
            s = sel.long().cpu()
            s = s[:, None] if s.ndim == 1 else s
            if s.ndim != 2 or s.shape[0] != B:
                raise TutorialError(f"a tensor of {name} gives ids per example: shape [B={B}] or "
                                 f"[B, n], got {tuple(sel.shape)} (use a list for shared ids)")
        else:                                                         # shared by all examples
            s = torch.as_tensor(sel).long().reshape(1, -1).expand(B, -1)
        if s.shape[1] == 0:
            raise TutorialError(f"{name} is empty")
        match = ids_bk[:, None, :] == s[:, :, None]                   # [B, n, K]
        missing = ~match.any(-1)
        if missing.any():
            b, j = missing.nonzero()[0].tolist()
            raise TutorialError(f"{name} id {int(s[b, j])} (example {b}) is not among the "
                             "attribution's token_ids")
        return match.float().sum(1) / s.shape[1]                      # [B, K]

    w = weights(correct_ids, "correct_ids") - weights(wrong_ids, "wrong_ids")
    return dla.project(w)


# --------------------------------------------------------------------------------------------
# Task metrics
# --------------------------------------------------------------------------------------------

@dataclass
class MetricAttribution:
    """Each component's direct contribution to a task's metric direction.

    Attributes:
        labels: component labels (as :class:`DLAResult`).
        values: ``[n_components, B]``.
        target: ``[B]`` what the rows sum to: the metric itself when ``exact``, else the
            linearised score ``g . logits``.
        metric: ``[B]`` the task metric of the clean run.
        exact: True when ``values.sum(0) == metric`` (logit-difference metrics with
            :func:`task_metric_attribution`).
        weights: ``[B, K]`` the direction in candidate-logit space (``K`` candidates), or for a
            linearisation the gradient restricted to the candidates (the rest of the vocabulary
            also enters, through ``-p_j * metric``).
    """

    labels: list[str]
    values: Tensor
    target: Tensor
    metric: Tensor
    exact: bool
    weights: Tensor

    def head_grid(self) -> Tensor:
        """``[n_layers, n_heads, B]``."""
        tmp = ComponentLensResult(self.labels, self.values[..., None], None, torch.zeros(0), "final")
        return tmp.head_grid()[..., 0]


def _metric_setup(model: Any, dataset: Any, cache: Any, per_head: bool, batch_size: int,
                  what: str):
    """Validate, run (or read the cache), and return the normalised component stack
    ``[C, B, d]`` (frozen final scale), the read-out, the full logits ``[B, V]`` at the answer
    positions, and the candidates."""
    _check_model(model, what)
    for key in ("clean_tokens", "answer_pos", "candidate_ids", "candidate_sign", "metric_kind"):
        if not hasattr(dataset, key):
            raise TutorialError(f"dataset must be a TaskDataset (missing {key!r})")
    if dataset.metric_kind not in ("prob_diff", "logit_diff"):
        raise TutorialError(f"unknown metric kind {dataset.metric_kind!r}")
    sign = dataset.candidate_sign.float().cpu()
    ids = dataset.candidate_ids.long().cpu()
    tokens = check_tokens(model, dataset.clean_tokens)
    B, T = tokens.shape
    p = _check_pos(dataset.answer_pos, B, T)
    _check_token_ids(model, ids, B, required=True)
    names = _component_names(model)
    if cache is None:
        check_hook_names(model, names)
    acts = _activations_at(model, tokens, p, names, cache, batch_size)
    labels, stack = _component_stack(model, acts, per_head)
    frozen = acts["ln_final.hook_scale"].reshape(B, 1)
    W_U, b_U, ln_bias = _readout(model, stack.device)
    bias = b_U if ln_bias is None else b_U + ln_bias
    ids, sign = ids.to(stack.device), sign.to(stack.device)
    L = model.cfg.n_layers
    full = _project(_normalise(acts[f"blocks.{L - 1}.hook_resid_post"], model, frozen), W_U, None,
                    bias)                                            # [B, V]
    xn = _normalise(stack, model, frozen)                            # [C, B, d]
    return labels, xn, W_U, b_U, ln_bias, full, ids, sign


def _metric_of(full: Tensor, ids: Tensor, sign: Tensor, kind: str) -> Tensor:
    """The task metric of logits ``[..., B, V]`` -> ``[..., B]`` (as ``TaskDataset.metric``)."""
    scores = full.softmax(-1) if kind == "prob_diff" else full
    idx = ids.expand(*full.shape[:-1], ids.shape[-1])
    return (scores.gather(-1, idx) * sign).sum(-1)


def direct_path_removal(model: Any, dataset: Any, cache: Any = None, per_head: bool = True,
                        batch_size: int = 64, chunk: int = 16) -> MetricAttribution:
    """The exact effect on the task metric of removing each component's *direct* contribution,
    with the final LayerNorm scale frozen::

        values[c, b] = metric(logits_b) - metric(logits_b - DLA_c,b)      (full vocabulary)

    Unlike :func:`task_metric_attribution` this is not a linearisation, so it captures
    saturation (a component whose removal barely moves an already-certain prediction scores
    near 0 even if its DLA is large), but the rows do not sum to anything in general
    (``exact`` is False and ``target`` is the metric). For logit-difference metrics it equals the
    exact DLA rows. It is not an ablation: the component still feeds later layers; only its
    direct path to the logits is removed (Wang et al. 2023 call this "direct effect").
    ``chunk`` components are evaluated at once (memory ``chunk x B x V``).
    """
    if chunk <= 0:
        raise TutorialError(f"chunk must be positive, got {chunk}")
    st = _metric_setup(model, dataset, cache, per_head, batch_size, "direct_path_removal")
    labels, xn, W_U, b_U, ln_bias, full, ids, sign = st
    kind = dataset.metric_kind
    metric = _metric_of(full, ids, sign, kind)
    rows = []
    for s in range(0, xn.shape[0], chunk):
        contrib = xn[s:s + chunk] @ W_U                              # [c, B, V]
        rows.append(metric - _metric_of(full - contrib, ids, sign, kind))
    extra = [("bias.b_U", b_U)] + ([("bias.ln_final", ln_bias)] if ln_bias is not None else [])
    for lab, vec in extra:
        labels = labels + [lab]
        rows.append((metric - _metric_of(full - vec, ids, sign, kind))[None])
    return MetricAttribution(labels=labels, values=torch.cat(rows, 0), target=metric,
                             metric=metric, exact=False, weights=sign)


def task_metric_attribution(model: Any, dataset: Any, cache: Any = None, per_head: bool = True,
                            linearise: bool | None = None, batch_size: int = 64
                            ) -> MetricAttribution:
    """Direct attribution of a :class:`~tutorial_utils.tasks.TaskDataset`'s metric on the clean run.

    * Logit-difference tasks (IOI): ``metric = sum_k sign_k logit_k`` is linear, so the rows are
      the exact decomposition: ``values.sum(0) == metric``.
    * Probability-difference tasks (Greater-Than, agreement), ``PD = sum_k sign_k p_k``. With
      ``linearise=True`` (their default), rows are ``g . DLA_c`` with
      ``g_j = dPD/dlogit_j = p_j (sign_j - PD)`` over the full vocabulary (``sign_j = 0`` off the
      candidates): to first order, removing component ``c``'s direct write changes PD by
      ``-g . DLA_c``. The rows sum to ``g . logits``, not to PD. With ``linearise=False`` the
      direction is the signed mean of candidate logits,
      ``mean_{k correct} logit_k - mean_{k wrong} logit_k`` (for Greater-Than: mean logit of the
      years above YY minus that of the years at or below), an exact decomposition of that logit
      score, which is a proxy for PD, not PD.

    A first-order term understates components when PD is saturated (p close to 0 or 1 makes
    ``g`` small); :func:`direct_path_removal` gives the exact, non-additive effect of removing
    each direct path.
    """
    kind = getattr(dataset, "metric_kind", None)
    if linearise is None:
        linearise = kind == "prob_diff"
    if linearise and kind == "logit_diff":
        raise TutorialError("linearise=True applies to probability-difference metrics; "
                         f"{dataset.name} is a logit_diff task (already exact)")
    st = _metric_setup(model, dataset, cache, per_head, batch_size, "task_metric_attribution")
    labels, xn, W_U, b_U, ln_bias, full, ids, sign = st
    scores = full.softmax(-1) if kind == "prob_diff" else full
    metric = (scores.gather(-1, ids) * sign).sum(-1)
    if linearise:
        s_full = torch.zeros_like(full).scatter_add_(-1, ids, sign)
        g = scores * (s_full - metric[:, None])                      # [B, V]
        w_cand = g.gather(-1, ids)
    elif kind == "prob_diff":
        pos_n = (sign > 0).sum(-1, keepdim=True).clamp(min=1)
        neg_n = (sign < 0).sum(-1, keepdim=True).clamp(min=1)
        w_cand = torch.where(sign > 0, 1.0 / pos_n, torch.where(sign < 0, -1.0 / neg_n, 0.0))
        g = torch.zeros_like(full).scatter_add_(-1, ids, w_cand)
    else:
        w_cand = sign
        g = torch.zeros_like(full).scatter_add_(-1, ids, sign)
    direction = g @ W_U.T                                            # [B, d]
    values = (xn * direction).sum(-1)                                # [C, B]
    labels = labels + ["bias.b_U"]
    values = torch.cat([values, (g * b_U).sum(-1)[None]], 0)
    if ln_bias is not None:
        labels.append("bias.ln_final")
        values = torch.cat([values, (g * ln_bias).sum(-1)[None]], 0)
    target = (g * full).sum(-1)
    exact = kind == "logit_diff"
    return MetricAttribution(labels=labels, values=values, target=target, metric=metric,
                             exact=exact, weights=w_cand)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def plot_logit_lens(result: "LogitLensResult | ComponentLensResult",
                    token_labels: Sequence[str] | None = None, value: str | None = None,
                    example: int | None = None, title: str | None = None, max_ticks: int = 25,
                    mark: float | None = None, rows: Sequence[str] | None = None,
                    ax: Any = None) -> Any:
    """Heatmap of the logit lens: points (rows) x tokens (columns).

    Args:
        result: a :class:`LogitLensResult` (rows are residual-stream points) or a
            :class:`ComponentLensResult` / :class:`DLAResult` (rows are components: "what does
            each component upweight"; only ``value="logit"``).
        token_labels: one label per token column (e.g. ``"00"`` .. ``"99"``).
        value: ``"prob"`` (default for the lens), ``"log_prob"`` or ``"logit"`` (default for
            components).
        example: one example, or None for the mean over the batch (needs shared ``token_ids``).
        mark: draw a dashed vertical line at this column coordinate (e.g. ``YY + 0.5`` to split
            Greater-Than's years into ``<= YY`` and ``> YY``).
        rows: plot only these row labels, in this order.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    is_lens = isinstance(result, LogitLensResult)
    value = value or ("prob" if is_lens else "logit")
    if value not in ("prob", "log_prob", "logit"):
        raise TutorialError(f"value must be prob, log_prob or logit, got {value!r}")
    if not is_lens and value != "logit":
        raise TutorialError("component rows are additive logit contributions: use value='logit'")
    if is_lens:
        data = {"prob": result.probs, "log_prob": result.log_probs,
                "logit": lambda: result.logits}[value]()
    else:
        data = result.values
    if example is None:
        if result.token_ids is not None and result.token_ids.ndim == 2:
            raise TutorialError("per-example token_ids: choose an example to plot")
        mat, who = data.mean(1), f"mean over {data.shape[1]} examples"
    else:
        if not 0 <= example < data.shape[1]:
            raise TutorialError(f"example {example} out of range for a batch of {data.shape[1]}")
        mat, who = data[:, example], f"example {example}"
    row_labels = list(result.labels)
    if rows is not None:
        unknown = [r for r in rows if r not in row_labels]
        if unknown:
            raise TutorialError(f"unknown rows {unknown}; available: {row_labels}")
        mat = mat[[row_labels.index(r) for r in rows]]
        row_labels = list(rows)
    mat = mat.detach().float().cpu().numpy()
    K = mat.shape[1]
    if token_labels is not None and len(token_labels) != K:
        raise TutorialError(f"{len(token_labels)} token labels for {K} tokens")
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(3 + 0.12 * K, 14), 0.3 * len(row_labels) + 1.9))
    else:
        fig = ax.figure
    cmap = "viridis" if value != "logit" else "RdBu_r"
    kw = {}
    if value == "logit":
        m = float(abs(mat).max()) or 1.0
        kw = {"vmin": -m, "vmax": m}
    im = ax.imshow(mat, aspect="auto", cmap=cmap, interpolation="nearest", **kw)
    ax.set_yticks(range(len(row_labels)), row_labels)
    step = max(1, -(-K // max_ticks))
    ticks = list(range(0, K, step))
    if token_labels is not None:
        ax.set_xticks(ticks, [token_labels[i] for i in ticks], rotation=90 if K > 12 else 0)
    ax.set_xlabel("token" + (f" (every {step}th labelled)" if step > 1 else ""))
    ax.set_ylabel("residual stream after" if is_lens else "component")
    if mark is not None:
        ax.axvline(mark, color="white" if value != "logit" else "black", ls="--", lw=1)
    name = {"prob": "probability", "log_prob": "log-probability",
            "logit": "logit (centred)" if is_lens else "direct contribution to logit"}[value]
    fig.colorbar(im, ax=ax, label=name)
    what = f"Logit lens ({result.scale} LN scale)" if is_lens else \
        f"Component logit lens ({result.scale} LN scale)"
    ax.set_title(title or f"{what}: {name}, {who}")
    fig.tight_layout()
    return fig


def plot_dla(values: Any, labels: Sequence[str] | None = None, title: str | None = None,
             value_label: str = "direct logit attribution", shared_scale: bool = True) -> Any:
    """Direct logit attribution figure: a heads x layers heatmap and a bar chart of the other
    components (embeddings, MLPs, biases).

    ``values``: a :class:`MetricAttribution` (averaged over examples), or a tensor ``[C]`` /
    ``[C, B]`` (averaged over B) with ``labels``, e.g. ``logit_diff_attribution(dla, ...)`` with
    ``dla.labels``. Needs per-head rows. ``shared_scale``: one colour/axis range for heads and
    the other components (comparable); False scales the heads on their own (visible even when
    an MLP dominates; the head cells print their values either way on small models). Returns
    the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if isinstance(values, MetricAttribution):
        labels, vals = values.labels, values.values
    else:
        if labels is None:
            raise TutorialError("pass labels (e.g. dla.labels) with a tensor of values")
        vals = torch.as_tensor(values)
    if vals.ndim == 2:
        vals = vals.float().mean(1)
    if vals.ndim != 1 or len(labels) != vals.shape[0]:
        raise TutorialError(f"values must be [n_components] or [n_components, B] matching "
                         f"{len(labels)} labels, got {tuple(vals.shape)}")
    grid = ComponentLensResult(list(labels), vals[:, None, None], None, torch.zeros(0), "final")
    heads = grid.head_grid()[..., 0, 0].cpu().numpy()               # [L, H]
    other = [(lab, float(v)) for lab, v in zip(labels, vals.tolist())
             if not (lab.startswith("a") and ".h" in lab)]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained",
                                   gridspec_kw={"width_ratios": [1, 1.3]})
    m_other = max([abs(v) for _, v in other] + [0.0])
    m_heads = float(abs(heads).max())
    m = (max(m_heads, m_other) if shared_scale else m_heads) or 1.0
    im = ax0.imshow(heads.T, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto")
    if heads.size <= 64:                                             # small models: print values
        for l in range(heads.shape[0]):
            for h in range(heads.shape[1]):
                v = heads[l, h]
                ax0.text(l, h, f"{v:.2g}", ha="center", va="center", fontsize=8,
                         color="white" if abs(v) > 0.6 * m else "black")
    ax0.set_xticks(range(heads.shape[0]), [f"L{l}" for l in range(heads.shape[0])])
    ax0.set_yticks(range(heads.shape[1]), [f"H{h}" for h in range(heads.shape[1])])
    ax0.set_xlabel("layer")
    ax0.set_ylabel("head")
    ax0.set_title("attention heads" + ("" if shared_scale else " (own colour scale)"))
    fig.colorbar(im, ax=ax0, label=value_label)
    names = [lab for lab, _ in other]
    vs = [v for _, v in other]
    ax1.bar(range(len(vs)), vs, color=["tab:red" if v > 0 else "tab:blue" for v in vs])
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set_xticks(range(len(vs)), names, rotation=45, ha="right")
    lo, hi = min(vs + [0.0]), max(vs + [0.0])
    if shared_scale:
        lo, hi = min(lo, -m_heads if (heads < 0).any() else 0.0), max(hi, m_heads)
    pad = 0.05 * (hi - lo or 1.0)
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_xlabel("component")
    ax1.set_ylabel(value_label)
    ax1.set_title("embeddings, MLPs and biases")
    fig.suptitle(title or "Direct logit attribution")
    fig.get_layout_engine().set(wspace=0.12)
    return fig


__all__ = [
    "ComponentLensResult", "DLAResult", "LogitLensResult", "MetricAttribution",
    "component_logit_lens", "direct_logit_attribution", "direct_path_removal",
    "logit_diff_attribution", "logit_lens",
    "plot_dla", "plot_logit_lens", "task_metric_attribution",
]
