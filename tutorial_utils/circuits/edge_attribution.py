"""Score every edge of the graph at once: EAP, EAP-IG, exact edge patching, and node-level EAP.

Let ``M`` be the task metric, ``out_s`` what sender ``s`` writes and ``in_r`` what receiver
``r`` reads. Corrupting the single edge ``s -> r`` changes ``in_r`` by
``Δ_s = out_s(corrupted) - out_s(clean)`` and nothing else upstream of ``r``, so

* **exact** edge patching: ``score(s->r) = M(clean with in_r += Δ_s) - M(clean)``, one forward
  per edge (batched here: many edges stacked along the batch);
* **EAP** (Nanda 2023; Syed, Rager & Conmy 2023), its first-order Taylor expansion around the
  clean run: ``score(s->r) ≈ Δ_s · ∂M/∂in_r``, summed over positions and averaged over
  examples. One clean forward with gradients, one corrupted forward, one backward give every
  edge's score: ``scores = einsum('btsd,btrd->sr', Δ, ∂M/∂in)``.
* **EAP-IG** (Hanna, Pezzelle & Belinkov 2024): the gradient is averaged along the straight
  path from the corrupted to the clean input embeddings (integrated gradients, Sundararajan et
  al. 2017): ``score(s->r) = Δ_s · (1/m) Σ_{k=1..m} ∂M/∂in_r |_{x = x' + (k/m)(x - x')}``.
  With ``m = 1`` it is EAP. It helps where the metric saturates (a softmax probability near
  0 or 1), where the local gradient at the clean point underestimates large effects.

Signs: a negative score means corrupting the edge lowers the metric (the edge helps the task).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..tasks.base import TaskDataset
from ._activations import (Metric, as_nd, batches, check_dataset, check_model, default_metric,
                           model_device, receiver_hooks, sender_activations, sender_hooks)
from .graph import Graph

Method = Literal["eap", "eap-ig", "exact"]
METHODS = ("eap", "eap-ig", "exact")


def _progress(it: Any, on: bool, desc: str) -> Any:
    if not on:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc)


def _receiver_grads(model: Any, graph: Graph, tokens: Tensor, metric_fn: Any,
                    input_override: Tensor | None = None) -> Tensor:
    """FloatTensor[N, T, n_backward, D]: ∂(sum of metric_fn(logits))/∂in_r for every receiver.

    ``input_override`` ([N, T, D]) replaces the input node's output (``hook_resid_pre`` of
    block 0), which is how EAP-IG walks between the corrupted and clean embeddings."""
    N, T = tokens.shape
    held: list[tuple[slice, bool, Tensor]] = []
    hooks = []
    # a leaf that requires grad, so gradients reach every receiver even if the model's
    # parameters are frozen (and with the EAP-IG input override, which has no history)
    def set_input(x: Tensor, hook: Any) -> Tensor:
        x = x if input_override is None else input_override.to(x.dtype)
        return x.detach().requires_grad_(True)
    hooks.append(("blocks.0.hook_resid_pre", set_input))
    for name, sl, _, per_head in receiver_hooks(graph):
        def hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = per_head) -> Tensor:
            # A fresh tensor: the bridge feeds hook_mlp_in's output to ln2 only, but the
            # un-cloned tensor is also the residual stream, whose gradient must not count.
            x = x.clone()
            held.append((sl, per_head, x))
            return x
        hooks.append((name, hook))
    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        value = metric_fn(logits).sum()
        grads = torch.autograd.grad(value, [x for _, _, x in held], allow_unused=True)
    out = torch.zeros(N, T, graph.n_backward, model.cfg.d_model, device=tokens.device)
    for (sl, per_head, x), g in zip(held, grads):
        if g is not None:
            out[:, :, sl] = as_nd(g, per_head).float()
    return out


def _check_common(model: Any, graph: Graph, dataset: TaskDataset, batch_size: int) -> None:
    check_dataset(dataset)
    check_model(model, graph)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def eap_scores(model: Any, graph: Graph, dataset: TaskDataset, metric: Metric | None = None,
               batch_size: int = 16, progress: bool = False) -> Tensor:
    """EAP scores of every edge: FloatTensor[n_forward, n_backward] (0 off the real edges).

    Per batch: a corrupted forward (sender outputs), a clean forward with gradients and one
    backward; ``score = Σ_{b,t} Δ[b,t,s] · ∂M/∂in_r[b,t]`` where ``M`` is the metric averaged
    over the whole dataset.
    """
    return eap_ig_scores(model, graph, dataset, steps=1, metric=metric, batch_size=batch_size,
                         progress=progress, _desc="EAP")


def eap_ig_scores(model: Any, graph: Graph, dataset: TaskDataset, steps: int = 5,
                  metric: Metric | None = None, batch_size: int = 16, progress: bool = False,
                  _desc: str = "EAP-IG") -> Tensor:
    """EAP-IG scores with ``steps`` interpolation points (right Riemann sum, ``k/m``,
    ``k = 1..m``; ``steps=1`` is EAP). The ``m`` interpolated inputs of a batch are stacked
    along the batch into one forward and one backward.

    Returns FloatTensor[n_forward, n_backward].
    """
    _check_common(model, graph, dataset, batch_size)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    metric = metric or default_metric
    dev = model_device(model)
    N = len(dataset)
    scores = torch.zeros(graph.n_forward, graph.n_backward, device=dev)
    for b in _progress(batches(N, batch_size), progress, _desc):
        sub = dataset.subset(b)
        clean_tok, corr_tok = sub.clean_tokens.to(dev), sub.corrupted_tokens.to(dev)
        clean = sender_activations(model, graph, clean_tok)
        corr = sender_activations(model, graph, corr_tok)
        delta = corr - clean
        w = len(sub) / N  # the metric is a mean over the whole dataset
        if steps == 1:
            grads = _receiver_grads(model, graph, clean_tok, lambda lg: metric(lg, sub) * w)
        else:
            alphas = torch.arange(1, steps + 1, device=dev, dtype=torch.float32) / steps
            x0, x1 = corr[:, :, 0], clean[:, :, 0]
            inputs = (x0[None] + alphas[:, None, None, None] * (x1 - x0)[None]).flatten(0, 1)
            tokens = clean_tok.repeat(steps, 1)
            g = _receiver_grads(model, graph, tokens,
                                lambda lg: metric(lg, sub).sum() * w / steps,
                                input_override=inputs)
            grads = g.reshape(steps, len(sub), *g.shape[1:]).sum(0)
        scores += torch.einsum("btsd,btrd->sr", delta, grads)
    scores = scores.cpu().masked_fill(~graph.real_edges, 0.0)
    return scores


@torch.no_grad()
def exact_scores(model: Any, graph: Graph, dataset: TaskDataset, metric: Metric | None = None,
                 edges: Tensor | None = None, batch_size: int = 32, max_sequences: int = 512,
                 progress: bool = False) -> Tensor:
    """Exact edge patching: ``M(edge s->r corrupted alone) - M(clean)`` for every edge.

    Each variant is the clean forward with ``in_r += Δ_s`` (``Δ_s`` from a clean and a corrupted
    forward); ``max_sequences // batch`` edges are stacked along the batch per forward.

    Args:
        edges: optional BoolTensor mask restricting which edges to patch (others get 0).

    Returns FloatTensor[n_forward, n_backward].
    """
    _check_common(model, graph, dataset, batch_size)
    metric = metric or default_metric
    todo = graph.real_edges if edges is None else graph._check_mask(edges, "edges")
    pairs = todo.nonzero()  # [E, 2] (sender, receiver)
    dev = model_device(model)
    N = len(dataset)
    scores = torch.zeros(graph.n_forward, graph.n_backward)
    recv_hooks = receiver_hooks(graph)
    work = []
    for b in batches(N, batch_size):
        per = max(1, max_sequences // (b.stop - b.start))
        work += [(b, e) for e in batches(len(pairs), per)]
    cache: dict[int, tuple[Tensor, float]] = {}
    for b, e in _progress(work, progress, "exact edge patching"):
        sub = dataset.subset(b)
        B = len(sub)
        clean_tok = sub.clean_tokens.to(dev)
        if b.start not in cache:
            cache.clear()
            clean = sender_activations(model, graph, clean_tok)
            corr = sender_activations(model, graph, sub.corrupted_tokens.to(dev))
            base = float(metric(model(clean_tok), sub))
            cache[b.start] = ((corr - clean).permute(2, 0, 1, 3).contiguous(), base)
        delta, base = cache[b.start]  # delta: [S, B, T, D]
        chunk = pairs[e]
        K = len(chunk)
        hooks = []
        for name, sl, _, per_head in recv_hooks:
            sel = ((chunk[:, 1] >= sl.start) & (chunk[:, 1] < sl.stop)).nonzero()[:, 0]
            if len(sel) == 0:
                continue
            k_idx = sel.to(dev)
            s_idx = chunk[sel, 0].to(dev)
            h_idx = (chunk[sel, 1] - sl.start).to(dev)

            def hook(x: Tensor, hook: Any, k_idx: Tensor = k_idx, s_idx: Tensor = s_idx,
                     h_idx: Tensor = h_idx, per_head: bool = per_head) -> Tensor:
                x = x.clone()
                x5 = as_nd(x, per_head).view(K, B, *as_nd(x, per_head).shape[1:])
                x5[k_idx, :, :, h_idx] += delta[s_idx].to(x.dtype)
                return x
            hooks.append((name, hook))
        logits = model.run_with_hooks(clean_tok.repeat(K, 1), fwd_hooks=hooks)
        vals = metric(logits, sub).reshape(K).float().cpu()
        scores[chunk[:, 0], chunk[:, 1]] += (vals - base) * (B / N)
    return scores


def attribute(model: Any, graph: Graph, dataset: TaskDataset, method: Method = "eap-ig",
              steps: int = 5, metric: Metric | None = None, batch_size: int = 16,
              progress: bool = False) -> Tensor:
    """Score every edge with ``method`` (``eap``, ``eap-ig`` or ``exact``), store the scores in
    ``graph.scores`` (and the method in ``graph.meta``) and return them."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; valid: {METHODS}")
    if method == "eap":
        s = eap_scores(model, graph, dataset, metric, batch_size, progress)
    elif method == "eap-ig":
        s = eap_ig_scores(model, graph, dataset, steps, metric, batch_size, progress)
    else:
        s = exact_scores(model, graph, dataset, metric, batch_size=batch_size, progress=progress)
    graph.scores = s
    graph.meta["method"] = method if method != "eap-ig" else f"eap-ig (steps={steps})"
    graph.meta["task"] = dataset.name
    return s


def node_attribution(model: Any, graph: Graph, dataset: TaskDataset,
                     metric: Metric | None = None, batch_size: int = 16) -> Tensor:
    """Node-level attribution patching: ``score(s) = Σ_{b,t} Δ_s · ∂M/∂out_s`` for every sender
    (input, heads, MLPs), the coarse view before edges.

    Because the residual stream is a sum, ``∂M/∂out_s = Σ_{r after s} ∂M/∂in_r``, so this equals
    the row sums of the EAP edge scores (tested). Returns FloatTensor[n_forward].
    """
    _check_common(model, graph, dataset, batch_size)
    metric = metric or default_metric
    dev = model_device(model)
    N = len(dataset)
    out = torch.zeros(graph.n_forward, device=dev)
    for b in batches(N, batch_size):
        sub = dataset.subset(b)
        clean_tok = sub.clean_tokens.to(dev)
        corr = sender_activations(model, graph, sub.corrupted_tokens.to(dev))
        held: list[tuple[slice, bool, Tensor]] = []
        hooks = []
        for name, sl, per_head in sender_hooks(graph):
            def hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = per_head) -> Tensor:
                held.append((sl, per_head, x))
                return x
            hooks.append((name, hook))
        with torch.enable_grad():
            logits = model.run_with_hooks(clean_tok, fwd_hooks=hooks)
            value = metric(logits, sub) * (len(sub) / N)
            grads = torch.autograd.grad(value, [x for _, _, x in held], allow_unused=True)
        for (sl, per_head, x), g in zip(held, grads):
            if g is None:
                continue
            d = corr[:, :, sl] - as_nd(x.detach(), per_head).float()
            out[sl] += (d * as_nd(g, per_head).float()).sum(dim=(0, 1, 3))
    return out.cpu()
