"""Edge and path patching through the linearity of the residual stream.

The residual stream entering any component is a sum of the outputs of the components before it:

    resid = embed + pos_embed + sum_{l' < l} (sum_h result_{l',h} + b_O + mlp_out_{l'})

(Elhage et al. 2021). So the input a *receiver* reads can be split into one term per *sender*,
and the edge sender -> receiver can be patched alone: subtract the sender's current output from
the receiver's input and add its output from the source run, leaving every other path clean:

    input_R <- input_R - sum_{S : (S, R) patched} (out_S(current run) - out_S(source run)).

Nodes and edges are those of :class:`tutorial_utils.graph.Graph` (the package's one node
vocabulary): senders ``"embed"``, ``"aL.hH"``, ``"mL"``; receiver inputs ``"aL.hH.q|k|v"``,
``"mL"``, ``"logits"``; an edge is a pair ``(sender, receiver_input)``, e.g.
``("a0.h3", "a2.h1.v")``, or the string ``"a0.h3->a2.h1.v"``.

Patching the edges of a *set* uses each sender's output in the current (patched) run, so
patching every edge out of a node equals patching that node's output, and patching every edge of
the graph from the corrupted run gives the corrupted run (tests/test_path_patching.py). This is
the edge-level interchange intervention of ACDC / EAP (Conmy et al. 2023; Syed et al. 2023) and
the path patching of Goldowsky-Dill et al. (2023) and Wang et al. (2023): path patching a sender
through a set of receivers patches the edges sender -> receiver, and lets the receivers' changed
outputs flow to the logits along every path. (Wang et al. also let MLPs recompute in their
frozen-heads run; here every other edge is held at its base value.) Every function here is a
thin layer over the one engine, :func:`tutorial_utils.interchange.run_variants`.

Models need ``load_model(..., hooks=True)`` (per-head results, split q/k/v inputs, MLP input).
Data is a :class:`~tutorial_utils.tasks.TaskDataset` (raw tokens:
``TaskDataset.from_tokens(clean, corrupted, metric)``); a metric is
``metric(logits[n*B, T, V], dataset) -> [n]`` (default: the task metric).

Public API
----------
``Graph`` -- :class:`tutorial_utils.graph.Graph` (``graph.edges``, ``graph.is_edge``, ...).
``edge_patching(model, data, variants, *, source="corrupted", direction="noise", ...)`` -- the
    metric with each variant's set of edges patched, batched along the batch.
``edge_patching_sweep(model, data, edges=None, ...)`` -- every single edge patched alone.
``path_patching(model, data, senders, receivers, ...)`` -- each sender patched along its edges to
    ``receivers`` (``["logits"]``: the sender's direct effect).
``iterative_path_patching(model, data, threshold=..., ...)`` -- walk back from the logits,
    keeping the edges whose patching moves the metric by more than ``threshold`` (a fraction of
    clean - corrupted), then looking at what feeds the nodes found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import torch
from torch import Tensor

from .graph import Edge, Graph
from .interchange import Source, default_batch_rows, metric_of_runs, run_variants
from .metrics import Metric, normalize
from .tasks.base import TaskDataset
from .errors import TutorialError
from .validation import check_dataset

__all__ = ["Edge", "EdgeScores", "Graph", "PathPatchingStep", "default_batch_rows",
           "edge_patching", "edge_patching_sweep", "iterative_path_patching", "path_patching"]

EdgeSource = Source
#: variants whose edge masks :func:`edge_patching` builds at once
VARIANT_BLOCK = 1024


def _dataset(data: Any, model: Any) -> TaskDataset:
    check_dataset(data, model, "data")
    return data


def edge_patching(
    model: Any,
    data: TaskDataset,
    variants: Sequence[Iterable[Edge | str]],
    *,
    source: Source = "corrupted",
    direction: Literal["noise", "denoise"] = "noise",
    metric: Metric | None = None,
    per_example: bool = False,
    reference_tokens: Tensor | None = None,
    batch_rows: int | None = None,
    progress: bool = False,
) -> Tensor:
    """The metric with each variant's edges patched together: ``[n_variants]`` (``[n, B]``).

    For every patched edge ``(S, R)`` the receiver input becomes
    ``input_R + (out_S(source) - out_S(current))``; ``source`` is the corrupted run (an edge
    interchange; with ``direction="denoise"`` the base is the corrupted run and the source the
    clean one), the per-position mean over ``reference_tokens`` (default the source prompts),
    or zero. All variants are stacked along the batch (``batch_rows`` rows per forward).
    """
    data = _dataset(data, model)
    g = Graph.from_model(model)
    variants = [list(v) for v in variants]
    for v in variants:
        g.check_edges(v)  # every name checked before any forward
    if not variants:
        return torch.zeros(0)
    rows = batch_rows or default_batch_rows(data.seq_len, model.cfg.d_vocab)
    out = []
    # masks [n, S, R] built VARIANT_BLOCK variants at a time (GPT-2 small: 72 MB per block)
    for start in range(0, len(variants), VARIANT_BLOCK):
        removed = torch.stack([g.edge_mask(v) for v in variants[start:start + VARIANT_BLOCK]])
        out.append(run_variants(model, g, data, removed, source=source, direction=direction,
                                metric=metric, per_example=per_example,
                                reference_tokens=reference_tokens, batch_size=len(data),
                                max_sequences=max(rows, 1), progress=progress,
                                desc="edge patching"))
    return torch.cat(out)


@dataclass
class EdgeScores:
    """Metric after patching each edge alone, with the unpatched baselines."""

    edges: list[Edge]
    values: Tensor
    metric_clean: float
    metric_corrupted: float
    direction: str = "noise"

    def normalized_effect(self) -> Tensor:
        """Share of the clean - corrupted gap each edge accounts for: for noising,
        ``(clean - value) / (clean - corrupted)``; for denoising ``(value - corrupted) / (...)``
        (:func:`tutorial_utils.metrics.normalize`: NaN where clean == corrupted)."""
        norm = normalize(self.values, self.metric_clean, self.metric_corrupted)
        return 1 - norm if self.direction == "noise" else norm

    def top(self, k: int = 10) -> list[tuple[Edge, float]]:
        eff = self.normalized_effect()
        order = eff.abs().argsort(descending=True)[:k]
        return [(self.edges[i], float(eff[i])) for i in order]


def _baselines(model: Any, data: TaskDataset, metric: Metric | None) -> tuple[float, float]:
    return metric_of_runs(model, _dataset(data, model), metric, batch_size=len(data))


def edge_patching_sweep(model: Any, data: Any, edges: Sequence[Edge] | None = None, *,
                        metric: Metric | None = None, direction: Literal["noise", "denoise"] = "noise",
                        **kwargs: Any) -> EdgeScores:
    """Patch every edge in ``edges`` (default: all edges of the model) on its own."""
    g = Graph.from_model(model)
    edges = g.check_edges(edges) if edges is not None else g.edges
    vals = edge_patching(model, data, [[e] for e in edges], metric=metric, direction=direction, **kwargs)
    mc, mk = _baselines(model, data, metric)
    return EdgeScores(list(edges), vals, mc, mk, direction)


def path_patching(model: Any, data: Any, senders: Sequence[str] | None, receivers: Sequence[str],
                  *, metric: Metric | None = None, direction: Literal["noise", "denoise"] = "noise",
                  **kwargs: Any) -> EdgeScores:
    """Each sender patched along its edges into ``receivers`` (receiver inputs, e.g.
    ``["logits"]`` or ``["a3.h0.q", "a3.h0.k"]``), everything else held at its base value.

    Returns an :class:`EdgeScores` whose ``edges`` are ``(sender, "+".join(receivers))``.
    Senders not upstream of any receiver are skipped.
    """
    g = Graph.from_model(model)
    if isinstance(receivers, str):
        receivers = [receivers]
    for r in receivers:
        g.bwd_index(r)
    senders = list(g.senders) if senders is None else list(senders)
    for s in senders:
        g.fwd_index(s)
    keep, variants = [], []
    for s in senders:
        v = [(s, r) for r in receivers if g.is_edge(s, r)]
        if v:
            keep.append(s)
            variants.append(v)
    vals = edge_patching(model, data, variants, metric=metric, direction=direction, **kwargs)
    mc, mk = _baselines(model, data, metric)
    label = "+".join(receivers)
    return EdgeScores([(s, label) for s in keep], vals, mc, mk, direction)


@dataclass
class PathPatchingStep:
    """One step of :func:`iterative_path_patching`: the receiver node examined and the score of
    every edge into its inputs."""

    receiver: str
    scores: EdgeScores
    kept: list[tuple[Edge, float]]


def iterative_path_patching(
    model: Any,
    data: Any,
    *,
    threshold: float = 0.1,
    max_nodes: int = 12,
    metric: Metric | None = None,
    direction: Literal["noise", "denoise"] = "noise",
    **kwargs: Any,
) -> tuple[list[tuple[Edge, float]], list[PathPatchingStep]]:
    """Walk back from the logits: score every edge into the current node's inputs, keep those
    whose normalised effect ``|effect| >= threshold`` (fraction of clean - corrupted), and
    examine their senders next (breadth first, at most ``max_nodes`` nodes examined).

    Returns ``(edges kept with their normalised effects, the steps)``.
    """
    if not threshold > 0:
        raise TutorialError(f"threshold must be positive, got {threshold}")
    g = Graph.from_model(model)
    frontier, seen = ["logits"], {"logits"}
    kept_all: list[tuple[Edge, float]] = []
    steps: list[PathPatchingStep] = []
    while frontier and len(steps) < max_nodes:
        node = frontier.pop(0)
        edges = [(s, r) for r in g.receiver_inputs(node) for s in g.senders if g.is_edge(s, r)]
        scores = edge_patching_sweep(model, data, edges, metric=metric, direction=direction, **kwargs)
        eff = scores.normalized_effect()
        kept = [(e, float(x)) for e, x in zip(edges, eff) if abs(float(x)) >= threshold]
        kept.sort(key=lambda t: -abs(t[1]))
        steps.append(PathPatchingStep(node, scores, kept))
        kept_all += kept
        for (s, _), _x in kept:
            if s != "embed" and s not in seen:
                seen.add(s)
                frontier.append(s)
    return kept_all, steps
