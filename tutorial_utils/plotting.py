"""Static matplotlib figures shared by the notebooks.

Every function returns the ``Figure`` (the notebook displays it), puts a title and axis labels
on it, labels token axes with the tokens, and adds a colour bar whenever colour carries a value.
matplotlib figures survive GitHub rendering, nbval and PDF export, unlike interactive views.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def heatmap(
    values,
    title: str,
    xlabel: str,
    ylabel: str,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    cbar_label: str = "",
    center: float | None = None,
    cmap: str | None = None,
    annotate: bool = False,
    fmt: str = "{:.2f}",
    figsize: tuple[float, float] | None = None,
    ax: plt.Axes | None = None,
):
    """A labelled heatmap of a 2-D array ``[rows, cols]``.

    ``center`` (e.g. 0 for signed effects) makes a diverging colour map symmetric around it.
    ``annotate`` writes each value in its cell (for small grids).
    """
    v = _np(values)
    if v.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D array, got shape {v.shape}")
    if ax is None:
        if figsize is None:
            figsize = (min(1.0 + 0.55 * v.shape[1], 14), min(1.2 + 0.45 * v.shape[0], 10))
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    kwargs = {}
    if center is not None:
        lim = float(np.nanmax(np.abs(v - center))) or 1.0
        kwargs = dict(vmin=center - lim, vmax=center + lim)
        cmap = cmap or "RdBu_r"
    im = ax.imshow(v, aspect="auto", cmap=cmap or "viridis", **kwargs)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(cbar_label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)))
        ax.set_xticklabels(list(xticklabels), rotation=60, ha="right", fontsize=8)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)))
        ax.set_yticklabels(list(yticklabels), fontsize=8)
    if annotate:
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if im.norm(v[i, j]) < 0.5 else "black")
    fig.tight_layout()
    return fig


def attention_heatmap(pattern, tokens: Sequence[str], title: str, ax: plt.Axes | None = None):
    """One head's attention pattern ``[query, key]`` with token labels on both axes."""
    p = _np(pattern)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] != len(tokens):
        raise ValueError(f"pattern {p.shape} does not match {len(tokens)} tokens")
    return heatmap(p, title, "key (attended-to) token", "query (attending) token", tokens,
                   tokens, cbar_label="attention weight", cmap="Blues", ax=ax,
                   figsize=(1.5 + 0.32 * len(tokens), 1.0 + 0.3 * len(tokens)))


def attention_grid(patterns, tokens: Sequence[str], title: str, layer_labels=None):
    """All heads of one or more layers: ``patterns`` ``[layer, head, query, key]``."""
    p = _np(patterns)
    n_layers, n_heads = p.shape[:2]
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(2.6 * n_heads + 1, 2.4 * n_layers + 0.8),
                             squeeze=False)
    for l in range(n_layers):
        for h in range(n_heads):
            ax = axes[l, h]
            im = ax.imshow(p[l, h], cmap="Blues", vmin=0, vmax=1)
            name = layer_labels[l] if layer_labels is not None else f"L{l}"
            ax.set_title(f"{name} H{h}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if h == 0:
                ax.set_ylabel("query")
            if l == n_layers - 1:
                ax.set_xlabel("key")
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(f"{title} ({len(tokens)} tokens)")
    return fig


def bar(values, labels: Sequence[str], title: str, ylabel: str, xlabel: str = "",
        color=None, figsize=None):
    """A labelled bar chart."""
    v = _np(values)
    fig, ax = plt.subplots(figsize=figsize or (max(4, 0.45 * len(v) + 1.5), 3.5))
    ax.bar(range(len(v)), v, color=color)
    ax.set_xticks(range(len(v)))
    ax.set_xticklabels(list(labels), rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig
