"""Edge patching and path patching, in two definitions.

The residual stream entering any component is a sum of the outputs of the components before it:

    resid = embed + pos_embed + sum_{l' < l} (sum_h result_{l',h} + b_O + mlp_out_{l'})

(Elhage et al. 2021). So the input a *receiver* reads can be split into one term per *sender*.

**Edge patching** (:func:`edge_patching`, :func:`path_patching`; the edge-level interchange of
ACDC / EAP, Conmy et al. 2023, Syed et al. 2023, Goldowsky-Dill et al. 2023): the edge
``sender -> receiver`` alone is patched: the receiver's input gets the sender's ablated value in
place of its current one, leaving every other path at its base value,

    input_R <- input_R - sum_{S : (S, R) patched} (out_S(current run) - out_S(source run)).

Only the *direct* path ``S -> R`` through the residual stream changes: a path ``S -> MLP -> R``
does not.

**Wang et al.'s path patching** (:func:`wang_path_patching`; Wang et al. 2023, "Interpretability
in the Wild", section 3.1 and appendix; as ARENA teaches it): in a first run on the base prompts,
the sender's output is patched from the source run, *every other attention head is frozen* at its
base value, and the MLPs and LayerNorms recompute; the receivers' inputs are recorded. In a second
run on the base prompts, only the receivers' inputs are patched with the recorded values and the
metric is measured. So paths ``S -> MLP(s) -> R`` count; paths through other heads do not. On an
attention-only model the two definitions agree (tested); on a model with MLPs they need not.

Nodes and edges are those of :class:`tutorial_utils.graph.Graph`: senders ``"embed"``, ``"aL.hH"``,
``"mL"``; receiver inputs ``"aL.hH.q|k|v"``, ``"mL"``, ``"logits"``; an edge is a pair
``(sender, receiver_input)`` or the string ``"a0.h3->a2.h1.v"``. Patching the edges of a *set*
uses each sender's output in the current (patched) run, so patching every edge out of a node
equals patching that node's output, and patching every edge of the graph from the corrupted run
gives the corrupted run (tests/test_path_patching.py). Every function runs on the one engine
(:mod:`tutorial_utils.interchange`). Models need ``load_model(..., hooks=True)``.

Public API
----------
``edge_patching(model, data, variants, ...)`` -- the metric with each variant's set of edges
    patched, batched along the batch.
``edge_patching_sweep(model, data, edges=None, ...)`` -- every single edge patched alone.
``path_patching(model, data, senders, receivers, ...)`` -- each sender patched along its direct
    edges into ``receivers`` (``["logits"]``: the sender's direct effect).
``wang_path_patching(model, data, senders, receivers, ...)`` -- Wang et al.'s definition.
``iterative_path_patching(model, data, threshold=..., ...)`` -- walk back from the logits,
    keeping the edges whose patching moves the metric by more than ``threshold`` (a fraction of
    clean - corrupted), then looking at what feeds the nodes found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .graph import Edge, Graph
from .interchange import (Ablation, Direction, Hook, ablation_runs, baseline_metrics, batches,
                          capture, default_batch_rows, examples_per_forward, masked_set_hook,
                          replace_hook, run_variants, stacked_forward)
from .tasks.base import TaskDataset, check_dataset, metric_of_variants
from .tasks.metrics import Metric, check_metric, normalize
from .validation import check_batch_size

__all__ = ["EdgeScores", "PathPatchingStep", "edge_patching", "edge_patching_sweep",
           "iterative_path_patching", "path_patching", "wang_path_patching"]

#: variants whose edge masks :func:`edge_patching` builds at once (GPT-2 small: 72 MB per block)
VARIANT_BLOCK = 1024


def edge_patching(
    model: Any,
    data: TaskDataset,
    variants: Sequence[Iterable[Edge | str]],
    *,
    ablation: Ablation = "corrupted",
    direction: Direction = "noise",
    metric: Metric | None = None,
    per_example: bool = False,
    reference_tokens: Int[Tensor, "n pos"] | None = None,
    seed: int = 0,
    batch_rows: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, " variants"] | Float[Tensor, "variants examples"]:
    """The metric with each variant's edges patched together: ``[n_variants]`` (``[n, B]``).

    For every patched edge ``(S, R)`` the receiver input becomes
    ``input_R + (out_S(ablated) - out_S(current))``; the ablated value follows the one
    vocabulary (:mod:`tutorial_utils.interchange`): by default the paired corrupted run (with
    ``direction="denoise"`` the base is the corrupted run and the source the clean one). All
    variants are stacked along the batch (``batch_rows`` rows per forward), ``batch_size``
    examples at a time (default: as many as the logits budget allows,
    :func:`tutorial_utils.interchange.examples_per_forward`).
    """
    check_dataset(data, model, "data")
    if isinstance(variants, (str, tuple)):
        raise TutorialError("variants is a list of edge sets, e.g. [[('a0.h1', 'logits')]] or "
                            "[['a0.h1->logits']]; got a single edge")
    g = Graph.from_model(model)
    variants = [list(v) for v in variants]
    for v in variants:
        g.check_edges(v)  # every name checked before any forward
    if not variants:
        return torch.zeros(0)
    rows = batch_rows or default_batch_rows(data.seq_len, model.cfg.d_vocab)
    bs = examples_per_forward(model, data, batch_size)
    out = []
    for start in range(0, len(variants), VARIANT_BLOCK):
        removed = torch.stack([g.edge_mask(v) for v in variants[start:start + VARIANT_BLOCK]])
        out.append(run_variants(model, g, data, removed, ablation=ablation, direction=direction,
                                metric=metric, per_example=per_example,
                                reference_tokens=reference_tokens, seed=seed,
                                batch_size=bs, max_sequences=max(rows, bs),
                                progress=progress, desc="edge patching"))
    return torch.cat(out)


@dataclass
class EdgeScores:
    """Metric after patching each edge (or path) alone, with the unpatched baselines."""

    edges: list[Edge]
    values: Tensor
    metric_clean: float
    metric_corrupted: float
    direction: str = "noise"

    def normalized_effect(self) -> Float[Tensor, " edges"]:
        """Share of the clean - corrupted gap each edge accounts for: for noising,
        ``(clean - value) / (clean - corrupted)``; for denoising ``(value - corrupted) / (...)``
        (:func:`tutorial_utils.tasks.metrics.normalize`: NaN where clean == corrupted)."""
        norm = normalize(self.values, self.metric_clean, self.metric_corrupted)
        return 1 - norm if self.direction == "noise" else norm

    def top(self, k: int = 10) -> list[tuple[Edge, float]]:
        eff = self.normalized_effect()
        order = eff.abs().argsort(descending=True)[:k]
        return [(self.edges[i], float(eff[i])) for i in order]


def edge_patching_sweep(model: Any, data: TaskDataset, edges: Sequence[Edge] | None = None, *,
                        metric: Metric | None = None, direction: Direction = "noise",
                        **kwargs: Any) -> EdgeScores:
    """Patch every edge in ``edges`` (default: all edges of the model) on its own."""
    g = Graph.from_model(model)
    edges = g.check_edges(edges) if edges is not None else g.edges
    vals = edge_patching(model, data, [[e] for e in edges], metric=metric, direction=direction,
                         **kwargs)
    mc, mk = baseline_metrics(model, data, metric, batch_size=kwargs.get("batch_size"))
    return EdgeScores(list(edges), vals, mc, mk, direction)


def _senders_receivers(g: Graph, senders: Sequence[str] | None, receivers: Sequence[str] | str
                       ) -> tuple[list[str], list[str]]:
    if isinstance(receivers, str):
        receivers = [receivers]
    receivers = list(receivers)
    if not receivers:
        raise TutorialError("receivers is empty: name receiver inputs such as ['logits'] or "
                            "['a3.h0.q']")
    for r in receivers:
        g.bwd_index(r)
    if isinstance(senders, str):
        senders = [senders]
    senders = list(g.senders) if senders is None else list(senders)
    for s in senders:
        g.fwd_index(s)
    return senders, receivers


def path_patching(model: Any, data: TaskDataset, senders: Sequence[str] | None,
                  receivers: Sequence[str] | str, *, metric: Metric | None = None,
                  direction: Direction = "noise", **kwargs: Any) -> EdgeScores:
    """Each sender patched along its *direct* edges into ``receivers`` (receiver inputs, e.g.
    ``["logits"]`` or ``["a3.h0.q", "a3.h0.k"]``), everything else held at its base value (the
    edge-level definition; :func:`wang_path_patching` lets MLPs recompute).

    Returns an :class:`EdgeScores` whose ``edges`` are ``(sender, "+".join(receivers))``.
    Senders not upstream of any receiver are skipped.
    """
    g = Graph.from_model(model)
    senders, receivers = _senders_receivers(g, senders, receivers)
    keep, variants = [], []
    for s in senders:
        v = [(s, r) for r in receivers if g.is_edge(s, r)]
        if v:
            keep.append(s)
            variants.append(v)
    vals = edge_patching(model, data, variants, metric=metric, direction=direction, **kwargs)
    mc, mk = baseline_metrics(model, data, metric, batch_size=kwargs.get("batch_size"))
    return EdgeScores([(s, "+".join(receivers)) for s in keep], vals, mc, mk, direction)


def wang_path_patching(model: Any, data: TaskDataset, senders: Sequence[str] | None,
                       receivers: Sequence[str] | str, *, metric: Metric | None = None,
                       direction: Direction = "noise", batch_size: int = 32,
                       max_sequences: int = 256) -> EdgeScores:
    """Wang et al. (2023)'s path patching of each sender into ``receivers``, in two runs.

    1. Base prompts; the sender's output from the source run (the paired corrupted prompt for
       ``direction="noise"``); every other attention head's output frozen at its base-run
       value; MLPs, LayerNorms and the sender's own downstream recompute. The receivers' inputs
       are recorded (for ``"logits"``, the final residual stream).
    2. Base prompts; each receiver input replaced by its recorded value; everything downstream
       recomputes. The metric of this run is the sender's path-patched value.

    Senders are ``"aL.hH"`` or ``"mL"`` (``None``: every head and MLP; ``"embed"`` is refused);
    receivers are head inputs ``"aL.hH.q|k|v"``, MLP inputs
    ``"mL"`` or ``"logits"``. All senders are stacked along the batch in both runs. Returns an
    :class:`EdgeScores` like :func:`path_patching` (same senders skipped: those not upstream of
    any receiver).
    """
    check_dataset(data, model, "data")
    check_metric(metric)
    check_batch_size(batch_size)
    g = Graph.from_model(model)
    g.check_model(model)
    if senders is not None and "embed" in ([senders] if isinstance(senders, str) else senders):
        raise TutorialError("wang_path_patching: senders are heads 'aL.hH' and MLPs 'mL'; "
                            "'embed' is not one (its output is every prompt's difference: "
                            "patch it with path_patching, the edge-level definition)")
    senders, receivers = _senders_receivers(g, senders, receivers)
    senders = [s for s in senders if s != "embed" and any(g.is_edge(s, r) for r in receivers)]
    runs = ablation_runs(data, "corrupted", direction)
    head_hooks = [h for h in g.sender_hooks() if h.per_head]
    # the receivers' hooks and where each receiver sits in its hook's head axis
    recv: list[tuple[str, int | None]] = []
    for r in receivers:
        node = g.node(g.receiver_node(r))
        if node.kind == "head":
            c = r.rsplit(".", 1)[1]
            idx = node.head if c == "q" else g.kv_head(node.head)
            recv.append((node.in_hooks[c], idx))
        else:
            recv.append((next(iter(node.in_hooks.values())), None))
    recv_names = sorted({name for name, _ in recv})
    K, N = len(senders), len(data)
    out = torch.zeros(K)
    baseline = [0.0, 0.0]  # the metric of the base and source runs
    bs = min(batch_size, N)
    for b in batches(N, bs):
        sub = data if (b.start, b.stop) == (0, N) else data.subset(b)
        base, source = runs.base[b], runs.source[b]
        names = sorted({g.node(s).out_hook for s in senders} | {h.name for h in head_hooks})
        base_logits, base_acts = capture(model, base, names)
        src_logits, src_acts = capture(model, source, names)
        # the unpatched metrics come from the same two runs (base, source) = (clean, corrupted)
        # for noising, (corrupted, clean) for denoising
        for j, lg in enumerate((base_logits, src_logits)):
            baseline[j] += float(metric_of_variants(metric, lg, sub, 1)[0]) * (len(sub) / N)
        del base_logits, src_logits
        for k in batches(K, max(1, max_sequences // len(sub))):
            n = k.stop - k.start
            hooks: list[Hook] = []
            for name in names:
                # every head frozen at its base value, except the variant's own sender, which
                # gets its source value; a sender MLP gets its source value
                per_head = name in {h.name for h in head_hooks}
                if per_head:
                    value = base_acts[name][None].repeat(n, 1, 1, 1, 1)
                    for i, s in enumerate(senders[k]):
                        node = g.node(s)
                        if node.kind == "head" and node.out_hook == name:
                            value[i, :, :, node.head] = src_acts[name][:, :, node.head]
                    hooks.append((name, replace_hook(value.flatten(0, 1), name)))
                else:
                    mask = torch.tensor([g.node(s).out_hook == name for s in senders[k]])
                    if mask.any():
                        hooks.append((name, masked_set_hook(src_acts[name],
                                                            mask.view(n, 1, 1), name)))
            record: dict[str, Tensor] = {}
            for name in recv_names:
                def grab(x: Tensor, hook: Any, name: str = name) -> Tensor:
                    record[name] = x.detach().clone()
                    return x
                hooks.append((name, grab))
            logits = stacked_forward(model, base, n, hooks)
            if receivers == ["logits"]:
                vals = metric_of_variants(metric, logits, sub, n)
            else:
                patch: list[Hook] = []
                for name in recv_names:
                    rec = record[name]
                    sel = [idx for nm, idx in recv if nm == name]
                    mask = torch.zeros(rec.shape[1:], dtype=torch.bool) if None not in sel else \
                        torch.ones(rec.shape[1:], dtype=torch.bool)
                    for idx in sel:
                        if idx is not None:
                            mask[:, idx] = True
                    # a receiver's input is patched out of place (set_activation): on the bridge
                    # hook_mlp_in is the residual stream, which must keep its value
                    patch.append((name, masked_set_hook(rec, mask[None].repeat(n, *([1] * mask.ndim)),
                                                        name)))
                vals = metric_of_variants(metric, stacked_forward(model, base, n, patch), sub, n)
            out[k] += vals.detach().float().cpu() * (len(sub) / N)
    mc, mk = baseline if direction == "noise" else baseline[::-1]
    return EdgeScores([(s, "+".join(receivers)) for s in senders], out, mc, mk, direction)


@dataclass
class PathPatchingStep:
    """One step of :func:`iterative_path_patching`: the receiver node examined and the score of
    every edge into its inputs."""

    receiver: str
    scores: EdgeScores
    kept: list[tuple[Edge, float]]


def iterative_path_patching(
    model: Any,
    data: TaskDataset,
    *,
    threshold: float = 0.1,
    max_nodes: int = 12,
    metric: Metric | None = None,
    direction: Direction = "noise",
    **kwargs: Any,
) -> tuple[list[tuple[Edge, float]], list[PathPatchingStep]]:
    """Walk back from the logits: score every edge into the current node's inputs, keep those
    whose normalised effect ``|effect| >= threshold`` (fraction of clean - corrupted), and
    examine their senders next (breadth first, at most ``max_nodes`` nodes examined).

    Returns ``(edges kept with their normalised effects, the steps)``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
            not 0 < threshold < float("inf"):
        raise TutorialError(f"threshold must be a positive number, got {threshold!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise TutorialError(f"max_nodes must be an integer >= 1, got {max_nodes!r}")
    check_dataset(data, model, "data")
    g = Graph.from_model(model)
    frontier, seen = ["logits"], {"logits"}
    kept_all: list[tuple[Edge, float]] = []
    steps: list[PathPatchingStep] = []
    while frontier and len(steps) < max_nodes:
        node = frontier.pop(0)
        edges = [(s, r) for r in g.receiver_inputs(node) for s in g.senders if g.is_edge(s, r)]
        scores = edge_patching_sweep(model, data, edges, metric=metric, direction=direction,
                                     **kwargs)
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
