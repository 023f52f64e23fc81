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
``normalized_faithfulness(metric_circuit, metric_full, metric_corrupted, *, on_degenerate="raise",
atol=1e-6)``
    The formula above for floats or tensors (elementwise, broadcasting).

``circuit_faithfulness(model, data, circuit, method="resample")`` -> ``FaithfulnessResult``
    A circuit is a set of nodes (``"embed"``, ``"aL.hH"``, ``"mL"``) or of edges
    ``(sender, receiver_input)`` (see :mod:`tutorial_utils.path_patching`); everything outside it
    is ablated (resample from the corrupted run by default; ``mean`` and ``zero`` optional).
``completeness_check(model, data, nodes, subsets=None)`` -> ``CompletenessResult``
    Wang et al. (2023): ``|F(C \ K) - F(M \ K)|`` for subsets ``K`` of the circuit ``C``.
``minimality_scores(model, data, nodes)`` -> ``{node: F(C) - F(C \ {node})}``.
``all_nodes(model)`` -- every node name.

Error / NaN policy: when ``|m(full) - m(corrupted)| <= atol`` the ratio is undefined (the corruption
does not change the metric, so there is nothing for a circuit to recover). With
``on_degenerate="raise"`` (default) a ``ValueError`` is raised; with ``"nan"`` those entries are NaN.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass as _dataclass, field as _field
from typing import Any, Iterable, Literal, Sequence, Union

import torch
from torch import Tensor

from . import patching as _P
from . import path_patching as _PP

Number = Union[float, int, torch.Tensor]


def normalized_faithfulness(
    metric_circuit: Number,
    metric_full: Number,
    metric_corrupted: Number,
    *,
    on_degenerate: Literal["raise", "nan"] = "raise",
    atol: float = 1e-6,
) -> Number:
    """(m(circuit) - m(corrupted)) / (m(full) - m(corrupted)).

    Args:
        metric_circuit, metric_full, metric_corrupted: floats, or tensors of broadcastable shapes
            (e.g. ``[B]`` per-example metrics, giving per-example faithfulness).
        on_degenerate: what to do where ``|m(full) - m(corrupted)| <= atol``: ``"raise"`` a
            ``ValueError`` (default), or return ``"nan"`` there.
        atol: the tolerance below which full and corrupted count as equal.

    Returns:
        A float if all three inputs are Python numbers (or 0-d tensors), else a tensor.

    Reference: Wang et al. 2023 (IOI), section 4; the same normalisation as in Hanna et al. 2023.
    """
    if on_degenerate not in ("raise", "nan"):
        raise ValueError(f"on_degenerate must be 'raise' or 'nan', got {on_degenerate!r}")
    all_scalar = all(
        not isinstance(x, torch.Tensor) or x.ndim == 0
        for x in (metric_circuit, metric_full, metric_corrupted)
    )
    c, f, k = (
        torch.as_tensor(x, dtype=torch.float64).detach().cpu()
        for x in (metric_circuit, metric_full, metric_corrupted)
    )
    for name, x in (("metric_circuit", c), ("metric_full", f), ("metric_corrupted", k)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} is not finite: {x}")
    denom = f - k
    degenerate = denom.abs() <= atol
    if degenerate.any() and on_degenerate == "raise":
        raise ValueError(
            f"metric_full ({f.flatten()[:4].tolist()}) equals metric_corrupted "
            f"({k.flatten()[:4].tolist()}) within atol={atol}: the corruption does not change the "
            "metric, so normalised faithfulness is undefined (pass on_degenerate='nan' to get NaN)"
        )
    out = (c - k) / torch.where(degenerate, torch.ones_like(denom), denom)
    out = torch.where(degenerate, torch.full_like(out, float("nan")), out)
    if all_scalar:
        return float(out)
    return out.to(torch.float32)


# --------------------------------------------------------------------------------------------
# Faithfulness, completeness and minimality of a circuit
# --------------------------------------------------------------------------------------------

_METHOD_TO_EDGE_SOURCE = {"resample": "corrupted", "mean": "mean", "zero": "zero"}


def all_nodes(model: Any) -> list[str]:
    """Every node of the model: ``embed``, each head ``aL.hH`` and each MLP ``mL``."""
    return list(_PP.Graph.from_model(model).senders)


def _is_edge_circuit(circuit: Iterable[Any]) -> bool:
    items = list(circuit)
    kinds = {isinstance(x, tuple) for x in items}
    if len(kinds) > 1:
        raise ValueError("a circuit is either a set of nodes (strings) or a set of edges "
                         "(sender, receiver) pairs, not a mix")
    return kinds == {True}


def _check_nodes(model: Any, nodes: Iterable[str]) -> list[str]:
    valid = set(all_nodes(model))
    out = []
    for n in nodes:
        if n == "logits":
            continue
        if n not in valid:
            raise ValueError(f"unknown node {n!r}: use 'embed', 'aL.hH' (L < {model.cfg.n_layers}, "
                             f"H < {model.cfg.n_heads}) or 'mL'")
        out.append(n)
    return out


def _node_component(node: str) -> _P.Component:
    return _P.Component.parse(node)


def _node_variants_metric(model: Any, data: Any, ablated_sets: Sequence[Sequence[str]], method: str,
                          reference_tokens: Tensor | None, metric: Any, per_example: bool = False
                          ) -> Tensor:
    """Metric of the clean run with each set of nodes ablated (one batched run)."""
    clean, corr = _P.unpack_data(data)
    metric_fn = _P.make_metric(data, metric, per_example)
    comps = [[_node_component(n) for n in s] for s in ablated_sets]
    names = sorted({c.hook_name for v in comps for c in v})
    if not names:
        names = [_node_component("embed").hook_name]
    if method == "mean" and reference_tokens is None:
        reference_tokens = corr
    sources = _P.ablation_sources(model, clean, names, method, corrupted_tokens=corr,
                                  reference_tokens=reference_tokens)
    return _P.run_patch_variants(model, clean, comps, sources, metric_fn)


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


def circuit_faithfulness(model: Any, data: Any, circuit: Iterable[Any], *,
                         method: str = "resample", reference_tokens: Tensor | None = None,
                         metric: Any = None, on_degenerate: str = "nan") -> FaithfulnessResult:
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
    if method not in _METHOD_TO_EDGE_SOURCE:
        raise ValueError(f"method must be 'resample', 'mean' or 'zero', got {method!r}")
    circuit = list(circuit)
    clean, corr = _P.unpack_data(data)
    metric_fn = _P.make_metric(data, metric)
    with torch.no_grad():
        m_corr = float(metric_fn(model(corr.to(model.cfg.device)), 1)[0])
    if _is_edge_circuit(circuit) and circuit:
        g = _PP.Graph.from_model(model)
        inside = set(g.check_edges(circuit))
        outside = [e for e in g.edges if e not in inside]
        vals = _PP.edge_patching(model, data, [outside, [], g.edges],
                                 source=_METHOD_TO_EDGE_SOURCE[method], metric=metric,
                                 reference_tokens=reference_tokens)
        kind, size = "edge", len(inside)
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
                       reference_tokens: Tensor | None = None, metric: Any = None
                       ) -> CompletenessResult:
    """Completeness of a node circuit (Wang et al. 2023, section 4.2), batched.

    ``subsets`` (of circuit nodes) default to the empty set, every single node, and
    ``n_random`` random subsets (each node kept with probability 1/2); duplicates are dropped.
    """
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise ValueError("completeness needs a non-empty node circuit")
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
            raise ValueError(f"subset {k} is not inside the circuit")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    variants = [outside + k for k in subsets] + [list(k) for k in subsets]
    vals = _node_variants_metric(model, data, variants, method, reference_tokens, metric)
    n = len(subsets)
    return CompletenessResult(subsets, vals[:n], vals[n:])


def minimality_scores(model: Any, data: Any, circuit: Iterable[str], *, method: str = "resample",
                      reference_tokens: Tensor | None = None, metric: Any = None
                      ) -> dict[str, float]:
    """For each node v of a node circuit C: ``F(C) - F(C \\ {v})`` (Wang et al. 2023's minimality
    with K = {}), the drop in the metric when v is also ablated. A node with a score near 0 is
    not needed for this metric."""
    nodes = _check_nodes(model, circuit)
    if not nodes:
        raise ValueError("minimality needs a non-empty node circuit")
    outside = [n for n in all_nodes(model) if n not in set(nodes)]
    vals = _node_variants_metric(model, data, [outside] + [outside + [v] for v in nodes], method,
                                 reference_tokens, metric)
    return {v: float(vals[0] - vals[i + 1]) for i, v in enumerate(nodes)}
