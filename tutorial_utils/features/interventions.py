"""Checking an attribution graph by intervening on features (Ameisen et al. 2025, section 3.4,
"validating with interventions").

Scaling feature ``s`` (layer ``l``, position ``p``) by ``c`` adds ``(c - 1) a_s W_dec,s`` to
layer ``l``'s MLP output at ``p``. Four numbers per intervention and target, from the most
idealised to the real model:

1. ``graph``: the graph's first-order prediction. With ``r_s = c - 1`` the relative change of the
   source, every active feature downstream moves with its input (slope 1, active features stay
   active) and every target moves by its edges:
   ``r_t = (sum_u A[t, u] r_u) / a_t`` for features, ``delta_v = sum_u A[v, u] r_u`` for logits;
2. ``frozen``: the local replacement model run for real: attention patterns and LayerNorm
   denominators frozen, error nodes fixed, transcoders' nonlinearities on (features may switch
   off or on);
3. ``replacement``: attention and normalisation recomputed, error nodes still fixed at their
   values on the prompt (circuit-tracer's way of intervening);
4. ``model``: the real model, everything recomputed (its MLPs, not transcoders, downstream).

Where 1 and 2 differ, features crossed their thresholds; 2 vs 3, frozen attention and
normalisation; 3 vs 4, the transcoders' errors (which the graph treats as fixed inputs).

To tell which frozen quantity matters, ``check_interventions(..., freeze_parts=True)`` adds
three stages between 2 and 3, each with errors fixed and *one* group frozen at its value on the
prompt, the rest recomputed: ``attention frozen`` (patterns), ``norms frozen`` (every
LayerNorm denominator) and ``final norm frozen`` (``ln_f``'s denominator only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import TutorialError
from ..interchange import stacked_forward
from ..names import hook_name
from .attribution import AttributionGraph
from .replacement import FeatureEdit, ReplacementModel
from .unfolded import FrozenState

__all__ = ["PARTIAL_STAGES", "STAGES", "InterventionCheck", "check_interventions", "graph_prediction", "model_deltas",
           "summarize_checks"]

STAGES = ("graph", "frozen", "replacement", "model")
#: The partly frozen stages of ``freeze_parts=True`` (module docstring).
PARTIAL_STAGES = ("attention frozen", "norms frozen", "final norm frozen")


def _feature_nodes(graph: AttributionGraph, nodes: Sequence[int]) -> Tensor:
    nodes = torch.as_tensor(list(nodes), dtype=torch.long)
    if nodes.numel() == 0:
        raise TutorialError("give at least one feature node to intervene on")
    bad = [int(n) for n in nodes if not 0 <= int(n) < graph.n_features]
    if bad:
        raise TutorialError(f"nodes {bad[:5]} are not feature nodes (feature nodes are 0.."
                            f"{graph.n_features - 1}; see graph.node_name)")
    return nodes


def graph_prediction(graph: AttributionGraph, nodes: Sequence[int], scale: float
                     ) -> Float[Tensor, "interventions logits"]:
    """Stage 1 for each node separately: the predicted change of every logit node when that
    feature is scaled by ``scale`` (module docstring)."""
    nodes = _feature_nodes(graph, nodes)
    n_f = graph.n_features
    s = graph.slices()
    A_ff = graph.adjacency[:n_f, :n_f]
    A_lf = graph.adjacency[s["logit"], :n_f]
    a = graph.activations
    K = nodes.numel()
    r0 = torch.zeros(K, n_f)
    r0[torch.arange(K), nodes] = scale - 1.0
    r = r0.clone()
    for _ in range(graph.n_layers):               # features only read earlier layers: a DAG
        r = r0 + (r @ A_ff.T) / a
        r[torch.arange(K), nodes] = scale - 1.0
    return r @ A_lf.T


def _edits(graph: AttributionGraph, nodes: Tensor, scale: float, K: int) -> list[FeatureEdit]:
    out = []
    for k, n in enumerate(nodes.tolist()):
        l, p, f = graph.features[n].tolist()
        out.append(FeatureEdit(layer=l, pos=p, feature=f, scale=scale,
                               rows=torch.tensor([k])))
    return out


def _targets(graph: AttributionGraph, logits: Tensor) -> Tensor:
    last = logits[:, -1]
    return (last - last.mean(-1, keepdim=True)) @ graph.logit_weights.T


@torch.no_grad()
def model_deltas(model: Any, graph: AttributionGraph, nodes: Sequence[int], scale: float,
                 rm: ReplacementModel | None = None) -> Float[Tensor, "interventions logits"]:
    """Stage 4: the change of every logit node in the real model when each feature is scaled,
    one stacked forward. ``model`` is the course's ``TransformerBridge`` (the intervention adds
    ``(scale - 1) a W_dec`` at ``hook_mlp_out``; its centred residual stream is read through
    LayerNorm, so adding the uncentred vector is the same intervention) or the
    :class:`~tutorial_utils.features.unfolded.UnfoldedGPT2` of ``rm``."""
    nodes = _feature_nodes(graph, nodes)
    if rm is None:
        raise TutorialError("model_deltas needs the replacement model (rm) for the decoders")
    K, T = nodes.numel(), graph.n_tokens
    toks = graph.tokens[None].repeat(K + 1, 1)
    delta = torch.zeros(graph.n_layers, K + 1, T, rm.lm.w.d_model)
    for k, n in enumerate(nodes.tolist()):
        l, p, f = graph.features[n].tolist()
        delta[l, k, p] = (scale - 1.0) * graph.activations[n] * rm.transcoders[l].W_dec[:, f]
    if hasattr(model, "run_with_hooks"):
        dev = next(model.parameters()).device
        hooks = [(hook_name("mlp_out", l), lambda x, hook, l=l: x + delta[l].to(dev))
                 for l in range(graph.n_layers) if delta[l].any()]
        logits = stacked_forward(model, toks, 1, hooks).float().cpu()
    else:
        logits = model.run(toks, mlp_override=lambda l, m_in, m_out: m_out + delta[l]).logits
    t = _targets(graph, logits)
    return t[:K] - t[K:]


@dataclass
class InterventionCheck:
    """For ``nodes`` (feature node ids) scaled by ``scale``: the change of every logit node
    ``[K, n_logits]`` at each stage (module docstring)."""

    nodes: list[int]
    names: list[str]
    scale: float
    deltas: dict[str, Tensor]


@torch.no_grad()
def check_interventions(graph: AttributionGraph, rm: ReplacementModel, model: Any,
                        nodes: Sequence[int], scale: float = 0.0,
                        freeze_parts: bool = False) -> InterventionCheck:
    """All four stages for each node in ``nodes`` (each intervened on alone), stacked along the
    batch: one forward per stage. ``model``: the course bridge or an ``UnfoldedGPT2``.
    ``freeze_parts``: add the partly frozen stages :data:`PARTIAL_STAGES` (module docstring)."""
    nodes = _feature_nodes(graph, nodes)
    K = nodes.numel()
    toks = graph.tokens[None].repeat(K + 1, 1)
    edits = _edits(graph, nodes, scale, K)
    out = {"graph": graph_prediction(graph, nodes, scale)}
    fz = graph.frozen
    runs = [("frozen", fz)]
    if freeze_parts:
        runs += [("attention frozen", FrozenState(fz.patterns, None, None, None)),
                 ("norms frozen", FrozenState(None, fz.ln1_sigma, fz.ln2_sigma, fz.lnf_sigma)),
                 ("final norm frozen", FrozenState(None, None, None, fz.lnf_sigma))]
    runs.append(("replacement", None))
    for stage, frozen in runs:
        res, _, _ = rm.run(toks, errors=graph.error_tensor, frozen=frozen, edits=edits)
        t = _targets(graph, res.logits)
        out[stage] = t[:K] - t[K:]
    out["model"] = model_deltas(model, graph, nodes, scale, rm)
    return InterventionCheck(nodes.tolist(), [graph.node_name(int(n)) for n in nodes], scale, out)


def summarize_checks(check: InterventionCheck, target: int = 0, tol: float = 0.25
                     ) -> dict[str, Any]:
    """How well the graph predicts each later stage on logit node ``target``: the
    correlation over interventions, and the share of interventions where the prediction is
    within ``tol`` of the stage's value relative to its size (``|pred - x| <= tol *
    max(|x|, 0.1 * max_k |x_k|)``), overall and by the intervened feature's layer, the share
    where prediction and measurement have the same sign, and the interventions that fail."""
    pred = check.deltas["graph"][:, target]
    out: dict[str, Any] = {"n": len(check.nodes), "scale": check.scale}
    for stage in [s for s in check.deltas if s != "graph"]:
        x = check.deltas[stage][:, target]
        floor = 0.1 * float(x.abs().max()) if x.numel() else 0.0
        ok = (pred - x).abs() <= tol * x.abs().clamp_min(floor)
        corr = float(torch.corrcoef(torch.stack([pred, x]))[0, 1]) if x.numel() > 1 else float("nan")
        layers = [n.split("[")[0] for n in check.names]
        by_layer = {l: float(ok[[i for i, x in enumerate(layers) if x == l]].float().mean())
                    for l in sorted(set(layers))}
        sign = float((torch.sign(pred) == torch.sign(x)).float().mean())
        out[stage] = {"correlation": corr, "within_tol": float(ok.float().mean()),
                      "sign_agreement": sign,
                      "within_tol_by_layer": by_layer,
                      "fails": [check.names[i] for i in (~ok).nonzero()[:, 0].tolist()]}
    return out
