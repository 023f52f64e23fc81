"""Evaluate a circuit by edge-level interchange, in one forward pass per batch.

A circuit is a set of edges ``C``. Running the model "with only the circuit" means every edge
*not* in ``C`` carries the value its sender has on the corrupted prompt, while the edges in
``C`` carry the sender's value in the current (patched) run. Since a receiver's input is the
sum of its senders' outputs (plus constant biases), receiver ``r`` gets

    in_r  =  in_r(current)  +  sum_{s -> r not in C} ( out_s(corrupted) - out_s(current) ),

computed on the fly: a corrupted forward stores every ``out_s(corrupted)``, then in the patched
forward each sender hook subtracts ``out_s(current)`` from that store and each receiver hook
adds the masked sum. The full graph gives the clean run, the empty graph the corrupted run
(Conmy et al. 2023 ACDC; Hanna et al. 2024, EAP-IG's evaluation).

Several circuits are evaluated in one forward by stacking them along the batch: ``K`` masks and
``B`` examples give a batch of ``K*B`` sequences.

Faithfulness curves (Hanna et al. 2024, Fig. 2; Miller et al. 2024): the normalised faithfulness
(:func:`tutorial_utils.faithfulness.normalized_faithfulness`) of the top-``n`` circuit as ``n``
grows, for each attribution method's ranking of the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..faithfulness import normalized_faithfulness
from ..tasks.base import TaskDataset
from ._activations import (Metric, as_nd, batches, check_dataset, check_model, default_metric,
                           model_device, receiver_hooks, sender_activations, sender_hooks)
from .graph import Graph


def _as_masks(graph: Graph, in_graph: Tensor | Sequence[Graph] | None) -> Tensor:
    """BoolTensor[K, n_forward, n_backward] of circuits to evaluate."""
    if in_graph is None:
        return graph.in_graph[None].clone()
    if isinstance(in_graph, (list, tuple)):
        return torch.stack([graph._check_mask(g.in_graph if isinstance(g, Graph) else g, "mask")
                            for g in in_graph])
    if in_graph.ndim == 2:
        in_graph = in_graph[None]
    if in_graph.ndim != 3:
        raise ValueError(f"in_graph must be [n_forward, n_backward] or [K, n_forward, n_backward], "
                         f"got {tuple(in_graph.shape)}")
    return torch.stack([graph._check_mask(m, "in_graph") for m in in_graph])


def interchange_logits(model: Any, graph: Graph, clean_tokens: Tensor, corrupted_acts: Tensor,
                       removed: Tensor) -> Tensor:
    """Logits of the edge-interchange forward for ``K`` circuits at once.

    Args:
        clean_tokens: LongTensor[B, T].
        corrupted_acts: FloatTensor[B, T, n_forward, D], the senders on the corrupted prompts.
        removed: FloatTensor[K, n_forward, n_backward], 1 on edges that carry the corrupted value.

    Returns:
        FloatTensor[K*B, T, vocab] (circuit-major: rows ``k*B:(k+1)*B`` are circuit ``k``).
    """
    K = removed.shape[0]
    B, T = clean_tokens.shape
    dev = model_device(model)
    removed = removed.to(dev, torch.float32)
    # diff[k, b, t, s] = out_s(corrupted) - out_s(current run of circuit k)
    diff = corrupted_acts.to(dev)[None].repeat(K, 1, 1, 1, 1)
    hooks = []
    for name, sl, per_head in sender_hooks(graph):
        def s_hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = per_head) -> Tensor:
            diff[:, :, :, sl] -= as_nd(x, per_head).float().reshape(K, B, T, -1, x.shape[-1])
            return x
        hooks.append((name, s_hook))
    for name, sl, n_prior, per_head in receiver_hooks(graph):
        def r_hook(x: Tensor, hook: Any, sl: slice = sl, n_prior: int = n_prior,
                   per_head: bool = per_head) -> Tensor:
            delta = torch.einsum("kbtsd,ksr->kbtrd", diff[:, :, :, :n_prior], removed[:, :n_prior, sl])
            if not per_head:
                delta = delta[:, :, :, 0]
            return x + delta.reshape(x.shape).to(x.dtype)
        hooks.append((name, r_hook))
    tokens = clean_tokens.to(dev).repeat(K, 1)
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


@torch.no_grad()
def evaluate_graph(model: Any, graph: Graph, dataset: TaskDataset,
                   in_graph: Tensor | Sequence[Graph] | None = None, metric: Metric | None = None,
                   batch_size: int = 32, max_sequences: int = 512, progress: bool = False) -> Tensor:
    """Metric of the model restricted to circuits, by edge-level interchange.

    Args:
        graph: the model's :class:`Graph`; its ``in_graph`` is evaluated unless ``in_graph``
            gives circuits: a mask ``[n_forward, n_backward]``, a stack ``[K, ...]`` or a list of
            graphs/masks.
        metric: ``metric(logits, dataset) -> [n]`` for a stack of ``n`` variants of the batch
            (default: the dataset's task metric, mean over examples).
        batch_size: examples per forward; ``max_sequences`` bounds ``K * batch`` per forward.

    Returns:
        FloatTensor[K]: the metric (mean over the dataset) of each circuit.
    """
    check_dataset(dataset)
    check_model(model, graph)
    masks = _as_masks(graph, in_graph)
    metric = metric or default_metric
    removed = (graph.real_edges[None] & ~masks).float()
    K, N = masks.shape[0], len(dataset)
    total = torch.zeros(K)
    bs = min(batch_size, N)
    k_chunk = max(1, max_sequences // bs)
    chunks = [(b, k) for b in batches(N, bs) for k in batches(K, k_chunk)]
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="evaluating circuits")
    corr_cache: dict[int, Tensor] = {}
    for b, k in chunks:
        sub = dataset.subset(b)
        if b.start not in corr_cache:
            corr_cache.clear()
            corr_cache[b.start] = sender_activations(model, graph, sub.corrupted_tokens)
        logits = interchange_logits(model, graph, sub.clean_tokens, corr_cache[b.start], removed[k])
        vals = metric(logits, sub).reshape(-1).float().cpu()
        total[k] += vals * (len(sub) / N)
    return total


def evaluate_baselines(model: Any, dataset: TaskDataset, metric: Metric | None = None,
                       batch_size: int = 32) -> tuple[float, float]:
    """``(metric on clean prompts, metric on corrupted prompts)`` of the unmodified model."""
    check_dataset(dataset)
    metric = metric or default_metric
    dev = model_device(model)
    clean = corrupted = 0.0
    with torch.no_grad():
        for b in batches(len(dataset), batch_size):
            sub = dataset.subset(b)
            w = len(sub) / len(dataset)
            clean += float(metric(model(sub.clean_tokens.to(dev)), sub)) * w
            corrupted += float(metric(model(sub.corrupted_tokens.to(dev)), sub)) * w
    return clean, corrupted


@dataclass
class FaithfulnessCurve:
    """Metric and normalised faithfulness of the top-``n`` circuit of one edge ranking.

    ``n_edges``: LongTensor[P]; ``metric``, ``faithfulness``: FloatTensor[P]; ``clean`` and
    ``corrupted``: the metric of the full model and of the corrupted run; ``total_edges``.
    """

    method: str
    n_edges: Tensor
    metric: Tensor
    faithfulness: Tensor
    clean: float
    corrupted: float
    total_edges: int
    extra: dict[str, Any] = field(default_factory=dict)

    def smallest_reaching(self, target: float) -> int | None:
        """Fewest edges among the measured points whose faithfulness is >= ``target`` (None if
        no point reaches it)."""
        ok = (self.faithfulness >= target).nonzero()
        return None if len(ok) == 0 else int(self.n_edges[ok[0, 0]])


def faithfulness_curve(model: Any, graph: Graph, dataset: TaskDataset, scores: Tensor,
                       n_edges: Sequence[int], method: str = "", absolute: bool = True,
                       prune: bool = False, metric: Metric | None = None,
                       clean_corrupted: tuple[float, float] | None = None,
                       batch_size: int = 32, max_sequences: int = 512,
                       progress: bool = False) -> FaithfulnessCurve:
    """Faithfulness of the top-``n`` edges by ``scores`` (|score| if ``absolute``) for each ``n``.

    All circuits are evaluated stacked along the batch (``max_sequences`` per forward).
    ``prune`` removes dead edges first (which never changes the metric, see
    :func:`tutorial_utils.circuits.selection.prune`); the curve's ``n_edges`` are the edges
    actually kept.
    """
    from .selection import prune as prune_fn, top_n

    n_edges = [int(n) for n in n_edges]
    if not n_edges or min(n_edges) < 0 or max(n_edges) > graph.n_edges:
        raise ValueError(f"n_edges must lie in [0, {graph.n_edges}], got {n_edges[:5]}...")
    masks = []
    for n in n_edges:
        m = top_n(graph, scores, n, absolute=absolute)
        masks.append(prune_fn(graph, m) if prune else m)
    vals = evaluate_graph(model, graph, dataset, torch.stack(masks), metric=metric,
                          batch_size=batch_size, max_sequences=max_sequences, progress=progress)
    if clean_corrupted is None:
        full = graph.real_edges[None]
        empty = torch.zeros_like(full)
        base = evaluate_graph(model, graph, dataset, torch.cat([full, empty]), metric=metric,
                              batch_size=batch_size, max_sequences=max_sequences)
        clean_corrupted = (float(base[0]), float(base[1]))
    clean, corrupted = clean_corrupted
    faith = normalized_faithfulness(vals, torch.tensor(clean), torch.tensor(corrupted))
    kept = torch.tensor([int(m.sum()) for m in masks])
    return FaithfulnessCurve(method, kept, vals, torch.as_tensor(faith).float(),
                             clean, corrupted, graph.n_edges)


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two 1-D score vectors (Pearson correlation of their ranks,
    ties given their average rank)."""
    a, b = a.detach().flatten().double().cpu(), b.detach().flatten().double().cpu()
    if a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"need two score vectors of equal length >= 2, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")

    def ranks(x: Tensor) -> Tensor:
        order = x.argsort()
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=x.dtype)
        # average the ranks of ties
        uniq, inv = torch.unique(x, return_inverse=True)
        sums = torch.zeros(len(uniq), dtype=x.dtype).index_add_(0, inv, r)
        counts = torch.zeros(len(uniq), dtype=x.dtype).index_add_(0, inv, torch.ones_like(r))
        return (sums / counts)[inv]

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb) / denom) if denom > 0 else float("nan")
