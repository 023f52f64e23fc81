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
(:func:`tutorial_utils.tasks.metrics.normalize`) of the top-``n`` circuit as ``n``
grows, for each attribution method's ranking of the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..faithfulness import masks_faithfulness, normalized_faithfulness
from ..graph import Graph
from ..interchange import Ablation, run_variants
from .selection import prune as prune_mask
from .selection import top_n
from ..tasks.base import TaskDataset
from ..tasks.metrics import Metric

__all__ = ["FaithfulnessCurve", "evaluate_graph", "faithfulness_curve"]


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
                   in_graph: Bool[Tensor, "... sender receiver"] | Sequence[Graph] | None = None,
                   metric: Metric | None = None, batch_size: int = 32, max_sequences: int = 512,
                   progress: bool = False, ablation: Ablation = "corrupted",
                   reference_tokens: Int[Tensor, "n pos"] | None = None) -> Float[Tensor, " circuits"]:
    """Metric of the model restricted to circuits, by edge-level interchange: every edge *not*
    in a circuit carries its sender's ablated value (default: the corrupted run; the one
    vocabulary of :mod:`tutorial_utils.interchange`). For the normalised faithfulness use
    :func:`tutorial_utils.faithfulness.circuit_faithfulness`.

    Args:
        graph: the model's :class:`Graph`; its ``in_graph`` is evaluated unless ``in_graph``
            gives circuits: a mask ``[n_forward, n_backward]``, a stack ``[K, ...]`` or a list of
            graphs/masks.
        batch_size: examples per forward; ``max_sequences`` bounds ``K * batch`` per forward.

    Returns:
        FloatTensor[K]: the metric (mean over the dataset) of each circuit.
    """
    masks = _as_masks(graph, in_graph)
    removed = graph.real_edges[None] & ~masks
    return run_variants(model, graph, dataset, removed, ablation=ablation, metric=metric,
                        reference_tokens=reference_tokens, batch_size=batch_size,
                        max_sequences=max_sequences, progress=progress,
                        desc="evaluating circuits")


@dataclass
class FaithfulnessCurve:
    """Metric and normalised faithfulness of the top-``n`` circuit of one edge ranking.

    ``n_edges``: LongTensor[P]; ``metric``, ``faithfulness``: FloatTensor[P]; ``metric_clean``
    and ``metric_empty``: the metric of the full model and of the empty circuit (the corrupted
    run for ``"corrupted"`` ablation); ``total_edges``.
    """

    method: str
    n_edges: Tensor
    metric: Tensor
    faithfulness: Tensor
    metric_clean: float
    metric_empty: float
    total_edges: int
    extra: dict[str, Any] = field(default_factory=dict)

    def smallest_reaching(self, target: float) -> int | None:
        """Fewest edges among the measured points whose faithfulness is >= ``target`` (None if
        no point reaches it)."""
        ok = (self.faithfulness >= target).nonzero()
        return None if len(ok) == 0 else int(self.n_edges[ok[0, 0]])


def faithfulness_curve(model: Any, graph: Graph, dataset: TaskDataset,
                       scores: Float[Tensor, "sender receiver"], n_edges: Sequence[int],
                       method: str = "", absolute: bool = True, prune: bool = False,
                       metric: Metric | None = None, batch_size: int = 32,
                       max_sequences: int = 512, progress: bool = False) -> FaithfulnessCurve:
    """Faithfulness of the top-``n`` edges by ``scores`` (|score| if ``absolute``) for each ``n``
    (Hanna et al. 2024, Fig. 2; Miller et al. 2024), all circuits and the two baselines stacked
    along the batch (:func:`tutorial_utils.faithfulness.masks_faithfulness`). ``prune`` removes
    dead edges first (which never changes the metric, see
    :func:`tutorial_utils.circuits.selection.prune`); the curve's ``n_edges`` are the edges
    actually kept."""
    if isinstance(n_edges, (int, Tensor)) or not isinstance(n_edges, Sequence):
        raise TutorialError(f"n_edges must be a list of circuit sizes, got {n_edges!r}")
    for n in n_edges:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= graph.n_edges:
            raise TutorialError(f"n_edges must be integers in [0, {graph.n_edges}], got {n!r}")
    if not n_edges:
        raise TutorialError("n_edges is empty: give at least one circuit size")
    masks = []
    for n in n_edges:
        m = top_n(graph, scores, n, absolute=absolute)
        masks.append(prune_mask(graph, m) if prune else m)
    vals, clean, empty = masks_faithfulness(model, graph, dataset, torch.stack(masks),
                                            metric=metric, batch_size=batch_size,
                                            max_sequences=max_sequences, progress=progress)
    faith = normalized_faithfulness(vals, torch.tensor(clean), torch.tensor(empty))
    kept = torch.tensor([int(m.sum()) for m in masks])
    return FaithfulnessCurve(method, kept, vals, torch.as_tensor(faith).float(), clean, empty,
                             graph.n_edges)
