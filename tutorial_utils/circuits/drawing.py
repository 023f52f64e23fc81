"""Draw a circuit: nodes by layer (embed at the bottom, logits at the top), edges with width
proportional to |score|, coloured by the receiving input (q, k, v, or MLP/logits) and styled by
sign (solid: corrupting the edge lowers the metric, i.e. it supports the task; dashed: it
raises it).

``backend="graphviz"`` uses the ``graphviz`` Python package and the ``dot`` program when both are
installed; ``"matplotlib"`` (the fallback, needing no system package) always works.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..graph import QKV, Graph
from ..errors import TutorialError
from ..names import head_name, mlp_name

__all__ = ["COLOURS", "draw_circuit", "graphviz_available"]

COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#9467bd", "mlp": "#7f7f7f", "logits": "#d62728"}


def _edge_kind(name: str) -> str:
    if name == "logits":
        return "logits"
    for c in QKV:
        if name.startswith("a") and name.endswith(f".{c}"):
            return c
    return "mlp"


def _positions(graph: Graph) -> dict[str, tuple[float, float]]:
    H = graph.n_heads
    # heads in a row per layer; MLPs in a column to the right of the heads, so that the
    # residual "trunk" of MLP-to-MLP edges does not run through the head rows
    pos = {"embed": ((H - 1) / 2, 0.0)}
    for l in range(graph.n_layers):
        for h in range(H):
            pos[head_name(l, h)] = (float(h), 2.0 * l + 1)
        pos[mlp_name(l)] = (H + 0.5, 2.0 * l + 2)
    pos["logits"] = ((H - 1) / 2, 2.0 * graph.n_layers + 2)
    return pos


def graphviz_available() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def _edges(graph: Graph, mask: Tensor, scores: Tensor | None) -> list[tuple[str, str, str, float]]:
    out = []
    fw, bw = graph.forward_names, graph.backward_names
    for s, r in mask.nonzero().tolist():
        recv = bw[r]
        node = graph.receiver_node(recv)
        score = float(scores[s, r]) if scores is not None else 1.0
        out.append((fw[s], node, _edge_kind(recv), score))
    return out


def draw_circuit(graph: Graph, mask: Bool[Tensor, "sender receiver"] | None = None,
                 scores: Float[Tensor, "sender receiver"] | None = None,
                 backend: str = "auto", title: str | None = None, ax: Any = None,
                 path: str | Path | None = None, max_width: float = 4.0) -> Any:
    """Draw the circuit ``mask`` (default ``graph.in_graph``) with edge widths from ``scores``
    (default ``graph.scores``; uniform if none).

    Args:
        backend: ``auto`` (graphviz if installed, else matplotlib), ``graphviz`` or ``matplotlib``.
        ax: a matplotlib axes to draw into (matplotlib backend).
        path: save the figure there (PNG/SVG/PDF by extension).

    Returns:
        a ``matplotlib.figure.Figure`` or a ``graphviz.Digraph``.
    """
    if backend not in ("auto", "graphviz", "matplotlib"):
        raise TutorialError(f"backend must be auto, graphviz or matplotlib, got {backend!r}")
    mask = graph.in_graph if mask is None else graph.check_mask(mask, "mask")
    scores = graph.scores if scores is None else scores
    if scores is not None:
        if not isinstance(scores, Tensor) or tuple(scores.shape) != tuple(mask.shape):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise TutorialError(f"scores must be a tensor of shape {tuple(mask.shape)}, got {got}")
        if not bool(torch.isfinite(scores.detach().cpu()[mask]).all()):
            raise TutorialError("scores contain NaN or infinite values on the circuit's edges: "
                                "edge widths would be meaningless")
    if backend == "graphviz" and not graphviz_available():
        raise TutorialError("the graphviz backend needs `pip install graphviz` and the `dot` program; "
                         "use backend='matplotlib'")
    edges = _edges(graph, mask, scores)
    top = max((abs(e[3]) for e in edges), default=1.0) or 1.0
    if backend == "graphviz" or (backend == "auto" and graphviz_available()):
        return _draw_graphviz(graph, edges, top, title, path, max_width)
    return _draw_matplotlib(graph, edges, top, title, ax, path, max_width)


def _draw_matplotlib(graph: Graph, edges: list, top: float, title: str | None, ax: Any,
                     path: str | Path | None, max_width: float) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pos = _positions(graph)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * graph.n_heads + 5),
                                        max(5.5, 0.6 * (2 * graph.n_layers + 3))))
    else:
        fig = ax.figure
    used = {e[0] for e in edges} | {e[1] for e in edges}
    for s, r, kind, score in sorted(edges, key=lambda e: abs(e[3])):
        (x0, y0), (x1, y1) = pos[s], pos[r]
        # bend each edge by an amount growing with its length, so that edges between nodes
        # of one column (MLP to MLP) stay apart instead of running through the nodes between
        t = torch.linspace(0, 1, 20)
        bend = 0.22 * abs(y1 - y0) * (1 if x1 >= x0 else -1)
        xs = (x0 + (x1 - x0) * t + bend * 4 * t * (1 - t)).tolist()
        ys = (y0 + (y1 - y0) * t).tolist()
        ax.plot(xs, ys, color=COLOURS[kind],
                lw=0.3 + max_width * abs(score) / top, ls="-" if score <= 0 else "--",
                alpha=0.75, zorder=1)
    for name, (x, y) in pos.items():
        on = name in used
        colour = "#ffd966" if name.startswith("a") else "#9fc5e8" if name.startswith("m") \
            else "#d9d9d9"
        ax.scatter([x], [y], s=260 if on else 100, c=colour if on else "#f3f3f3",
                   edgecolors="black" if on else "#cccccc", zorder=2)
        if on or not name.startswith("a"):
            # beside the node, on a white ground: a name wider than its marker stays whole
            ax.annotate(name, (x, y), xytext=(9, 0), textcoords="offset points", ha="left",
                        va="center", fontsize=8, zorder=3, annotation_clip=False,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    handles = [Line2D([], [], color=COLOURS[k], lw=2, label=lab) for k, lab in
               (("q", "to query"), ("k", "to key"), ("v", "to value"), ("mlp", "to MLP"),
                ("logits", "to logits"))]
    handles += [Line2D([], [], color="black", ls="-", label="score < 0 (supports task)"),
                Line2D([], [], color="black", ls="--", label="score > 0")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_yticks([0] + [2 * l + 1 for l in range(graph.n_layers)] + [2 * graph.n_layers + 2])
    ax.set_yticklabels(["embed"] + [f"layer {l} heads" for l in range(graph.n_layers)]
                       + ["logits"])
    ax.set_xticks(list(range(graph.n_heads)) + [graph.n_heads + 0.5])
    ax.set_xticklabels([str(h) for h in range(graph.n_heads)] + ["MLPs"])
    ax.set_xlabel("head index")
    ax.set_ylabel("position in the forward pass")
    ax.set_title(title or f"circuit: {len(edges)} edges, {len(used)} nodes")
    ax.set_xlim(-1, graph.n_heads + 3.0)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _draw_graphviz(graph: Graph, edges: list, top: float, title: str | None,
                   path: str | Path | None, max_width: float) -> Any:  # pragma: no cover
    import graphviz

    dot = graphviz.Digraph(graph_attr={"rankdir": "BT", "label": title or ""})
    used = {e[0] for e in edges} | {e[1] for e in edges}
    for name in graph.node_names:
        if name in used:
            dot.node(name, shape="box" if name.startswith("m") else "ellipse")
    for s, r, kind, score in edges:
        dot.edge(s, r, color=COLOURS[kind], penwidth=f"{0.5 + max_width * abs(score) / top:.2f}",
                 style="solid" if score <= 0 else "dashed")
    if path is not None:
        p = Path(path)
        dot.render(str(p.with_suffix("")), format=p.suffix.lstrip(".") or "png", cleanup=True)
    return dot
