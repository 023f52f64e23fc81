"""Pruning an attribution graph by influence on the logits (Ameisen et al. 2025, appendix
"graph pruning"; circuit-tracer's ``prune_graph``).

With ``N`` the adjacency's absolute values normalised so that each target's incoming weights
sum to 1 (``N[t, s] = |A[t, s]| / sum_u |A[t, u]|``), the **influence** of every node on the
logits sums the normalised weights of every path from it to a logit node:

    influence = w^T (N + N^2 + N^3 + ...) = w^T ((I - N)^-1 - I),

with ``w`` the logit nodes' weights (default their probabilities, normalised to sum to 1).
Nodes: the features whose influence makes up ``node_threshold`` of the features' total
(largest first) are kept; error, embedding and logit nodes are always kept. Edges: on the kept
nodes, an edge's score is ``N[t, s]`` times the influence of ``t`` plus ``t``'s own weight; the
highest-scoring edges making up ``edge_threshold`` of the total are kept. Nodes left without a
path to a logit are then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..errors import TutorialError
from ..names import mlp_name
from .attribution import AttributionGraph

__all__ = ["PrunedGraph", "influence", "influence_flow", "layer_influence",
           "normalized_adjacency", "prune_graph"]


def normalized_adjacency(adjacency: Float[Tensor, "nodes nodes"]) -> Float[Tensor, "nodes nodes"]:
    """``|A|`` with each row (a target's incoming edges) divided by its sum (rows without
    edges stay zero)."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-12)


def _logit_weights(graph: AttributionGraph, weights: Tensor | None) -> Tensor:
    if weights is None:
        p = graph.logit_probs.nan_to_num(0.0)
        weights = p / p.sum()
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.shape != (graph.n_logits,):
        raise TutorialError(f"logit_weights must have one entry per logit node "
                            f"({graph.n_logits}: {graph.logit_names}), got {tuple(weights.shape)}")
    if (weights < 0).any() or float(weights.sum()) <= 0:
        raise TutorialError("logit_weights must be non-negative and not all zero")
    return weights / weights.sum()


def influence(graph: AttributionGraph, logit_weights: Float[Tensor, "logits"] | None = None,
              adjacency: Float[Tensor, "nodes nodes"] | None = None) -> Float[Tensor, "nodes"]:
    """Every node's influence on the weighted logit nodes (module docstring); logit nodes
    get 0 (their own weight is not counted)."""
    N = normalized_adjacency(graph.adjacency if adjacency is None else adjacency)
    w = torch.zeros(graph.n_nodes)
    w[graph.slices()["logit"]] = _logit_weights(graph, logit_weights)
    total = torch.zeros(graph.n_nodes)
    v = w
    for _ in range(graph.n_layers + 2):          # longest path: embed -> m0 -> ... -> logits
        v = v @ N
        total = total + v
    return total


@dataclass
class PrunedGraph:
    """Masks over the graph's nodes ``[n_nodes]`` and edges ``[n_nodes, n_nodes]`` (target,
    source), and the influences used."""

    node_mask: Tensor
    edge_mask: Tensor
    node_influence: Tensor
    node_threshold: float
    edge_threshold: float

    @property
    def n_nodes(self) -> int:
        return int(self.node_mask.sum())

    @property
    def n_edges(self) -> int:
        return int(self.edge_mask.sum())


def _keep_share(scores: Tensor, share: float) -> Tensor:
    """Mask of the largest ``scores`` whose sum first reaches ``share`` of the total."""
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    order = scores.argsort(descending=True)
    cum = scores[order].cumsum(0)
    total = float(cum[-1])
    n = int((cum < share * total).sum()) + 1 if total > 0 else 0
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[order[:n]] = True
    return mask


def prune_graph(graph: AttributionGraph, node_threshold: float = 0.8,
                edge_threshold: float = 0.98,
                logit_weights: Float[Tensor, "logits"] | None = None) -> PrunedGraph:
    """Keep the features carrying ``node_threshold`` of the influence and the edges carrying
    ``edge_threshold`` of it (module docstring)."""
    for name, v in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 < float(v) <= 1.0:
            raise TutorialError(f"{name} must be in (0, 1], got {v!r}")
    s = graph.slices()
    infl = influence(graph, logit_weights)
    node_mask = torch.ones(graph.n_nodes, dtype=torch.bool)
    node_mask[s["feature"]] = _keep_share(infl[s["feature"]], node_threshold)
    A = graph.adjacency * node_mask[:, None] * node_mask[None, :]
    N = normalized_adjacency(A)
    w = torch.zeros(graph.n_nodes)
    w[s["logit"]] = _logit_weights(graph, logit_weights)
    infl2 = influence(graph, logit_weights, adjacency=A)
    score = N * (infl2 + w)[:, None]
    flat = _keep_share(score.flatten(), edge_threshold).reshape(score.shape)
    edge_mask = flat & (A != 0)
    # drop nodes that no longer reach a logit (logits always stay)
    reach = w > 0
    reach[s["logit"]] = True
    for _ in range(graph.n_layers + 2):
        reach = reach | (edge_mask & reach[:, None]).any(0)
    node_mask = node_mask & reach
    edge_mask = edge_mask & node_mask[:, None] & node_mask[None, :]
    return PrunedGraph(node_mask, edge_mask, infl, node_threshold, edge_threshold)


def layer_influence(graph: AttributionGraph, logit_weights: Float[Tensor, "logits"] | None = None
                    ) -> dict[str, float]:
    """Influence on the logits summed by node group: ``embed``, ``m{l} features``,
    ``m{l} errors`` (which layers carry the effect)."""
    infl = influence(graph, logit_weights)
    s = graph.slices()
    out = {"embed": float(infl[s["embed"]].sum())}
    f_inf, e_inf = infl[s["feature"]], infl[s["error"]]
    for l in range(graph.n_layers):
        out[f"{mlp_name(l)} features"] = float(f_inf[graph.features[:, 0] == l].sum())
        out[f"{mlp_name(l)} errors"] = float(e_inf[graph.errors[:, 0] == l].sum())
    return out


def influence_flow(graph: AttributionGraph, logit_weights: Float[Tensor, "logits"] | None = None,
                   edge_mask: Bool[Tensor, "nodes nodes"] | None = None) -> dict[tuple[str, str], float]:
    """The share of the logits' influence carried by the edges between node groups: for each
    edge, ``N[t, s] * (influence(t) + w_t)`` (what flows from ``s`` into ``t`` on the way to
    the logits), summed by (source group, target group) with groups ``emb``, ``m{l}``,
    ``err{l}``, ``logits`` and ``(x)`` appended when the edge crosses positions (it went
    through attention), as shares of the total flow over all edges (they sum to 1)."""
    N = normalized_adjacency(graph.adjacency)
    w = torch.zeros(graph.n_nodes)
    s = graph.slices()
    w[s["logit"]] = _logit_weights(graph, logit_weights)
    flow = N * (influence(graph, logit_weights) + w)[:, None]
    if edge_mask is not None:
        flow = flow * edge_mask
    layer, pos = graph.node_layer(), graph.node_pos()
    kinds = [graph.node_kind(i) for i in range(graph.n_nodes)]

    def group(i: int) -> str:
        k = kinds[i]
        if k == "feature":
            return mlp_name(int(layer[i]))
        return f"err{int(layer[i])}" if k == "error" else {"embed": "emb", "logit": "logits"}[k]
    out: dict[tuple[str, str], float] = {}
    t_idx, s_idx = flow.nonzero(as_tuple=True)
    total = float(flow.sum()) or 1.0
    for t, src, v in zip(t_idx.tolist(), s_idx.tolist(), flow[t_idx, s_idx].tolist()):
        cross = " (x)" if pos[t] != pos[src] else ""
        key = (group(src) + cross, group(t))
        out[key] = out.get(key, 0.0) + v / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
