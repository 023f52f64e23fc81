"""Turn edge scores into a circuit: top-n, threshold, greedy growth from the logits, pruning.

All functions return a BoolTensor ``[n_forward, n_backward]`` mask (a subset of
``graph.real_edges``) that can be put into a graph with ``graph.with_edges(mask)``.
Ranking uses ``|score|`` by default: an edge whose corruption *raises* the metric matters too
(Hanna et al. 2024 rank by absolute score).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jaxtyping import Bool, Float

from ..errors import TutorialError
from ..graph import Graph

__all__ = ["greedy", "prune", "threshold", "top_n"]


def _check_count(graph: Graph, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= graph.n_edges:
        raise TutorialError(f"n must be an integer in [0, {graph.n_edges}] (the graph's edges), "
                            f"got {n!r}")
    return n


def _key(graph: Graph, scores: Tensor | None, absolute: bool) -> Tensor:
    if not isinstance(graph, Graph):
        raise TutorialError(f"graph must be a Graph, got {type(graph).__name__}")
    if scores is None:
        scores = graph.scores
    if scores is None:
        raise TutorialError("no scores given and the graph has none: run an attribution method first")
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (graph.n_forward, graph.n_backward):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise TutorialError(f"scores must be a tensor of shape "
                            f"{(graph.n_forward, graph.n_backward)}, got {got}")
    scores = scores.detach().cpu().float()
    if not torch.isfinite(scores[graph.real_edges]).all():
        raise TutorialError("scores contain NaN or infinite values")
    key = scores.abs() if absolute else scores
    return key.masked_fill(~graph.real_edges, float("-inf"))


def top_n(graph: Graph, scores: Float[Tensor, "sender receiver"] | None, n: int,
          absolute: bool = True) -> Bool[Tensor, "sender receiver"]:
    """The ``n`` edges with the highest score (|score| if ``absolute``); ties broken by index."""
    _check_count(graph, n)
    key = _key(graph, scores, absolute).flatten()
    mask = torch.zeros_like(key, dtype=torch.bool)
    if n:
        # a stable sort so that equal scores are taken in index order
        order = torch.sort(key, descending=True, stable=True).indices[:n]
        mask[order] = True
    return mask.reshape(graph.n_forward, graph.n_backward)


def threshold(graph: Graph, scores: Float[Tensor, "sender receiver"] | None, tau: float,
              absolute: bool = True) -> Bool[Tensor, "sender receiver"]:
    """Every edge whose score (|score| if ``absolute``) is at least ``tau``."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or tau != tau or \
            abs(tau) == float("inf"):
        raise TutorialError(f"tau must be a finite number (the score threshold), got {tau!r}")
    return (_key(graph, scores, absolute) >= tau) & graph.real_edges


def greedy(graph: Graph, scores: Float[Tensor, "sender receiver"] | None, n: int,
           absolute: bool = True) -> Bool[Tensor, "sender receiver"]:
    """Grow a connected circuit of ``n`` edges backwards from the logits (Hanna et al. 2024).

    Start with the node set {logits}; repeatedly add the highest-scoring edge whose *receiver*
    belongs to a node already in the circuit, and add its sender to the node set. Every edge of
    the result lies on a path to the logits.
    """
    _check_count(graph, n)
    key = _key(graph, scores, absolute)
    recv = graph.receiver_owner()
    active = torch.zeros(graph.n_forward + 1, dtype=torch.bool)
    active[-1] = True
    mask = torch.zeros_like(graph.real_edges)
    for _ in range(n):
        cand = key.masked_fill(mask | ~active[recv][None, :], float("-inf"))
        idx = int(cand.flatten().argmax())
        s, r = divmod(idx, graph.n_backward)
        if cand[s, r] == float("-inf"):
            break  # every reachable edge is already in
        mask[s, r] = True
        active[s] = True
    return mask


def prune(graph: Graph, mask: Bool[Tensor, "sender receiver"] | None = None
          ) -> Bool[Tensor, "sender receiver"]:
    """Drop the edges that cannot matter: those out of nodes with no path from ``embed`` and
    those into nodes with no path to ``logits`` (both along edges of ``mask``).

    Invariant (tested): pruning never changes the evaluated metric. A node without an in-circuit
    path from the embedding reads only corrupted values, so it writes its corrupted output, which is
    what a removed edge carries; a node with no path to the logits cannot affect them.
    """
    mask = graph.in_graph if mask is None else graph.check_mask(mask, "mask")
    # readers[r, node]: the nodes reading receiver r (one node, except a key/value receiver
    # shared by the query heads of a grouped-query-attention group)
    readers = graph.receiver_readers()
    nf = graph.n_forward
    # from the embedding, in forward order (senders of a node all come before it)
    reach = torch.zeros(nf + 1, dtype=torch.bool)
    reach[0] = True
    for node in range(1, nf + 1):
        cols = readers[:, node]
        reach[node] = bool((mask[:, cols] & reach[:nf, None]).any())
    # to the logits, in reverse order
    alive = torch.zeros(nf + 1, dtype=torch.bool)
    alive[nf] = True
    for node in range(nf - 1, -1, -1):
        alive_recv = (readers & alive[None, :]).any(1)
        alive[node] = bool((mask[node] & alive_recv).any())
    alive_recv = (readers & alive[None, :]).any(1)
    reach_recv = (readers & reach[None, :]).any(1)
    return mask & reach[:nf, None] & alive_recv[None, :] & reach_recv[None, :]
