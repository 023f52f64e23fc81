r"""Faithfulness of a circuit: how much of the model's behaviour the circuit alone recovers.

Normalised faithfulness (Wang et al. 2023, "Interpretability in the Wild"; Hanna et al. 2023;
Conmy et al. 2023) compares three numbers of one task metric ``m``:

* ``m(clean)``   -- the unmodified model on the clean prompts (the full model),
* ``m(empty)``   -- the model with *every* component ablated (for ``ablation="corrupted"`` this
  is the model on the corrupted prompts, tested),
* ``m(circuit)`` -- the model with everything *outside* the circuit ablated,

    faithfulness = (m(circuit) - m(empty)) / (m(clean) - m(empty)).

1 means the circuit recovers the full model's behaviour, 0 means it recovers none of it. This
module is the package's one answer to "how faithful is this circuit": nodes, edges, a
:class:`~tutorial_utils.graph.Graph` or masks, one ablation vocabulary
(:mod:`tutorial_utils.interchange`), all on the one engine.

Public API
----------
``normalized_faithfulness(metric_circuit, metric_clean, metric_empty)`` -- the formula, the
    package's one :func:`tutorial_utils.tasks.metrics.normalize`.
``circuit_faithfulness(model, data, circuit, ablation="corrupted")`` -> ``FaithfulnessResult``.
``masks_faithfulness(model, graph, data, masks)`` -> metrics and faithfulness of ``K`` edge
    circuits in one stacked run (faithfulness curves use it).
``completeness_check(model, data, nodes, subsets=None)`` -> ``CompletenessResult``: Wang et al.
    (2023): ``|F(C \ K) - F(M \ K)|`` for subsets ``K`` of the circuit ``C``.
``minimality_scores(model, data, nodes)`` -> ``{node: F(C) - F(C \ {node})}``: minimality with
    the empty subset ``K = {}`` only (a quick first look).
``subset_minimality(model, data, nodes, search="greedy")`` -> ``MinimalityResult``: Wang et al.'s
    minimality, ``max_K |F(C \ (K u {v})) - F(C \ K)|`` over subsets ``K`` of ``C \ {v}``.
``all_nodes(model)`` -- every node name.

Degenerate policy (the package's one, :mod:`tutorial_utils.tasks.metrics`): when
``|m(clean) - m(empty)| <= 1e-6`` the ratio is undefined and the result is NaN;
``on_degenerate="raise"`` raises a :class:`~tutorial_utils.errors.TutorialError` instead.
"""

from __future__ import annotations

import itertools
import random as _random
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .errors import TutorialError
from .graph import Graph
from .interchange import (Ablation, check_ablation, examples_per_forward, metric_of_run,
                          run_variants)
from .tasks.base import TaskDataset, check_dataset
from .tasks.metrics import Metric, normalize

__all__ = ["CompletenessResult", "FaithfulnessResult", "MinimalityResult", "all_nodes",
           "circuit_faithfulness", "completeness_check", "masks_faithfulness",
           "minimality_scores", "normalized_faithfulness", "subset_minimality"]

Number = Union[float, int, Tensor]
#: circuits an exhaustive minimality search accepts (2^(|C|-1) subsets per node)
EXHAUSTIVE_MAX_NODES = 12


def normalized_faithfulness(metric_circuit: Number, metric_clean: Number, metric_empty: Number, *,
                            on_degenerate: Literal["raise", "nan"] = "nan",
                            atol: float = 1e-6) -> Number:
    """``(m(circuit) - m(empty)) / (m(clean) - m(empty))``: :func:`tutorial_utils.tasks.metrics.normalize`.

    Floats, or tensors of broadcastable shapes (e.g. ``[B]`` per-example metrics). Reference:
    Wang et al. 2023 (IOI), section 4; the same normalisation as in Hanna et al. 2023."""
    return normalize(metric_circuit, metric_clean, metric_empty, on_degenerate=on_degenerate,
                     atol=atol)


def all_nodes(model: Any) -> list[str]:
    """Every node of the model: ``embed``, each head ``aL.hH`` and each MLP ``mL``."""
    return list(Graph.from_model(model).senders)


@dataclass
class FaithfulnessResult:
    """Faithfulness of one circuit.

    ``metric_empty`` is the metric with *everything* ablated: for ``ablation="corrupted"`` it
    equals ``metric_corrupted`` (tested); for mean, zero or resample ablation it is the baseline
    that makes the empty circuit score 0. ``faithfulness`` normalises with ``metric_empty``.
    """

    metric_circuit: float
    metric_clean: float
    metric_corrupted: float
    metric_empty: float
    faithfulness: float
    ablation: str
    kind: str
    size: int

    def __str__(self) -> str:
        return (f"{self.kind} circuit of size {self.size} ({self.ablation} ablation): "
                f"metric(circuit) = {self.metric_circuit:.3f}, metric(full) = "
                f"{self.metric_clean:.3f}, metric(corrupted) = {self.metric_corrupted:.3f}, "
                f"faithfulness = {self.faithfulness:.3f}")


def _circuit_mask(g: Graph, circuit: Any) -> tuple[str, Tensor]:
    """``("node", BoolTensor[n_forward])`` or ``("edge", BoolTensor[n_forward, n_backward])``
    of a circuit given as node names, edges, a Graph or a mask."""
    if isinstance(circuit, Graph):
        return "edge", g.check_mask(circuit.in_graph, "circuit.in_graph")
    if isinstance(circuit, Tensor):
        if circuit.ndim == 1:
            if circuit.shape[0] != g.n_forward:
                raise TutorialError(f"circuit: a node mask must be [{g.n_forward}], got "
                                    f"{tuple(circuit.shape)}")
            return "node", circuit.detach().cpu().bool()
        return "edge", g.check_mask(circuit, "circuit")
    if circuit is None or isinstance(circuit, (str, bytes)) or not isinstance(circuit, Iterable):
        raise TutorialError(f"circuit must be a list of nodes (['a0.h1', 'm2']), a list of edges "
                            f"([('a0.h1', 'm2')] or ['a0.h1->m2']), a Graph or a mask; got "
                            f"{circuit!r}")
    items = list(circuit)
    kinds = {isinstance(x, tuple) or (isinstance(x, str) and "->" in x) for x in items}
    if len(kinds) > 1:
        raise TutorialError("circuit: a circuit is either a set of nodes ('a0.h1') or a set of "
                            "edges (('a0.h1', 'm2') or 'a0.h1->m2'), not a mix")
    if kinds == {True}:
        return "edge", g.edge_mask(items)
    for x in items:
        if not isinstance(x, str):
            raise TutorialError(f"circuit: node names are strings such as 'a0.h1', got {x!r}")
        if x != "logits" and x not in g.sender_index:
            raise g.unknown_name_error(x, "node")
    return "node", g.node_mask([x for x in items if x != "logits"])


def masks_faithfulness(model: Any, graph: Graph, data: TaskDataset,
                       masks: Bool[Tensor, "circuits sender receiver"], *,
                       ablation: Ablation = "corrupted",
                       reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0,
                       metric: Metric | None = None, batch_size: int = 32,
                       max_sequences: int = 512, progress: bool = False
                       ) -> tuple[Float[Tensor, " circuits"], float, float]:
    """``(metric of each circuit [K], metric(clean), metric(empty))`` for ``K`` edge circuits,
    by edge-level interchange: every edge outside a circuit carries its sender's ablated value.
    The full and empty circuits run in the same stacked forward; normalise with
    :func:`normalized_faithfulness`."""
    if masks.ndim == 2:
        masks = masks[None]
    masks = torch.stack([graph.check_mask(m, "mask") for m in masks])
    full = graph.real_edges[None]
    circuits = torch.cat([masks, full, torch.zeros_like(full)])
    vals = run_variants(model, graph, data, graph.real_edges[None] & ~circuits, ablation=ablation,
                        reference_tokens=reference_tokens, seed=seed, metric=metric,
                        batch_size=batch_size, max_sequences=max_sequences, progress=progress,
                        desc="evaluating circuits")
    return vals[:-2], float(vals[-2]), float(vals[-1])


def circuit_faithfulness(model: Any, data: TaskDataset, circuit: Any, *,
                         ablation: Ablation = "corrupted",
                         reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0,
                         metric: Metric | None = None,
                         on_degenerate: Literal["nan", "raise"] = "nan",
                         batch_size: int | None = None) -> FaithfulnessResult:
    """Ablate everything outside ``circuit`` and compare the metric with the full model's.

    Args:
        circuit: node names (``"embed"``, ``"aL.hH"``, ``"mL"``; ``"logits"`` is implicit): the
            nodes outside it output their ablated value; or edges ``(sender, receiver_input)``
            (or ``"s->r"``), a :class:`Graph` (its ``in_graph``) or a mask ``[n_forward,
            n_backward]``: every edge outside it carries the sender's ablated value (edge
            interchange). An empty list is the empty circuit.
        ablation: ``"corrupted"`` (from the paired corrupted prompt, default), ``"resample"``
            (from other random prompts), ``"mean"`` (per-position mean over
            ``reference_tokens``, default the corrupted prompts) or ``"zero"``.
        batch_size: examples per forward (default: as many as the logits budget allows,
            :func:`tutorial_utils.interchange.examples_per_forward`).

    Returns:
        :class:`FaithfulnessResult` with
        ``faithfulness = (m(circuit) - m(empty)) / (m(clean) - m(empty))``.
    """
    check_ablation(ablation)
    check_dataset(data, model, "data")
    g = Graph.from_model(model)
    kind, mask = _circuit_mask(g, circuit)
    bs = examples_per_forward(model, data, batch_size)
    m_corr = metric_of_run(model, data, data.corrupted_tokens, metric, bs)
    if kind == "edge":
        vals, m_clean, m_empty = masks_faithfulness(model, g, data, mask, ablation=ablation,
                                                    reference_tokens=reference_tokens, seed=seed,
                                                    metric=metric, batch_size=bs)
        m_circ, size = float(vals[0]), int(mask.sum())
    else:
        every = torch.ones(g.n_forward, dtype=torch.bool)
        patched = torch.stack([~mask, torch.zeros_like(mask), every])
        vals = run_variants(model, g, data, patched=patched, ablation=ablation,
                            reference_tokens=reference_tokens, seed=seed, metric=metric,
                            batch_size=bs, desc="ablating nodes")
        m_circ, m_clean, m_empty = (float(v) for v in vals)
        size = int(mask.sum())
    f = normalized_faithfulness(m_circ, m_clean, m_empty, on_degenerate=on_degenerate)
    return FaithfulnessResult(m_circ, m_clean, m_corr, m_empty, float(f), ablation, kind, size)


def _check_nodes(model: Any, nodes: Any, what: str = "circuit") -> list[str]:
    if nodes is None or isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise TutorialError(f"{what} must be a list of node names such as ['a0.h1', 'm2'], got "
                            f"{nodes!r}")
    g = Graph.from_model(model)
    out = []
    for n in nodes:
        if n == "logits":
            continue
        if not isinstance(n, str) or n not in g.sender_index:
            raise g.unknown_name_error(n, "node")
        out.append(n)
    return out


def _node_variants_metric(model: Any, data: TaskDataset, ablated_sets: Sequence[Sequence[str]],
                          ablation: str, reference_tokens: Tensor | None, seed: int,
                          metric: Metric | None, batch_size: int | None = None) -> Tensor:
    """Metric of the clean run with each set of nodes ablated, stacked in one batched run."""
    check_dataset(data, model, "data")
    g = Graph.from_model(model)
    patched = torch.stack([g.node_mask(s) for s in ablated_sets])
    return run_variants(model, g, data, patched=patched, ablation=ablation, metric=metric,
                        reference_tokens=reference_tokens, seed=seed,
                        batch_size=examples_per_forward(model, data, batch_size),
                        desc="ablating nodes")


@dataclass
class CompletenessResult:
    """Wang et al. (2023) completeness: for subsets K of the circuit C, compare
    F(C \\ K) with F(M \\ K); a complete circuit has ``incompleteness = |F(C\\K) - F(M\\K)|``
    small for every K."""

    subsets: list[list[str]]
    metric_circuit_minus_k: Tensor
    metric_model_minus_k: Tensor
    incompleteness: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.incompleteness = (self.metric_circuit_minus_k - self.metric_model_minus_k).abs()


def completeness_check(model: Any, data: TaskDataset, circuit: Iterable[str],
                       subsets: Sequence[Sequence[str]] | None = None, *, n_random: int = 8,
                       seed: int = 0, ablation: Ablation = "corrupted",
                       reference_tokens: Int[Tensor, "n pos"] | None = None,
                       metric: Metric | None = None,
                       batch_size: int | None = None) -> CompletenessResult:
    """Completeness of a node circuit (Wang et al. 2023, section 4.2), batched.

    ``subsets`` (of circuit nodes) default to the empty set, every single node, and
    ``n_random`` random subsets (each node kept with probability 1/2); duplicates are dropped.
    """
    check_ablation(ablation)
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise TutorialError("circuit: completeness needs a non-empty node circuit")
    if subsets is None:
        rng = _random.Random(seed)
        subsets = [[]] + [[n] for n in nodes] + [
            [n for n in nodes if rng.random() < 0.5] for _ in range(n_random)]
    unique: dict[tuple[str, ...], list[str]] = {}
    for k in subsets:
        k = list(_check_nodes(model, k, "subsets"))
        unique.setdefault(tuple(sorted(k)), k)
    subsets = list(unique.values())
    for k in subsets:
        if not set(k) <= set(nodes):
            raise TutorialError(f"subsets: {k} is not inside the circuit {nodes}")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    variants = [outside + k for k in subsets] + [list(k) for k in subsets]
    vals = _node_variants_metric(model, data, variants, ablation, reference_tokens, seed, metric,
                                 batch_size)
    n = len(subsets)
    return CompletenessResult(subsets, vals[:n], vals[n:])


def minimality_scores(model: Any, data: TaskDataset, circuit: Iterable[str], *,
                      ablation: Ablation = "corrupted",
                      reference_tokens: Int[Tensor, "n pos"] | None = None,
                      metric: Metric | None = None,
                      batch_size: int | None = None) -> dict[str, float]:
    """For each node v of a node circuit C: ``F(C) - F(C \\ {v})``, the drop in the metric when
    v is also ablated: Wang et al.'s minimality restricted to the empty subset ``K = {}`` (a
    quick first look; :func:`subset_minimality` searches subsets as they do). A node with a
    score near 0 is not needed *on its own*; it may still matter once a partner is removed."""
    check_ablation(ablation)
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise TutorialError("circuit: minimality needs a non-empty node circuit")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    vals = _node_variants_metric(model, data, [outside] + [outside + [v] for v in nodes],
                                 ablation, reference_tokens, 0, metric, batch_size)
    return {v: float(vals[0] - vals[i + 1]) for i, v in enumerate(nodes)}


@dataclass
class MinimalityResult:
    """Wang et al.'s minimality of each node ``v`` of a circuit ``C``:
    ``score[v] = max_K |F(C \\ (K u {v})) - F(C \\ K)|`` over the subsets ``K`` of ``C \\ {v}``
    searched, the subset ``K`` reaching it, and the score with ``K = {}`` for comparison.
    ``relative[v] = score[v] / |F(C)|`` is the share of the circuit's metric (how Wang et al.
    plot it)."""

    nodes: list[str]
    score: dict[str, float]
    best_subset: dict[str, list[str]]
    score_empty_subset: dict[str, float]
    metric_circuit: float
    search: str
    n_subsets_tried: int

    @property
    def relative(self) -> dict[str, float]:
        denom = abs(self.metric_circuit)
        return {v: (s / denom if denom > 0 else float("nan")) for v, s in self.score.items()}


def subset_minimality(model: Any, data: TaskDataset, circuit: Iterable[str], *,
                      search: Literal["greedy", "exhaustive"] = "greedy",
                      max_subset_size: int | None = None, ablation: Ablation = "corrupted",
                      reference_tokens: Int[Tensor, "n pos"] | None = None,
                      metric: Metric | None = None,
                      batch_size: int | None = None) -> MinimalityResult:
    """Wang et al. (2023, section 4.3) minimality: for each node ``v`` of the node circuit
    ``C``, the largest ``|F(C \\ (K u {v})) - F(C \\ K)|`` over subsets ``K`` of ``C \\ {v}``,
    where ``F(X)`` is the metric with every node outside ``X`` ablated. A node is needed when
    removing it changes the metric for *some* ``K``: two redundant nodes score 0 each with
    ``K = {}`` but a large score once the other is in ``K``.

    ``search="exhaustive"`` tries every subset (circuits of at most
    :data:`EXHAUSTIVE_MAX_NODES` nodes); ``"greedy"`` grows ``K`` one node at a time, adding the
    node that raises the score most, up to ``max_subset_size`` (default ``|C| - 1``), keeping
    the best ``K`` seen (Wang et al. chose ``K`` by hand and by such searches). Each round is one
    stacked run."""
    check_ablation(ablation)
    if search not in ("greedy", "exhaustive"):
        raise TutorialError(f"search must be 'greedy' or 'exhaustive', got {search!r}")
    nodes = list(dict.fromkeys(_check_nodes(model, circuit)))
    if not nodes:
        raise TutorialError("circuit: minimality needs a non-empty node circuit")
    limit = len(nodes) - 1 if max_subset_size is None else max_subset_size
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise TutorialError(f"max_subset_size must be an integer >= 0, got {max_subset_size!r}")
    if search == "exhaustive" and len(nodes) > EXHAUSTIVE_MAX_NODES:
        raise TutorialError(f"search='exhaustive' tries 2^(|C|-1) subsets per node; this circuit "
                            f"has {len(nodes)} nodes (at most {EXHAUSTIVE_MAX_NODES}): use "
                            "search='greedy'")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    cache: dict[frozenset[str], float] = {}

    def evaluate(removed_sets: list[frozenset[str]]) -> None:
        todo = [k for k in dict.fromkeys(removed_sets) if k not in cache]
        if todo:
            vals = _node_variants_metric(model, data, [outside + sorted(k) for k in todo],
                                         ablation, reference_tokens, 0, metric, batch_size)
            cache.update({k: float(v) for k, v in zip(todo, vals)})

    def gain(v: str, k: frozenset[str]) -> float:
        return abs(cache[k | {v}] - cache[k])

    score, best, empty = {}, {}, {}
    evaluate([frozenset()] + [frozenset({v}) for v in nodes])
    for v in nodes:
        empty[v] = gain(v, frozenset())
        rest = [u for u in nodes if u != v]
        if search == "exhaustive":
            ks = [frozenset(c) for r in range(min(limit, len(rest)) + 1)
                  for c in itertools.combinations(rest, r)]
            evaluate(ks + [k | {v} for k in ks])
            k_best = max(ks, key=lambda k: (gain(v, k), -len(k)))
        else:
            k_best, k_cur = frozenset(), frozenset()
            while len(k_cur) < limit:
                cands = [k_cur | {u} for u in rest if u not in k_cur]
                if not cands:
                    break
                evaluate(cands + [k | {v} for k in cands])
                k_cur = max(cands, key=lambda k: gain(v, k))
                if gain(v, k_cur) > gain(v, k_best):
                    k_best = k_cur
        score[v], best[v] = gain(v, k_best), sorted(k_best)
    return MinimalityResult(nodes, score, best, empty, cache[frozenset()], search, len(cache))
