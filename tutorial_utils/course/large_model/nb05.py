"""Notebook 05\'s section on a published model: EAP, EAP-IG and faithfulness curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ...circuits import (Graph, eap_ig_scores, eap_scores, faithfulness_curve,
                         rank_correlation)
from ...tasks import make_greater_than
from .common import check_positive, gpu_hint, model_label, model_shape, published_lines

@dataclass
class EdgeAttributionSection:
    """Notebook 05 on a large model, Greater-Than: EAP and EAP-IG scores of every edge of the
    graph (``scores[method] [n_forward, n_backward]``) and the faithfulness of the top-``n``
    edges of each (``faithfulness[method] [len(n_edges)]``)."""

    model: str
    shape: str
    n_examples: int
    n_nodes: int
    n_edges_total: int
    metric_clean: float
    metric_corrupted: float
    scores: dict[str, Tensor]
    n_edges: list[int]
    faithfulness: dict[str, Tensor]
    top_edges: list[tuple[str, float]]
    rank_correlation: float

    def summary(self) -> str:
        lines = [
            f"Notebook 05 on {self.model} ({self.shape}): {self.n_nodes} nodes, "
            f"{self.n_edges_total:,} edges; Greater-Than, {self.n_examples} prompts",
            f"  probability difference: clean {self.metric_clean:.3f}, corrupted "
            f"{self.metric_corrupted:.3f}",
            "  top EAP-IG edges: " + ", ".join(f"{e} {s:+.4f}" for e, s in self.top_edges),
            f"  Spearman(EAP, EAP-IG) over all edges: {self.rank_correlation:.2f}",
            "  faithfulness of the top-n edges (0 edges: 0, all edges: 1, by definition):",
            "    edges " + "".join(f"{n:>8d}" for n in self.n_edges),
        ]
        for m, f in self.faithfulness.items():
            lines.append(f"    {m:<6}" + "".join(f"{float(x):>8.2f}" for x in f))
        lines += [published_lines("greater_than", "greater_than_circuit"),
                  gpu_hint("05", "n_examples=64, ig_steps=10, "
                                  "n_edges=[30, 100, 300, 1000, 3000, 10000]")]
        return "\n".join(lines)


def _edge_grid(total: int) -> list[int]:
    """Circuit sizes whose faithfulness the section measures by default (each point is one
    stacked interchange run, the section's main cost; 0 edges and all of them give 0 and 1 by
    definition, so they are not run)."""
    return [n for n in (100, 300, 1000, 3000) if n < total] or [total // 2]


def section_05(model: Any, *, n_examples: int = 8, ig_steps: int = 5, batch_size: int = 8,
               n_edges: list[int] | None = None, seed: int = 0, verbose: bool = True
               ) -> EdgeAttributionSection:
    """Notebook 05's edge attribution on Greater-Than: :class:`~tutorial_utils.graph.Graph`
    from the model (GPT-2 small: 32,491 edges), :func:`~tutorial_utils.circuits.eap_scores`,
    :func:`~tutorial_utils.circuits.eap_ig_scores` and a
    :func:`~tutorial_utils.circuits.faithfulness_curve` for each at the circuit sizes
    ``n_edges`` (default 100, 300, 1,000 and 3,000 edges). Needs ``hooks=True``."""

    check_positive(n_examples=n_examples, ig_steps=ig_steps, batch_size=batch_size)
    graph = Graph.from_model(model)
    ds = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    scores = {"EAP": eap_scores(model, graph, ds, batch_size=batch_size).float().cpu(),
              "EAP-IG": eap_ig_scores(model, graph, ds, steps=ig_steps,
                                      batch_size=batch_size).float().cpu()}
    grid = _edge_grid(graph.n_edges) if n_edges is None else [int(n) for n in n_edges]
    faith = {}
    for m, s in scores.items():
        c = faithfulness_curve(model, graph, ds, s, grid, method=m, batch_size=batch_size)
        faith[m] = c.faithfulness.float().cpu()
    clean, corrupted = c.metric_clean, c.metric_empty  # the empty circuit is the corrupted run
    real = graph.real_edges
    graph.scores = scores["EAP-IG"]
    top = [(name, float(s)) for name, s in graph.top_edges(5)]
    res = EdgeAttributionSection(
        model_label(model), model_shape(model), n_examples, graph.n_nodes, graph.n_edges, float(clean),
        float(corrupted), scores, grid, faith, top,
        float(rank_correlation(scores["EAP"][real], scores["EAP-IG"][real])))
    if verbose:
        print(res.summary())
    return res
