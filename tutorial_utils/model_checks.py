"""Every check of a loaded model: what it is (decoder or encoder, additive writers, soft-capped
logits), and whether an input fits it (tokens, padding, hook names, layers, heads, token ids,
caches, unknown words).

The pure argument checks (numbers, choices, masks, finite tensors) are in
:mod:`tutorial_utils.validation`; loading is :mod:`tutorial_utils.models`, which imports this
module. Every check raises a :class:`~tutorial_utils.errors.TutorialError` that names the
argument, what was expected and the fix, before any forward pass.

**Padding** (:func:`padding_mask`, :func:`forward_attention_mask`). A batch of prompts of
different lengths is padded; the padded positions must neither change the real positions'
numbers nor appear in the results. The rule, the same as
:func:`tutorial_utils.context_mixing.compute_mixing`'s:

* ``attention_mask`` (``[batch, pos]``, 1/True = real token) given: it is used.
* an encoder (BERT family): the padding is where ``tokens == [PAD]``.
* a decoder whose pad id is a token of its own (not its BOS): where ``tokens == pad``.
* a decoder whose pad id *is* its BOS/EOS (GPT-2, the course models): a trailing run of it is
  right padding (harmless for a causal model's real positions; excluded from the results); the
  id anywhere else after position 0 (left padding, or a document separator) cannot be told
  apart, so the batch is refused unless ``attention_mask`` says which tokens are real.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterable

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from .errors import TutorialError
from .names import HOOK_OPTIONS, hook_name
from .validation import check_int, check_int_ids, check_mask

if TYPE_CHECKING:  # the alias lives with the loader; only annotations use it here
    from .models import Model

__all__ = ["UnknownWordWarning", "available_hooks", "check_additive_writers", "check_cache",
           "check_hook_names", "check_head", "check_layer", "check_model",
           "check_no_logit_softcap", "check_real_positions", "check_token_ids", "check_tokens",
           "first_real_positions", "format_token_ids", "forward_attention_mask",
           "has_post_norms", "is_encoder", "padding_mask", "require_decoder",
           "unknown_token_id", "unknown_words"]


# --------------------------------------------------------------------------------------------
# What the model is
# --------------------------------------------------------------------------------------------

def check_model(model: Any, what: str = "this function") -> None:
    """A ``TransformerBridge`` (from :func:`tutorial_utils.models.load_model` or
    ``load_encoder``), else an error saying how to get one."""
    if not (hasattr(model, "cfg") and hasattr(model, "run_with_hooks")):
        raise TutorialError(f"{what} needs a model from tutorial_utils.models.load_model() (or "
                            f"load_encoder()), got {type(model).__name__}")


def is_encoder(model: Model) -> bool:
    """True for a bidirectional (BERT-style) model, False for a causal decoder. Reads
    ``cfg.original_architecture`` and ``cfg.architecture`` (the BERT bridge leaves the first
    as None)."""
    cfg = model.cfg
    arch = " ".join(str(getattr(cfg, key, "") or "")
                    for key in ("original_architecture", "architecture"))
    encoders = ("Bert", "Roberta", "Electra", "Albert", "Deberta", "T5Encoder")
    return any(name in arch for name in encoders) or bool(getattr(cfg, "is_encoder", False))


def require_decoder(model: Model, what: str) -> None:
    """Refuse an encoder: ``what`` needs a causal decoder (next-token prediction)."""
    check_model(model, what)
    if is_encoder(model):
        raise TutorialError(
            f"{what} needs a causal decoder (next-token prediction), but "
            f"{getattr(model, 'tutorial_model_name', 'this model')} is an encoder; "
            "use load_model() rather than load_encoder()")


def _arch(model: Any) -> str:
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
               or type(model).__name__)


def has_post_norms(model: Model) -> bool:
    """True when each attention and MLP output is normalised before it joins the residual
    stream (Gemma 2 and 3: the bridge's blocks carry ``ln1_post``/``ln2_post``)."""
    blocks = getattr(model, "blocks", None) or []
    return any(hasattr(b, "ln1_post") or hasattr(b, "ln2_post") for b in list(blocks)[:1])


def check_additive_writers(model: Model, what: str) -> None:
    """Refuse a model whose heads and MLPs do not add their outputs to the residual stream as
    they are: the residual-stream decompositions (the edge graph, DLA) are not defined there."""
    if has_post_norms(model):
        raise TutorialError(
            f"{what} needs every attention head and MLP to add its output to the residual stream "
            f"as it is; this model ({_arch(model)}) normalises each attention and MLP output "
            "before adding it (post-norms, as in Gemma 2 and 3), so a head's hook_result is not "
            "its contribution and the heads' contributions do not add up. It would need the "
            "post-norm's scale frozen from the run (as DLA does for the final norm) and the "
            "graph's senders moved after it, which is not written. Activation patching and input "
            "attribution run on this model, and the logit lens unless its logits are "
            "soft-capped.")


def check_no_logit_softcap(model: Model, what: str) -> None:
    """Refuse a model whose logits are soft-capped (``cap * tanh(x / cap)``, Gemma 2): the
    read-out from the residual stream is then not the linear ``W_U`` map the method assumes."""
    cap = getattr(getattr(model, "cfg", None), "output_logits_soft_cap", None)
    if cap is not None and float(cap) > 0:
        raise TutorialError(
            f"{what} reads the residual stream through the unembedding as a linear map; this "
            f"model ({_arch(model)}) soft-caps its logits (cap * tanh(logits / cap), cap = "
            f"{float(cap):g}), which is not linear, so the read-out would not equal the model's "
            "logits. Not implemented for soft-capped models.")


# --------------------------------------------------------------------------------------------
# Hooks, layers, heads
# --------------------------------------------------------------------------------------------

def available_hooks(model: Model) -> list[str]:
    """Every hook name the model exposes (after its hook options were set)."""
    return sorted(model.hook_dict.keys())


_GATED = tuple((suffixes, flag) for flag, _, suffixes in HOOK_OPTIONS.values())
_GATED_SUFFIXES = tuple(x for suffixes, _ in _GATED for x in suffixes)


def check_hook_names(model: Model, names: Iterable[str]) -> None:
    """Raise a :class:`TutorialError` naming the first hook ``model`` does not have (or has
    switched off), with close matches and the fix.

    Hook options change what fires: ``blocks.L.attn.hook_result`` needs
    ``set_use_attn_result(True)``, ``hook_q_input`` needs ``set_use_split_qkv_input(True)``,
    ``hook_mlp_in`` needs ``set_use_hook_mlp_in(True)`` (``load_model(hooks=True)`` sets all).
    """
    check_model(model, "check_hook_names")
    have = model.hook_dict
    cfg = getattr(model, "cfg", None)
    for name in names:
        if not isinstance(name, str):
            raise TutorialError(f"hook names must be strings, got {name!r}")
        if name not in have:
            close = difflib.get_close_matches(name, list(have), n=4)
            extra = ""
            if name.endswith(_GATED_SUFFIXES):
                extra = " (this hook needs load_model(..., hooks=True))"
            raise TutorialError(f"model has no hook {name!r}{extra}; close matches: {close}")
        for suffix, flag in _GATED:
            if name.endswith(suffix) and cfg is not None and not getattr(cfg, flag, True):
                if is_encoder(model):
                    raise TutorialError(
                        f"model: hook {name!r} is switched off and cannot be switched on for this "
                        "encoder (TransformerLens has no per-head attention outputs for "
                        "BERT-family models): the edge-level methods (graph, edge/path patching, "
                        "EAP, circuits) run on decoders only; use activation patching on hook_z "
                        "(patching.patch_heads) for an encoder")
                raise TutorialError(
                    f"model: hook {name!r} is switched off ({flag} is False); load the model "
                    "with load_model(..., hooks=True), which turns on per-head results, split "
                    "q/k/v inputs and hook_mlp_in")


def check_layer(model: Model, layer: Any) -> int:
    """Return ``layer`` if it is a valid block index (negative counts from the end)."""
    n = model.cfg.n_layers
    layer = check_int(layer, "layer")
    if not -n <= layer < n:
        raise TutorialError(f"layer {layer} out of range for a model with {n} layers")
    return layer % n


def check_head(model: Model, layer: Any, head: Any) -> tuple[int, int]:
    """Validate a (layer, head) pair; returns it with negative indices resolved."""
    layer = check_layer(model, layer)
    h = model.cfg.n_heads
    head = check_int(head, "head")
    if not -h <= head < h:
        raise TutorialError(f"head {head} out of range for a model with {h} heads per layer")
    return layer, head % h


# --------------------------------------------------------------------------------------------
# Tokens and token ids
# --------------------------------------------------------------------------------------------

def check_tokens(model: Model, tokens: Any, what: str = "tokens") -> Int[Tensor, "batch pos"]:
    """Validate a token batch for ``model``: integer ids ``[batch, seq]`` (a 1-D tensor, array
    or list is one sequence), non-empty, inside the vocabulary, not longer than the context.
    Returns it as a LongTensor ``[batch, seq]`` (on the device it came on)."""
    check_model(model, what)
    if isinstance(tokens, str):
        raise TutorialError(f"{what} must be token ids [batch, seq], got a string: use "
                            f"model.to_tokens({tokens[:30]!r})")
    if not isinstance(tokens, Tensor):
        if isinstance(tokens, (list, tuple)) or type(tokens).__module__.startswith("numpy"):
            try:
                tokens = torch.as_tensor(tokens)
            except (TypeError, ValueError, RuntimeError):
                pass
        if not isinstance(tokens, Tensor):
            raise TutorialError(f"{what} must be a LongTensor [batch, seq], got "
                                f"{type(tokens).__name__} (use model.to_tokens(text) or a "
                                "TaskDataset's clean_tokens)")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TutorialError(f"{what} must be an integer tensor of token ids, got dtype "
                            f"{tokens.dtype} (convert with .long() only if the values really are "
                            "ids; model.to_tokens(text) gives them)")
    if tokens.ndim != 2:
        raise TutorialError(f"{what} must be [batch, seq], got shape {tuple(tokens.shape)}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise TutorialError(f"{what} is empty: shape {tuple(tokens.shape)}; pass at least one "
                            "prompt of at least one token")
    V = model.cfg.d_vocab
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= V:
        raise TutorialError(f"{what} contain ids outside the vocabulary [0, {V}) of the model: min "
                            f"{lo}, max {hi}; were they made by another tokenizer? Use "
                            "model.to_tokens(text)")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and tokens.shape[1] > n_ctx:
        raise TutorialError(f"{what}: sequence length {tokens.shape[1]} exceeds the model's "
                            f"context of {n_ctx} tokens; shorten the prompts")
    return tokens.long()


def check_token_ids(model: Model, token_ids: Any, B: int,
                    required: bool = False) -> Int[Tensor, "*batch k"] | None:
    """``token_ids`` as a LongTensor ``[K]`` (shared) or ``[B, K]`` (per example) on the CPU, or
    None (the full vocabulary; refused when ``required``)."""
    if token_ids is None:
        if required:
            raise TutorialError("token_ids is required here (e.g. the 100 year tokens, or "
                                "TaskDataset.candidate_ids)")
        return None
    ids = check_int_ids(token_ids, "token_ids", model.cfg.d_vocab)
    if ids.ndim == 0:
        ids = ids[None]
    if ids.ndim == 2 and ids.shape[0] != B:
        raise TutorialError(f"per-example token_ids must have shape [batch={B}, K], got "
                            f"{tuple(ids.shape)}")
    if ids.ndim not in (1, 2) or ids.shape[-1] == 0:
        raise TutorialError(f"token_ids must have shape [K] or [batch, K] with K >= 1, got "
                            f"{tuple(ids.shape)}")
    return ids.cpu()


def format_token_ids(model: Model) -> set[int] | None:
    """The ids that open a sequence as part of its format rather than of its text: the
    decoder's BOS, the encoder's ``[CLS]`` (``<s>``); None for a model without a tokenizer
    (unknown: callers then treat position 0 as the format token, the convention of prompts
    made by ``to_tokens``)."""
    tk = getattr(model, "tokenizer", None)
    if tk is None:
        return None
    keys = ("cls_token_id",) if is_encoder(model) else ("bos_token_id",)
    ids = {getattr(tk, k, None) for k in keys}
    if not is_encoder(model) and None in ids:
        ids.add(getattr(tk, "eos_token_id", None))
    return {int(i) for i in ids if i is not None}


# --------------------------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------------------------

def _pad_id(model: Model) -> int | None:
    pad = getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    return None if pad is None else int(pad)


def padding_mask(model: Model, tokens: Int[Tensor, "batch pos"], attention_mask: Any = None,
                 what: str = "tokens") -> Bool[Tensor, "batch pos"] | None:
    """Which tokens are real (True) and which are padding (False), by the rule in the module
    docstring; None when every token is real. ``tokens`` must already be checked.

    Refuses a decoder batch whose pad id (= its BOS) appears after position 0 other than as a
    trailing run, and any row without a real token."""
    B, T = tokens.shape
    if attention_mask is not None:
        mask = check_mask(attention_mask, None, "attention_mask")
        if mask.ndim == 1:
            mask = mask[None]
        if tuple(mask.shape) != (B, T):
            raise TutorialError(f"attention_mask has shape {tuple(mask.shape)}; the tokens are "
                                f"{(B, T)}: they must match (1 = real token, 0 = padding)")
        mask = mask.to(tokens.device)
        if not bool(mask.any(1).all()):
            row = int((~mask.any(1)).nonzero()[0, 0])
            raise TutorialError(f"attention_mask row {row} has no real token (all 0)")
        return None if bool(mask.all()) else mask
    pad = _pad_id(model)
    if pad is None:
        return None
    is_pad = tokens == pad
    if not bool(is_pad.any()):
        return None
    if is_encoder(model) or pad not in (format_token_ids(model) or set()) | {
            getattr(model.tokenizer, "eos_token_id", None)}:
        mask = ~is_pad
        if not bool(mask.any(1).all()):
            row = int((~mask.any(1)).nonzero()[0, 0])
            raise TutorialError(f"{what} row {row} is all padding ([PAD] id {pad})")
        return None if bool(mask.all()) else mask
    # a decoder whose pad id is its BOS/EOS: only a trailing run after position 0 is padding
    pos = torch.arange(T, device=tokens.device)
    real = ~is_pad
    real[:, 0] = True
    last_real = torch.where(real, pos, -1).amax(1)                       # [B]
    inner = is_pad & (pos[None] >= 1) & (pos[None] < last_real[:, None])
    if bool(inner.any()):
        b, t = (int(i) for i in inner.nonzero()[0])
        raise TutorialError(
            f"{what}: row {b} has the pad id {pad} at position {t}, before real tokens (left "
            "padding, or a document separator?). This decoder's pad id is its BOS, so padding "
            "cannot be told apart from a real token: pass attention_mask (1 = real token, 0 = "
            "padding; tokenizer(..., padding=True) returns it), or attention_mask="
            "torch.ones_like(tokens) if every token is real")
    mask = pos[None] <= last_real[:, None]
    return None if bool(mask.all()) else mask


def forward_attention_mask(model: Model, mask: Bool[Tensor, "batch pos"] | None
                           ) -> Int[Tensor, "batch pos"] | None:
    """The ``attention_mask`` the forward pass needs for ``mask`` (from :func:`padding_mask`):
    None when nothing is padded, or when a causal decoder is only right-padded (its real
    positions never attend to later ones, so the run is the unpadded one's: the numbers stay
    bit-identical to an unmasked run); else the 0/1 mask (the bridge then also derives the
    position ids from it, as for left padding)."""
    if mask is None:
        return None
    if not is_encoder(model):
        right_only = bool((mask[:, 1:] <= mask[:, :-1]).all()) and bool(mask[:, 0].all())
        if right_only:
            return None
    return mask.long()


def first_real_positions(mask: Bool[Tensor, "batch pos"] | None, B: int,
                         device: Any = None) -> Int[Tensor, "batch"]:
    """The position of each row's first real token (0 without padding)."""
    if mask is None:
        return torch.zeros(B, dtype=torch.long, device=device)
    return mask.long().argmax(1)


def check_real_positions(mask: Bool[Tensor, "batch pos"] | None, pos: Int[Tensor, "batch"],
                         what: str = "pos") -> None:
    """Refuse a position that falls on padding (e.g. ``pos=-1`` on a right-padded row: use
    each row's last real position, such as ``TaskDataset.answer_pos``)."""
    if mask is None:
        return
    rows = torch.arange(mask.shape[0], device=mask.device)
    on_pad = ~mask[rows, pos.to(mask.device)]
    if bool(on_pad.any()):
        b = int(on_pad.nonzero()[0, 0])
        last = int(mask[b].nonzero().max())
        raise TutorialError(
            f"{what}[{b}] = {int(pos[b])} is a padded position of row {b} (its last real token "
            f"is at {last}): read each row at a real position, e.g. pos=TaskDataset.answer_pos "
            "or the mask's last 1 per row, not pos=-1 on right-padded rows")


# --------------------------------------------------------------------------------------------
# Caches
# --------------------------------------------------------------------------------------------

def check_cache(model: Model, tokens: Int[Tensor, "batch pos"], cache: Any) -> None:
    """A cache must come from a run of *this model* on *these tokens*.

    * a TransformerLens ``ActivationCache`` records its model (``cache.model``): another model's
      cache is refused;
    * a cache that records its tokens (``cache.tokens``) must hold exactly these ids;
    * where the cache holds the token embeddings (``hook_embed``), they are recomputed from this
      model's embedding of ``tokens`` and compared: another model's or other prompts' cache of
      the same shape would otherwise give silently wrong numbers.

    A cache with neither ``cache.tokens`` nor ``hook_embed`` is refused."""
    owner = getattr(cache, "model", None)
    if owner is not None and owner is not model:
        raise TutorialError("cache: it comes from another model (cache.model is not this model); "
                            "run this model's run_with_cache(tokens), or pass cache=None")
    cached = getattr(cache, "tokens", None)
    if isinstance(cached, Tensor):
        if cached.shape != tokens.shape or not torch.equal(cached.cpu(), tokens.cpu()):
            raise TutorialError("cache: its tokens (cache.tokens) are not these tokens: the "
                                "cache must come from a run of this model on these tokens")
    try:
        emb = cache[hook_name("embed")]
    except (KeyError, TypeError):
        emb = None
    if emb is None:
        if isinstance(cached, Tensor):
            return
        raise TutorialError("cache: cannot tell which tokens it came from (it has neither "
                            "cache.tokens nor 'hook_embed'); run model.run_with_cache(tokens) "
                            "without a names_filter, or set cache.tokens = tokens, or pass "
                            "cache=None")
    if tuple(emb.shape[:2]) != tuple(tokens.shape):
        raise TutorialError(f"cache: its batch/seq shape {tuple(emb.shape[:2])} differs from the "
                            f"tokens' {tuple(tokens.shape)}: the cache must come from these tokens")
    if emb.shape[-1] != model.cfg.d_model:
        raise TutorialError(f"cache: its activations have width {emb.shape[-1]}, this model's "
                            f"d_model is {model.cfg.d_model}: the cache comes from another model")
    with torch.no_grad():
        want = model.embed(tokens.to(next(model.parameters()).device))
    want = want.detach().float().to(emb.device)
    got = emb.detach().float()
    tol = 1e-4 * float(want.abs().max().clamp_min(1.0))
    close = ((got - want).abs() <= tol).all(-1)
    if not bool(close.all()):
        b, t = (int(i) for i in (~close).nonzero()[0])
        raise TutorialError(
            f"cache: its token embeddings differ from this model's embedding of these tokens "
            f"(first at example {b}, position {t}, token id {int(tokens[b, t])}): the cache "
            "comes from another model or other tokens; run this model's "
            "run_with_cache(tokens), or pass cache=None")


# --------------------------------------------------------------------------------------------
# Unknown words (word-level vocabularies)
# --------------------------------------------------------------------------------------------

class UnknownWordWarning(UserWarning):
    """Text contained words outside the model's vocabulary; they became the unknown token."""


def unknown_token_id(model: Model) -> int | None:
    """The id text maps to when a word is outside the vocabulary, or None when the tokenizer
    has none that can appear for text (GPT-2's byte-level BPE spells every string; its
    ``unk_token`` is its BOS/EOS)."""
    tk = getattr(model, "tokenizer", None)
    unk = getattr(tk, "unk_token_id", None)
    if unk is None:
        return None
    special = {getattr(tk, k, None) for k in ("eos_token_id", "pad_token_id", "cls_token_id",
                                               "sep_token_id", "mask_token_id")}
    if not is_encoder(model):
        special.add(getattr(tk, "bos_token_id", None))
    return None if unk in special else int(unk)


def unknown_words(model: Model, text: str) -> list[str]:
    """The words of ``text`` that ``model``'s tokenizer maps to its unknown token, in order of
    first appearance (empty when every word is known or the tokenizer spells everything)."""
    unk = unknown_token_id(model)
    if unk is None or not isinstance(text, str):
        return []
    tk = model.tokenizer
    found: list[str] = []
    try:
        enc = tk(text, add_special_tokens=False, return_offsets_mapping=True)
        pairs = zip(enc["input_ids"], enc["offset_mapping"])
        words = [text[s:e].strip() for i, (s, e) in pairs if i == unk]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        words = [w for w in text.split()
                 if unk in tk(" " + w, add_special_tokens=False)["input_ids"]]
    for w in words:
        if w and w not in found:
            found.append(w)
    return found
