"""matplotlib figures for notebook 06: the toy models' geometry, an attribution graph, and
interventions against the graph's predictions. Each function returns the figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch

from ..names import mlp_name
from .attribution import AttributionGraph
from .interventions import STAGES, InterventionCheck
from .pruning import PrunedGraph
from .superposition import ToyModels, feature_geometry

__all__ = ["plot_graph", "plot_interventions", "plot_superposition", "plot_dimensionality"]


def plot_superposition(toy: ToyModels) -> Any:
    """For each sparsity: the Gram matrix ``W^T W`` (top) and each feature's norm, coloured by
    its interference with the others (bottom), as in Elhage et al. 2022, figure 2."""
    g = feature_geometry(toy.W)
    K = toy.W.shape[0]
    fig, axes = plt.subplots(2, K, figsize=(2.6 * K, 5.2), squeeze=False)
    n = toy.W.shape[2]
    for k, S in enumerate(toy.config.sparsities):
        im = axes[0, k].imshow(g["gram"][k], cmap="RdBu_r", vmin=-1, vmax=1)
        axes[0, k].set_title(f"S = {S}\n{int(g['represented'][k])}/{n} represented")
        axes[0, k].set_xlabel("feature j")
        axes[0, k].set_ylabel("feature i")
        inter = g["interference"][k].clamp(0, 1)
        colors = plt.cm.viridis(inter.numpy())
        axes[1, k].barh(range(n), g["norms"][k], color=colors)
        axes[1, k].invert_yaxis()
        axes[1, k].set_xlim(0, 1.5)
        axes[1, k].set_xlabel("||W_i||")
        axes[1, k].set_ylabel("feature (importance ->)")
    fig.colorbar(im, ax=axes[0].tolist(), label="W^T W entry", shrink=0.8)
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[1].tolist(), label="interference sum_j (W_hat_i . W_j)^2",
                 shrink=0.8)
    fig.suptitle(f"Toy models: {n} features in {toy.W.shape[1]} dimensions")
    return fig


def plot_dimensionality(toy: ToyModels) -> Any:
    """Dimensions per feature ``m / ||W||_F^2`` against ``1 / (1 - S)``, with each feature's
    dimensionality ``D_i`` as dots (Elhage et al. 2022, section 4)."""
    g = feature_geometry(toy.W)
    x = 1.0 / (1.0 - torch.tensor(toy.config.sparsities))
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in range(len(x)):
        d = g["dimensionality"][k]
        d = d[g["norms"][k] > 0.5]
        ax.scatter([float(x[k])] * len(d), d, s=12, alpha=0.5, color="tab:blue")
    ax.plot(x, g["dims_per_feature"], "k-o", label="dimensions per feature m / ||W||_F^2")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)   (sparser ->)")
    ax.set_ylabel("dimensions per feature")
    ax.set_title("Feature dimensionality as sparsity grows (dots: D_i of represented features)")
    ax.legend()
    return fig


def plot_graph(graph: AttributionGraph, pruned: PrunedGraph, max_edges: int = 200,
               title: str = "", labels_per_cell: int = 2) -> Any:
    """The pruned graph: x = token position, y = layer (embeddings at the bottom, logits on
    top); edge width ~ |weight|, blue positive, red negative. Nodes that share a (position,
    layer) cell are spread across it, and only its ``labels_per_cell`` most influential feature
    nodes are labelled (a dense cell would otherwise be unreadable)."""
    layer = graph.node_layer().float()
    pos = graph.node_pos().float()
    kind = [graph.node_kind(i) for i in range(graph.n_nodes)]
    keep = pruned.node_mask
    x = pos.clone()
    y = layer.clone() + 1
    # spread nodes that share a cell
    labelled: dict[int, int] = {}   # feature node -> its rank in its cell (label offset)
    infl = pruned.node_influence
    for cell in {(float(a), float(b)) for a, b in zip(x[keep], y[keep])}:
        idx = [i for i in keep.nonzero()[:, 0].tolist() if (float(x[i]), float(y[i])) == cell]
        idx.sort(key=lambda i: -float(infl[i]))          # most influential in the middle
        order = sorted(range(len(idx)), key=lambda j: abs(j - (len(idx) - 1) / 2))
        step = min(0.9 / max(len(idx), 1), 0.25)
        for rank, j in enumerate(order):
            x[idx[rank]] = cell[0] + (j - (len(idx) - 1) / 2) * step
        feats = [i for i in idx if graph.node_kind(i) == "feature"][:labels_per_cell]
        labelled.update({i: r for r, i in enumerate(feats)})
    logit = graph.slices()["logit"]
    n_l = logit.stop - logit.start
    for j, i in enumerate(range(logit.start, logit.stop)):
        x[i] = graph.n_tokens - 1 + (j - (n_l - 1) / 2) * 0.5
    fig, ax = plt.subplots(figsize=(max(9, graph.n_tokens * 1.0), 7))
    A = graph.adjacency * pruned.edge_mask
    t_idx, s_idx = A.nonzero(as_tuple=True)
    w = A[t_idx, s_idx]
    order = w.abs().argsort(descending=True)[:max_edges]
    wmax = float(w.abs().max()) if w.numel() else 1.0
    for o in order.tolist():
        t, s, v = int(t_idx[o]), int(s_idx[o]), float(w[o])
        ax.plot([x[s], x[t]], [y[s], y[t]], color="tab:blue" if v > 0 else "tab:red",
                lw=0.3 + 3 * abs(v) / wmax, alpha=0.5, zorder=1)
    style = {"feature": ("o", "tab:orange"), "error": ("s", "tab:gray"),
             "embed": ("^", "tab:green"), "logit": ("D", "tab:purple")}
    for k, (marker, color) in style.items():
        idx = [i for i in keep.nonzero()[:, 0].tolist() if kind[i] == k]
        if idx:
            ax.scatter(x[idx], y[idx], marker=marker, color=color, s=40, zorder=2, label=k)
    for i in keep.nonzero()[:, 0].tolist():
        if i in labelled or kind[i] == "logit":
            name = graph.node_name(i).replace("logit ", "")
            r = labelled.get(i, 0)       # stacked labels of one cell, one line apart
            ax.annotate(name.split(".")[-1] if kind[i] == "feature" else name, (x[i], y[i]),
                        fontsize=6.5, xytext=(4, 5 + 9 * r), textcoords="offset points",
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    ax.set_xticks(range(graph.n_tokens))
    ax.set_xticklabels(graph.token_strs, rotation=60, fontsize=8)
    ax.set_yticks(range(graph.n_layers + 2))
    ax.set_yticklabels(["embed"] + [mlp_name(l) for l in range(graph.n_layers)] + ["logits"])
    ax.set_xlabel("token position")
    ax.set_ylabel("layer")
    ax.set_title(title or f"Pruned attribution graph: {pruned.n_nodes} nodes, "
                 f"{pruned.n_edges} edges (blue +, red -)")
    ax.legend(loc="upper left", fontsize=7)
    return fig


def plot_interventions(check: InterventionCheck, target: int = 0, target_name: str = "") -> Any:
    """The graph's predicted change of logit node ``target`` against the measured change at
    each later stage (frozen replacement, replacement, real model); the diagonal is agreement."""
    pred = check.deltas["graph"][:, target]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    lim = float(max(pred.abs().max(), *(check.deltas[s][:, target].abs().max()
                                        for s in STAGES[1:]))) * 1.1 or 1.0
    for ax, stage in zip(axes, STAGES[1:]):
        ax.scatter(pred, check.deltas[stage][:, target], s=14)
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("graph prediction")
        ax.set_ylabel(f"measured: {stage}")
        ax.set_title(stage)
    fig.suptitle(f"Scaling each feature by {check.scale}: change of {target_name or 'logit'}")
    return fig
