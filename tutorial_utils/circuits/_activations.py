"""Hook names of the graph's nodes on a TransformerLens 4 bridge, and the shared plumbing
(running forwards that read every sender and every receiver) used by attribution and evaluation.

Senders (what each forward node writes into the residual stream):
  ``input`` -> ``blocks.0.hook_resid_pre`` [B, T, D]; head ``(l, h)`` ->
  ``blocks.l.attn.hook_result[:, :, h]`` [B, T, H, D]; MLP ``l`` -> ``blocks.l.hook_mlp_out``.
Receivers (what each backward node reads): ``blocks.l.attn.hook_{q,k,v}_input`` [B, T, H, D]
(one residual copy per head, before ``ln1``), ``blocks.l.hook_mlp_in`` (before ``ln2``) and the
last block's ``hook_resid_post`` (before ``ln_final``) for ``logits``.

In compatibility mode the residual stream before any reader equals the sum of the senders
before it plus constant biases (b_O of each attention layer), which is what makes an edge
interchange exact: changing sender ``s``'s contribution to receiver ``r`` is adding
``(new_s - old_s)`` to ``r``'s input.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..hooks import check_hook_names
from ..tasks.base import TaskDataset
from .graph import Graph

Metric = Callable[[Tensor, TaskDataset], Tensor]


def default_metric(logits: Tensor, dataset: TaskDataset) -> Tensor:
    """The dataset's own task metric, averaged over examples (``[n]`` for a stack of n)."""
    return dataset.metric(logits)


def model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def sender_hooks(graph: Graph) -> list[tuple[str, slice, bool]]:
    """``(hook name, forward-index slice, is_per_head)`` for every sender hook, in forward order."""
    H = graph.n_heads
    out = [("blocks.0.hook_resid_pre", slice(0, 1), False)]
    for l in range(graph.n_layers):
        base = 1 + l * (H + 1)
        out.append((f"blocks.{l}.attn.hook_result", slice(base, base + H), True))
        out.append((f"blocks.{l}.hook_mlp_out", slice(base + H, base + H + 1), False))
    return out


def receiver_hooks(graph: Graph) -> list[tuple[str, slice, int, bool]]:
    """``(hook name, backward-index slice, number of senders before it, is_per_head)``."""
    H, L = graph.n_heads, graph.n_layers
    out = []
    for l in range(L):
        base = l * (3 * H + 1)
        n_prior = 1 + l * (H + 1)
        for c, name in enumerate("qkv"):
            out.append((f"blocks.{l}.attn.hook_{name}_input",
                        slice(base + c * H, base + (c + 1) * H), n_prior, True))
        out.append((f"blocks.{l}.hook_mlp_in", slice(base + 3 * H, base + 3 * H + 1),
                    n_prior + H, False))
    out.append((f"blocks.{L - 1}.hook_resid_post", slice(L * (3 * H + 1), L * (3 * H + 1) + 1),
                1 + L * (H + 1), False))
    return out


def check_model(model: Any, graph: Graph) -> None:
    """The model must match the graph's shape and expose every hook the graph needs."""
    if (int(model.cfg.n_layers), int(model.cfg.n_heads)) != (graph.n_layers, graph.n_heads):
        raise ValueError(
            f"graph is for {graph.n_layers} layers x {graph.n_heads} heads, the model has "
            f"{model.cfg.n_layers} x {model.cfg.n_heads}"
        )
    if getattr(model.cfg, "attn_only", False):
        raise ValueError("attention-only models have no MLP nodes; the graph assumes MLPs")
    names = [h[0] for h in sender_hooks(graph)] + [h[0] for h in receiver_hooks(graph)]
    check_hook_names(model, names)


def check_dataset(dataset: TaskDataset) -> None:
    if dataset.clean_tokens.shape != dataset.corrupted_tokens.shape:
        raise ValueError(
            f"clean tokens {tuple(dataset.clean_tokens.shape)} and corrupted tokens "
            f"{tuple(dataset.corrupted_tokens.shape)} differ in shape: edge patching needs "
            "prompt pairs of equal token length"
        )
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")


def as_nd(x: Tensor, per_head: bool) -> Tensor:
    """View a sender/receiver activation as [B, T, n, D] (n = heads or 1)."""
    return x if per_head else x.unsqueeze(2)


@torch.no_grad()
def sender_activations(model: Any, graph: Graph, tokens: Tensor,
                       input_override: Tensor | None = None) -> Tensor:
    """FloatTensor[B, T, n_forward, D]: what every sender writes, in one forward of ``tokens``."""
    B, T = tokens.shape
    out = torch.empty(B, T, graph.n_forward, model.cfg.d_model, device=model_device(model))
    hooks = []
    for name, sl, per_head in sender_hooks(graph):
        def hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = per_head) -> Tensor:
            out[:, :, sl] = as_nd(x, per_head).float()
            return x
        hooks.append((name, hook))
    model.run_with_hooks(tokens.to(out.device), fwd_hooks=hooks)
    return out


def batches(n: int, batch_size: int) -> list[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
