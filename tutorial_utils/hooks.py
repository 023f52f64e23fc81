"""Small helpers for hook names and model shapes, shared by every method module.

They validate input *before* any forward pass, so a typo in a hook name or an out-of-range
layer fails at once with a message that lists what is valid.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


def available_hooks(model: Any) -> list[str]:
    """Every hook name the model exposes (after its hook options were set)."""
    return sorted(model.hook_dict.keys())


def check_hook_names(model: Any, names: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first hook ``model`` does not have, with close matches.

    Hook options change what exists: ``blocks.L.attn.hook_result`` needs
    ``set_use_attn_result(True)``, ``hook_q_input`` needs ``set_use_split_qkv_input(True)``,
    ``hook_mlp_in`` needs ``set_use_hook_mlp_in(True)`` (``load_model(hooks=True)`` sets all).
    """
    have = model.hook_dict
    for name in names:
        if name not in have:
            import difflib

            close = difflib.get_close_matches(name, list(have), n=4)
            extra = ""
            if name.endswith(("hook_result", "hook_q_input", "hook_k_input", "hook_v_input",
                              "hook_mlp_in")):
                extra = " (this hook needs load_model(..., hooks=True))"
            raise ValueError(f"model has no hook {name!r}{extra}; close matches: {close}")


def check_layer(model: Any, layer: int) -> int:
    """Return ``layer`` if it is a valid block index (negative counts from the end)."""
    n = model.cfg.n_layers
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} out of range for a model with {n} layers")
    return layer % n


def check_head(model: Any, layer: int, head: int) -> tuple[int, int]:
    """Validate a (layer, head) pair; returns it with negative indices resolved."""
    layer = check_layer(model, layer)
    h = model.cfg.n_heads
    if not -h <= head < h:
        raise ValueError(f"head {head} out of range for a model with {h} heads per layer")
    return layer, head % h


def check_same_shape(clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    """Clean and corrupted token batches must have the same shape (same length, same batch)."""
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} "
            "differ in shape: patching needs prompt pairs of equal token length"
        )


def check_tokens(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Validate a token batch for ``model``: an integer tensor ``[batch, seq]`` (a 1-D tensor is
    taken as one sequence), non-empty, ids inside the vocabulary, not longer than the context.
    Returns it as a LongTensor ``[batch, seq]``."""
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"tokens must be a LongTensor [batch, seq], got {type(tokens).__name__} "
                         "(use model.to_tokens(text) or a TaskDataset's clean_tokens)")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
        raise ValueError(f"tokens must be an integer tensor [batch, seq], got {tuple(tokens.shape)} "
                         f"{tokens.dtype}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"tokens is empty: shape {tuple(tokens.shape)}")
    V = model.cfg.d_vocab
    if int(tokens.min()) < 0 or int(tokens.max()) >= V:
        raise ValueError(f"tokens contain ids outside the vocabulary [0, {V}): "
                         f"min {int(tokens.min())}, max {int(tokens.max())}")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and tokens.shape[1] > n_ctx:
        raise ValueError(f"sequence length {tokens.shape[1]} exceeds the model's context {n_ctx}")
    return tokens.long()
