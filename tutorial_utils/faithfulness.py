r"""Faithfulness of a circuit: how much of the model's behaviour the circuit alone recovers.

Normalised faithfulness (Wang et al. 2023, "Interpretability in the Wild"; Hanna et al. 2023;
Conmy et al. 2023) compares three numbers of one task metric ``m``:

* ``m(full)``      -- the unmodified model on the clean prompts,
* ``m(corrupted)`` -- the model on the corrupted prompts (every component ablated),
* ``m(circuit)``   -- the model with everything *outside* the circuit ablated,

    faithfulness = (m(circuit) - m(corrupted)) / (m(full) - m(corrupted)).

1 means the circuit recovers the full model's behaviour, 0 means it recovers none of it.

Public API
----------
``normalized_faithfulness(metric_circuit, metric_full, metric_corrupted)``
    The formula above for floats or tensors (elementwise, broadcasting): the package's one
    :func:`tutorial_utils.metrics.normalize`.

``circuit_faithfulness(model, data, circuit, method="resample")`` -> ``FaithfulnessResult``
    A circuit is a set of nodes (``"embed"``, ``"aL.hH"``, ``"mL"``) or of edges
    ``(sender, receiver_input)`` (see :mod:`tutorial_utils.graph`); everything outside it
    is ablated (resample from the corrupted run by default; ``mean`` and ``zero`` optional), on
    the one engine :func:`tutorial_utils.interchange.run_variants` (node masks or edge masks).
``completeness_check(model, data, nodes, subsets=None)`` -> ``CompletenessResult``
    Wang et al. (2023): ``|F(C \ K) - F(M \ K)|`` for subsets ``K`` of the circuit ``C``.
``minimality_scores(model, data, nodes)`` -> ``{node: F(C) - F(C \ {node})}``.
``all_nodes(model)`` -- every node name.

Degenerate policy (the package's one, :mod:`tutorial_utils.metrics`): when
``|m(full) - m(corrupted)| <= 1e-6`` the ratio is undefined (the corruption does not change the
metric, so there is nothing for a circuit to recover) and the result is NaN;
``on_degenerate="raise"`` raises a :class:`~tutorial_utils.errors.TutorialError` instead.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass as _dataclass, field as _field
from typing import Any, Iterable, Literal, Sequence, Union

import torch
from torch import Tensor

from .graph import Graph
from .interchange import metric_of_runs, run_variants
from .metrics import Metric, normalize
from .tasks.base import TaskDataset
from .errors import TutorialError
from .validation import check_dataset

__all__ = ["CompletenessResult", "FaithfulnessResult", "all_nodes", "circuit_faithfulness",
           "completeness_check", "minimality_scores", "normalized_faithfulness"]

Number = Union[float, int, torch.Tensor]


def normalized_faithfulness(
    metric_circuit: Number,
    metric_full: Number,
    metric_corrupted: Number,
    *,
    on_degenerate: Literal["raise", "nan"] = "nan",
    atol: float = 1e-6,
) -> Number:
    """(m(circuit) - m(corrupted)) / (m(full) - m(corrupted)): :func:`tutorial_utils.metrics.normalize`.

    Args:
        metric_circuit, metric_full, metric_corrupted: floats, or tensors of broadcastable shapes
            (e.g. ``[B]`` per-example metrics, giving per-example faithfulness).
        on_degenerate: where ``|m(full) - m(corrupted)| <= atol``: ``"nan"`` (default, the
            package's one policy) or ``"raise"`` a ``TutorialError``.

    Returns:
        A float if all three inputs are Python numbers (or 0-d tensors), else a tensor.

    Reference: Wang et al. 2023 (IOI), section 4; the same normalisation as in Hanna et al. 2023.
    """
    return normalize(metric_circuit, metric_full, metric_corrupted, on_degenerate=on_degenerate,
                     atol=atol)


# --------------------------------------------------------------------------------------------
# Faithfulness, completeness and minimality of a circuit
# --------------------------------------------------------------------------------------------

_METHOD_TO_SOURCE = {"resample": "corrupted", "mean": "mean", "zero": "zero"}


def all_nodes(model: Any) -> list[str]:
    """Every node of the model: ``embed``, each head ``aL.hH`` and each MLP ``mL``."""
    return list(Graph.from_model(model).senders)


def _is_edge_circuit(circuit: Iterable[Any]) -> bool:
    items = list(circuit)
    kinds = {isinstance(x, tuple) or (isinstance(x, str) and "->" in x) for x in items}
    if len(kinds) > 1:
        raise TutorialError("circuit: a circuit is either a set of nodes ('a0.h1') or a set of "
                            "edges (('a0.h1', 'm2') or 'a0.h1->m2'), not a mix")
    return kinds == {True}


def _check_nodes(model: Any, nodes: Iterable[str]) -> list[str]:
    g = Graph.from_model(model)
    out = []
    for n in nodes:
        if n == "logits":
            continue
        if n not in g.sender_index:
            raise g.unknown_name_error(n, "node")
        out.append(n)
    return out


def _check_method(method: str) -> str:
    if method not in _METHOD_TO_SOURCE:
        raise TutorialError(f"method must be 'resample', 'mean' or 'zero' (what ablated "
                            f"components output), got {method!r}")
    return _METHOD_TO_SOURCE[method]


def _node_variants_metric(model: Any, data: TaskDataset, ablated_sets: Sequence[Sequence[str]],
                          method: str, reference_tokens: Tensor | None, metric: Metric | None
                          ) -> Tensor:
    """Metric of the clean run with each set of nodes ablated (patched from the source), on
    the one engine, stacked in one batched run."""
    check_dataset(data, model, "data")
    g = Graph.from_model(model)
    patched = torch.stack([g.node_mask(s) for s in ablated_sets])
    return run_variants(model, g, data, patched=patched, source=_check_method(method),
                        metric=metric, reference_tokens=reference_tokens, batch_size=len(data),
                        desc="ablating nodes")


@_dataclass
class FaithfulnessResult:
    """Faithfulness of one circuit.

    ``metric_empty`` is the metric with *everything* ablated by ``method``: for resample ablation
    it equals ``metric_corrupted`` (tested), for mean/zero ablation it is the baseline that
    makes the empty circuit score 0. ``faithfulness`` normalises with ``metric_empty``.
    """

    metric_circuit: float
    metric_full: float
    metric_corrupted: float
    metric_empty: float
    faithfulness: float
    method: str
    kind: str
    size: int

    def __str__(self) -> str:
        return (f"{self.kind} circuit of size {self.size} ({self.method} ablation): "
                f"metric(circuit) = {self.metric_circuit:.3f}, metric(full) = {self.metric_full:.3f}, "
                f"metric(corrupted) = {self.metric_corrupted:.3f}, faithfulness = {self.faithfulness:.3f}")


def circuit_faithfulness(model: Any, data: TaskDataset, circuit: Iterable[Any], *,
                         method: str = "resample", reference_tokens: Tensor | None = None,
                         metric: Metric | None = None, on_degenerate: str = "nan") -> FaithfulnessResult:
    """Ablate everything outside ``circuit`` and compare the metric with the full model's.

    Args:
        circuit: a set of nodes (``"embed"``, ``"aL.hH"``, ``"mL"``; ``"logits"`` is implicit) or
            a set of edges ``(sender, receiver_input)`` as in :mod:`tutorial_utils.path_patching`.
            Node circuit: the nodes outside it output their ablated value. Edge circuit: every
            edge outside it carries the sender's ablated value (edge interchange).
        method: ``resample`` (from the paired corrupted prompt, default), ``mean`` (per-position
            mean over ``reference_tokens``, default the corrupted prompts) or ``zero``.

    Returns:
        :class:`FaithfulnessResult` with
        ``faithfulness = (m(circuit) - m(empty)) / (m(full) - m(empty))``.
    """
    source = _check_method(method)
    check_dataset(data, model, "data")
    circuit = list(circuit)
    g = Graph.from_model(model)
    m_corr = metric_of_runs(model, data, metric, batch_size=len(data))[1]
    if _is_edge_circuit(circuit) and circuit:
        inside = g.edge_mask(circuit)
        removed = torch.stack([g.real_edges & ~inside, g.empty_mask(), g.real_edges])
        vals = run_variants(model, g, data, removed, source=source, metric=metric,
                            reference_tokens=reference_tokens, batch_size=len(data),
                            desc="evaluating the circuit")
        kind, size = "edge", int(inside.sum())
    else:
        nodes = set(_check_nodes(model, circuit))
        every = all_nodes(model)
        outside = [n for n in every if n not in nodes]
        vals = _node_variants_metric(model, data, [outside, [], every], method, reference_tokens,
                                     metric)
        kind, size = "node", len(nodes)
    m_circ, m_full, m_empty = (float(v) for v in vals)
    f = normalized_faithfulness(m_circ, m_full, m_empty, on_degenerate=on_degenerate)
    return FaithfulnessResult(m_circ, m_full, m_corr, m_empty, float(f), method, kind, size)


@_dataclass
class CompletenessResult:
    """Wang et al. (2023) completeness: for subsets K of the circuit C, compare
    F(C \\ K) with F(M \\ K); a complete circuit has ``incompleteness = |F(C\\K) - F(M\\K)|``
    small for every K."""

    subsets: list[list[str]]
    metric_circuit_minus_k: Tensor
    metric_model_minus_k: Tensor
    incompleteness: Tensor = _field(init=False)

    def __post_init__(self) -> None:
        self.incompleteness = (self.metric_circuit_minus_k - self.metric_model_minus_k).abs()


def completeness_check(model: Any, data: Any, circuit: Iterable[str], subsets: Sequence[Sequence[str]]
                       | None = None, *, n_random: int = 8, seed: int = 0, method: str = "resample",
                       reference_tokens: Tensor | None = None, metric: Metric | None = None
                       ) -> CompletenessResult:
    """Completeness of a node circuit (Wang et al. 2023, section 4.2), batched.

    ``subsets`` (of circuit nodes) default to the empty set, every single node, and
    ``n_random`` random subsets (each node kept with probability 1/2); duplicates are dropped.
    """
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise TutorialError("circuit: completeness needs a non-empty node circuit")
    if subsets is None:
        rng = _random.Random(seed)
        subsets = [[]] + [[n] for n in nodes] + [
            [n for n in nodes if rng.random() < 0.5] for _ in range(n_random)]
    unique: dict[tuple[str, ...], list[str]] = {}
    for k in subsets:
        k = list(_check_nodes(model, k))
        unique.setdefault(tuple(sorted(k)), k)
    subsets = list(unique.values())
    for k in subsets:
        if not set(k) <= set(nodes):
            raise TutorialError(f"subsets: {k} is not inside the circuit {nodes}")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    variants = [outside + k for k in subsets] + [list(k) for k in subsets]
    vals = _node_variants_metric(model, data, variants, method, reference_tokens, metric)
    n = len(subsets)
    return CompletenessResult(subsets, vals[:n], vals[n:])


def minimality_scores(model: Any, data: Any, circuit: Iterable[str], *, method: str = "resample",
                      reference_tokens: Tensor | None = None, metric: Metric | None = None
                      ) -> dict[str, float]:
    """For each node v of a node circuit C: ``F(C) - F(C \\ {v})`` (Wang et al. 2023's minimality
    with K = {}), the drop in the metric when v is also ablated. A node with a score near 0 is
    not needed for this metric."""
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise TutorialError("circuit: minimality needs a non-empty node circuit")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    vals = _node_variants_metric(model, data, [outside] + [outside + [v] for v in nodes], method,
                                 reference_tokens, metric)
    return {v: float(vals[0] - vals[i + 1]) for i, v in enumerate(nodes)}
