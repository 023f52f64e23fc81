"""Faithfulness of a circuit: how much of the model's behaviour the circuit alone recovers.

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

Error / NaN policy: when ``|m(full) - m(corrupted)| <= atol`` the ratio is undefined (the corruption
does not change the metric, so there is nothing for a circuit to recover). With
``on_degenerate="raise"`` (default) a ``ValueError`` is raised; with ``"nan"`` those entries are NaN.
"""

from __future__ import annotations

from typing import Literal, Union

import torch

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
