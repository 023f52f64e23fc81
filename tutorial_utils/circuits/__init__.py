"""Edge-level circuit discovery on TransformerLens 4 bridges (the ideas of Hanna et al.'s EAP-IG
library, rebuilt): the computational :class:`~tutorial_utils.graph.Graph`, attribution of every
edge (EAP, EAP-IG, exact patching, node-level), selection (top-n, threshold, greedy, pruning),
evaluation by edge-level interchange with faithfulness curves, and drawing. Every intervention
runs on the one engine :mod:`tutorial_utils.interchange`.

>>> g = Graph.from_model(model)                                   # doctest: +SKIP
>>> attribute(model, g, ds, method="eap-ig", steps=5)             # doctest: +SKIP
>>> g.in_graph = prune(g, top_n(g, None, 200))                     # doctest: +SKIP
>>> evaluate_graph(model, g, ds)                                  # doctest: +SKIP
"""

from ..graph import Graph, count_edges
from ..interchange import baseline_metrics, sender_activations
from ..stats import rank_correlation
from .circuit_evaluation import FaithfulnessCurve, evaluate_graph, faithfulness_curve
from .drawing import draw_circuit
from .edge_attribution import (METHODS, attribute, eap_ig_scores, eap_scores, exact_scores,
                               node_attribution, receiver_gradients)
from .selection import greedy, prune, threshold, top_n

__all__ = [
    "METHODS", "FaithfulnessCurve", "Graph", "attribute", "baseline_metrics", "count_edges",
    "draw_circuit", "eap_ig_scores", "eap_scores", "evaluate_graph", "exact_scores",
    "faithfulness_curve", "greedy", "node_attribution", "prune", "rank_correlation",
    "receiver_gradients", "sender_activations", "threshold", "top_n",
]
