"""Input validation shared by every module (the error type is :mod:`tutorial_utils.errors`).

Every check runs *before* any forward pass, so a mistake fails at once with a
:class:`TutorialError` that names the bad argument, what was expected, and the fix (the model
of einops' messages, which name the offending pattern and shapes).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .errors import TutorialError

__all__ = ["available_hooks", "check_batch_size", "check_hook_names",
           "check_layer", "check_head", "check_same_shape", "check_tokens"]


def check_batch_size(batch_size: Any, what: str = "batch_size") -> int:
    """``batch_size`` must be an integer >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TutorialError(f"{what} must be an integer >= 1 (examples per forward pass), got "
                            f"{batch_size!r}")
    return batch_size


def available_hooks(model: Any) -> list[str]:
    """Every hook name the model exposes (after its hook options were set)."""
    return sorted(model.hook_dict.keys())


_GATED = (("attn.hook_result", "use_attn_result"),
          (("hook_q_input", "hook_k_input", "hook_v_input"), "use_split_qkv_input"),
          ("hook_mlp_in", "use_hook_mlp_in"))


def check_hook_names(model: Any, names: Iterable[str]) -> None:
    """Raise a :class:`TutorialError` naming the first hook ``model`` does not have (or has
    switched off), with close matches and the fix.

    Hook options change what fires: ``blocks.L.attn.hook_result`` needs
    ``set_use_attn_result(True)``, ``hook_q_input`` needs ``set_use_split_qkv_input(True)``,
    ``hook_mlp_in`` needs ``set_use_hook_mlp_in(True)`` (``load_model(hooks=True)`` sets all).
    """
    have = model.hook_dict
    cfg = getattr(model, "cfg", None)
    for name in names:
        if name not in have:
            import difflib

            close = difflib.get_close_matches(name, list(have), n=4)
            extra = ""
            if name.endswith(("hook_result", "hook_q_input", "hook_k_input", "hook_v_input",
                              "hook_mlp_in")):
                extra = " (this hook needs load_model(..., hooks=True))"
            raise TutorialError(f"model has no hook {name!r}{extra}; close matches: {close}")
        for suffix, flag in _GATED:
            if name.endswith(suffix) and cfg is not None and not getattr(cfg, flag, True):
                from .models import is_encoder

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


def check_layer(model: Any, layer: int) -> int:
    """Return ``layer`` if it is a valid block index (negative counts from the end)."""
    n = model.cfg.n_layers
    if not -n <= layer < n:
        raise TutorialError(f"layer {layer} out of range for a model with {n} layers")
    return layer % n


def check_head(model: Any, layer: int, head: int) -> tuple[int, int]:
    """Validate a (layer, head) pair; returns it with negative indices resolved."""
    layer = check_layer(model, layer)
    h = model.cfg.n_heads
    if not -h <= head < h:
        raise TutorialError(f"head {head} out of range for a model with {h} heads per layer")
    return layer, head % h


def check_same_shape(clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    """Clean and corrupted token batches must have the same shape (same length, same batch)."""
    if clean.shape != corrupted.shape:
        raise TutorialError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} "
            "differ in shape: patching needs prompt pairs of equal token length"
        )


def check_tokens(model: Any, tokens: torch.Tensor, what: str = "tokens") -> torch.Tensor:
    """Validate a token batch for ``model``: an integer tensor ``[batch, seq]`` (a 1-D tensor is
    taken as one sequence), non-empty, ids inside the vocabulary, not longer than the context.
    Returns it as a LongTensor ``[batch, seq]``."""
    if not isinstance(tokens, torch.Tensor):
        raise TutorialError(f"{what} must be a LongTensor [batch, seq], got "
                            f"{type(tokens).__name__} (use model.to_tokens(text) or a "
                            "TaskDataset's clean_tokens)")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TutorialError(f"{what} must be an integer tensor of token ids, got dtype {tokens.dtype} "
                            "(convert with .long() only if the values really are ids; "
                            "model.to_tokens(text) gives them)")
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


def _arch(model: Any) -> str:
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
               or type(model).__name__)


def has_post_norms(model: Any) -> bool:
    """True when each attention and MLP output is normalised before it joins the residual
    stream (Gemma 2 and 3: the bridge's blocks carry ``ln1_post``/``ln2_post``)."""
    blocks = getattr(model, "blocks", None) or []
    return any(hasattr(b, "ln1_post") or hasattr(b, "ln2_post") for b in list(blocks)[:1])


def check_additive_writers(model: Any, what: str) -> None:
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


def check_no_logit_softcap(model: Any, what: str) -> None:
    """Refuse a model whose logits are soft-capped (``cap * tanh(x / cap)``, Gemma 2): the
    read-out from the residual stream is then not the linear ``W_U`` map the method assumes."""
    cap = getattr(getattr(model, "cfg", None), "output_logits_soft_cap", None)
    if cap is not None and float(cap) > 0:
        raise TutorialError(
            f"{what} reads the residual stream through the unembedding as a linear map; this "
            f"model ({_arch(model)}) soft-caps its logits (cap * tanh(logits / cap), cap = "
            f"{float(cap):g}), which is not linear, so the read-out would not equal the model's "
            "logits. Not implemented for soft-capped models.")
