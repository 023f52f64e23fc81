"""Reference solutions of ``notebooks/03_circuits_low_level``'s exercises."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ... import patching as P
from ... import path_patching as PP
from ...faithfulness import all_nodes, circuit_faithfulness
from ...errors import TutorialError
from ...graph import Graph
from ...names import hook_name

__all__ = ["ablate_head", "node_circuit_faithfulness", "patch_edge", "patch_heads_of_layer",
           "sender_output", "sva_circuit", "upweight_score"]


def ablate_head(z: Float[Tensor, "batch pos head d_head"], head: int, method: str,
                reference_z: Float[Tensor, "batch pos head d_head"] | None = None
                ) -> Float[Tensor, "batch pos head d_head"]:
    """Exercise 1.1: a copy of ``z`` with head ``head`` zeroed (``"zero"``), replaced by its
    per-position mean over the reference batch (``"mean"``), or by the paired reference
    prompt's value (``"corrupted"``: paired corrupted ablation, an interchange)."""
    out = z.clone()
    if method == "zero":
        out[:, :, head] = 0.0
    elif method == "mean":
        out[:, :, head] = reference_z[:, :, head].mean(0)      # [pos, d_head], broadcast over the batch
    elif method == "corrupted":
        out[:, :, head] = reference_z[:, :, head]              # each prompt its own corrupted value
    else:
        raise TutorialError(f"unknown method {method!r}: use \"zero\", \"mean\" or \"corrupted\"")
    return out


def patch_heads_of_layer(model: Any, ds: Any, layer: int) -> Float[Tensor, "head"]:
    """Exercise 2.1: for each head of ``layer``, the task metric of the clean run with that
    head's output (``hook_z``) taken from the corrupted run."""
    name = hook_name("z", layer)
    _, corrupted = P.get_activations(model, ds.corrupted_tokens, [name])
    out = []
    for h in range(model.cfg.n_heads):
        def hook(z: Tensor, hook: Any, h: int = h) -> Tensor:
            z = z.clone()
            z[:, :, h] = corrupted[name][:, :, h]
            return z
        with torch.no_grad():
            logits = model.run_with_hooks(ds.clean_tokens, fwd_hooks=[(name, hook)])
        out.append(ds.metric(logits))
    return torch.stack(out)


def sender_output(model: Any, tokens: Int[Tensor, "batch pos"], sender: str
                  ) -> Float[Tensor, "batch pos d_model"]:
    """What node ``sender`` (``"embed"``, ``"aL.hH"`` or ``"mL"``) writes into the residual
    stream."""
    node = Graph.from_model(model).node(sender)
    _, a = P.get_activations(model, tokens, [node.out_hook])
    out = a[node.out_hook]
    return out if node.head is None else out[:, :, node.head]


def patch_edge(model: Any, ds: Any, sender: str, receiver: str) -> float:
    """Exercise 3.1: the metric of the clean run in which only the edge ``sender ->
    receiver`` (``"aL.hH.q"``/``.k``/``.v``, ``"mL"``) carries the corrupted value: the
    receiver's input changes by ``out_S(corrupted) - out_S(clean)``, nothing else does."""
    graph = Graph.from_model(model)
    delta = sender_output(model, ds.corrupted_tokens, sender) - sender_output(model, ds.clean_tokens, sender)
    head_name, which = receiver.rsplit(".", 1)            # "a1.h2.k" -> "a1.h2", "k"
    node = graph.node(head_name)

    def hook(x: Tensor, hook: Any) -> Tensor:             # x: [batch, pos, head, d_model]
        x = x.clone()
        x[:, :, node.head] += delta                        # only this head reads the patched stream
        return x

    with torch.no_grad():
        logits = model.run_with_hooks(ds.clean_tokens, fwd_hooks=[(node.in_hooks[which], hook)])
    return float(ds.metric(logits))


def node_circuit_faithfulness(model: Any, ds: Any, nodes: list[str]) -> float:
    """Exercise 4.1: ``(M(circuit) - M(corrupted)) / (M(clean) - M(corrupted))`` where the
    circuit run patches every node *outside* ``nodes`` with its corrupted-run output."""
    graph = Graph.from_model(model)
    outside = [graph.node(n) for n in all_nodes(model) if n not in set(nodes)]
    _, corr = P.get_activations(model, ds.corrupted_tokens, sorted({n.out_hook for n in outside}))

    def patch(x: Tensor, hook: Any, name: str, head: int | None) -> Tensor:
        x = x.clone()
        if head is None:
            x[:] = corr[name]                              # embeddings or an MLP: the whole output
        else:
            x[:, :, head] = corr[name][:, :, head]         # one head of the layer
        return x

    fwd = [(n.out_hook, lambda x, hook, n=n: patch(x, hook, n.out_hook, n.head)) for n in outside]
    with torch.no_grad():
        m_circuit = float(ds.metric(model.run_with_hooks(ds.clean_tokens, fwd_hooks=fwd)))
        m_full = float(ds.metric(model(ds.clean_tokens)))
        m_empty = float(ds.metric(model(ds.corrupted_tokens)))
    return (m_circuit - m_empty) / (m_full - m_empty)


def upweight_score(c: Float[Tensor, "batch d_model"], scale: Float[Tensor, "batch 1"],
                   W_U: Float[Tensor, "d_model n_years"], yy: Int[Tensor, "batch"]
                   ) -> Float[Tensor, "batch"]:
    """Exercise 6.1: per example, the component's direct logits over the years (the final
    LayerNorm's centring and frozen scale, then ``W_U``), mean over the years above ``yy``
    minus mean over the others."""
    logits = ((c - c.mean(-1, keepdim=True)) / scale) @ W_U                 # [batch, n_years]
    above = torch.arange(W_U.shape[1])[None, :] > yy[:, None]
    w = above.float() / above.sum(1, keepdim=True) - (~above).float() / (~above).sum(1, keepdim=True)
    return (logits * w).sum(-1)


def sva_circuit(model: Any, dataset: Any, max_nodes: int = 6) -> tuple[list[str], float]:
    """Exercise 8.1: a subject-verb agreement node circuit from iterative path patching from
    the logits (threshold 0.1, at most ``max_nodes`` nodes), and its faithfulness (corrupted
    ablation, as :func:`~tutorial_utils.faithfulness.circuit_faithfulness` measures it)."""
    graph = Graph.from_model(model)
    kept, _ = PP.iterative_path_patching(model, dataset, threshold=0.1, max_nodes=max_nodes)
    nodes = sorted({s for (s, _), _ in kept}
                   | {graph.receiver_node(r) for (_, r), _ in kept} - {"logits"})
    return nodes, circuit_faithfulness(model, dataset, nodes).faithfulness
