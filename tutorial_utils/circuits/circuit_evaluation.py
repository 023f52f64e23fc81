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
(:func:`tutorial_utils.metrics.normalize`) of the top-``n`` circuit as ``n``
grows, for each attribution method's ranking of the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..graph import Graph
from ..interchange import interchange_logits, metric_of_runs, run_variants
from ..metrics import Metric, normalize
from ..tasks.base import TaskDataset
from ..errors import TutorialError

__all__ = ["FaithfulnessCurve", "evaluate_baselines", "evaluate_graph", "faithfulness_curve",
           "interchange_logits", "rank_correlation"]


def _as_masks(graph: Graph, in_graph: Tensor | Sequence[Graph] | None) -> Tensor:
    """BoolTensor[K, n_forward, n_backward] of circuits to evaluate."""
    if in_graph is None:
        return graph.in_graph[None].clone()
    if isinstance(in_graph, (list, tuple)):
        return torch.stack([graph.check_mask(g.in_graph if isinstance(g, Graph) else g, "mask")
                            for g in in_graph])
    if not isinstance(in_graph, Tensor):
        raise TutorialError(f"in_graph must be a mask tensor, a stack of masks or a list of "
                            f"graphs, got {type(in_graph).__name__}")
    if in_graph.ndim == 2:
        in_graph = in_graph[None]
    if in_graph.ndim != 3:
        raise TutorialError(f"in_graph must be [n_forward, n_backward] or [K, n_forward, "
                            f"n_backward], got {tuple(in_graph.shape)}")
    return torch.stack([graph.check_mask(m, "in_graph") for m in in_graph])


def evaluate_graph(model: Any, graph: Graph, dataset: TaskDataset,
                   in_graph: Tensor | Sequence[Graph] | None = None, metric: Metric | None = None,
                   batch_size: int = 32, max_sequences: int = 512, progress: bool = False,
                   source: str = "corrupted", reference_tokens: Tensor | None = None) -> Tensor:
    """Metric of the model restricted to circuits, by edge-level interchange.

    Every edge *not* in a circuit carries its sender's ``source`` value (default: the corrupted
    run; ``"mean"``/``"zero"`` ablation too), on the one engine
    :func:`tutorial_utils.interchange.run_variants`.

    Args:
        graph: the model's :class:`Graph`; its ``in_graph`` is evaluated unless ``in_graph``
            gives circuits: a mask ``[n_forward, n_backward]``, a stack ``[K, ...]`` or a list of
            graphs/masks.
        metric: ``metric(logits[n*B, ...], dataset) -> [n]`` (default: the task metric).
        batch_size: examples per forward; ``max_sequences`` bounds ``K * batch`` per forward.

    Returns:
        FloatTensor[K]: the metric (mean over the dataset) of each circuit.
    """
    masks = _as_masks(graph, in_graph)
    removed = graph.real_edges[None] & ~masks
    return run_variants(model, graph, dataset, removed, source=source, metric=metric,
                        reference_tokens=reference_tokens, batch_size=batch_size,
                        max_sequences=max_sequences, progress=progress,
                        desc="evaluating circuits")


def evaluate_baselines(model: Any, dataset: TaskDataset, metric: Metric | None = None,
                       batch_size: int = 32) -> tuple[float, float]:
    """``(metric on clean prompts, metric on corrupted prompts)`` of the unmodified model."""
    return metric_of_runs(model, dataset, metric, batch_size)


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
        raise TutorialError(f"n_edges must lie in [0, {graph.n_edges}], got {n_edges[:5]}...")
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
    faith = normalize(vals, torch.tensor(clean), torch.tensor(corrupted))
    kept = torch.tensor([int(m.sum()) for m in masks])
    return FaithfulnessCurve(method, kept, vals, torch.as_tensor(faith).float(),
                             clean, corrupted, graph.n_edges)


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two 1-D score vectors (Pearson correlation of their ranks,
    ties given their average rank)."""
    a, b = a.detach().flatten().double().cpu(), b.detach().flatten().double().cpu()
    if a.shape != b.shape or a.numel() < 2:
        raise TutorialError(f"need two score vectors of equal length >= 2, got {tuple(a.shape)} and "
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
