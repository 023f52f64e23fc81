"""Static matplotlib figures shared by the notebooks.

Every function returns the ``Figure`` (the notebook displays it), puts a title and axis labels
on it, labels token axes with the tokens, and adds a colour bar whenever colour carries a value.
matplotlib figures survive GitHub rendering, nbval and PDF export, unlike interactive views.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .errors import TutorialError
from .names import head_rows

__all__ = ["MIXING_METHOD_NAMES", "attention_grid", "attention_heatmap", "bar", "heatmap",
           "heatmap_pair", "heatmap_panels", "mixing_method_name", "plot_dla", "plot_edge_scores_vs_exact", "plot_faithfulness_curves",
           "plot_logit_lens"]


#: Readable names of the context-mixing methods (keys of ``context_mixing.METHODS``, and the
#: ``decompx_to_logit`` row of ``evaluate_on_cue``) for figure titles and tick labels.
MIXING_METHOD_NAMES = {
    "attention": "raw attention",
    "rollout": "attention rollout",
    "rollout_no_res": "attention rollout, no residual",
    "attention_norm": "attention-norm",
    "attention_norm_res": "attention-norm + residual (RES1)",
    "attention_norm_res_ln": "RES1 + LayerNorm (RES1+LN1)",
    "globenc": "GlobEnc",
    "alti": "ALTI",
    "value_zeroing": "Value Zeroing",
    "value_zeroing_rollout": "Value Zeroing, rolled out",
    "decompx": "DecompX (vector norms)",
    "decompx_to_logit": "DecompX to the logit",
}


def mixing_method_name(method: str) -> str:
    """The readable name of a context-mixing method for a figure (:data:`MIXING_METHOD_NAMES`);
    a name it does not know comes back unchanged, with underscores as spaces."""
    if not isinstance(method, str):
        raise TutorialError(f"a method name must be a string, got {type(method).__name__}")
    return MIXING_METHOD_NAMES.get(method, method.replace("_", " "))


def _np(x: Any, what: str = "values", allow_nan: bool = False) -> np.ndarray:
    """``x`` (a tensor, an array, a list) as a float array. Infinities are refused; NaN too
    unless ``allow_nan`` (heatmaps draw a NaN cell blank, a documented convention), and an
    array with nothing but NaN is refused everywhere (there would be nothing to draw)."""
    try:
        if isinstance(x, torch.Tensor):
            v = x.detach().float().cpu().numpy()
        else:
            v = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TutorialError(f"{what} must be numbers (a tensor, an array or a list), got "
                            f"{type(x).__name__} ({exc})") from None
    if np.isinf(v).any():
        raise TutorialError(f"{what} contain {int(np.isinf(v).sum())} infinite value(s): find "
                            "where they came from (a log of 0, a division by zero) before "
                            "plotting")
    nan = np.isnan(v)
    if nan.any() and (not allow_nan or nan.all()):
        raise TutorialError(
            f"{what} contain {int(nan.sum())} NaN value(s) of {v.size}"
            f"{' (all of them)' if nan.all() else ''}: a NaN would silently drop out of the "
            "figure; find where it came from (e.g. a normalisation where clean and corrupted "
            "metrics are equal)")
    return v


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
    ``annotate`` writes each value in its cell (for small grids). A NaN cell is drawn blank
    (e.g. an undefined pair); infinities, and an array of nothing but NaN, are refused.
    """
    v = _np(values, "heatmap values", allow_nan=True)
    if v.ndim != 2:
        raise TutorialError(f"heatmap needs a 2-D array, got shape {v.shape}")
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
                        color=annotation_color(im.cmap, im.norm, v[i, j]))
    fig.tight_layout()
    return fig


def heatmap_panels(panels: dict, title: str, xlabel: str, ylabel: str,
                   xticklabels: Sequence[str] | None = None,
                   yticklabels: Sequence[str] | None = None, cbar_label: str = "",
                   center: float | None = 0.0, cmap: str | None = None, annotate: bool = False,
                   fmt: str = "{:+.3f}", panel_width: float = 3.4):
    """Several labelled heatmaps side by side on ONE colour scale with one colour bar, so that a
    colour means the same value in every panel (e.g. one head grid per ablation).

    ``panels`` maps a panel title to a 2-D array ``[rows, cols]``; all arrays share a shape.
    ``center`` (default 0, for signed effects) makes a diverging scale symmetric around it;
    ``None`` runs from the smallest to the largest value. ``annotate`` writes each value in its
    cell with ``fmt`` (for small grids).
    """
    if not isinstance(panels, dict) or not panels:
        raise TutorialError("panels must be a non-empty dict {title: 2-D array}")
    arrays = {t: _np(v, f"panel {t!r}", allow_nan=True) for t, v in panels.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise TutorialError(f"heatmap_panels needs 2-D arrays of one shape, got {sorted(shapes)}")
    stack = np.stack(list(arrays.values()))
    if center is not None:
        lim = float(np.nanmax(np.abs(stack - center))) or 1.0
        vmin, vmax, cmap = center - lim, center + lim, cmap or "RdBu_r"
    else:
        vmin, vmax, cmap = float(np.nanmin(stack)), float(np.nanmax(stack)), cmap or "viridis"
    rows, cols = next(iter(shapes))
    fig, axes = plt.subplots(1, len(arrays), layout="constrained", squeeze=False,
                             figsize=(min(panel_width * len(arrays) + 1.2, 18),
                                      min(1.6 + 0.5 * rows, 9)))
    im = None
    for ax, (t, v) in zip(axes[0], arrays.items()):
        im = ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xticklabels is not None:
            ax.set_xticks(range(len(xticklabels)))
            ax.set_xticklabels(list(xticklabels), fontsize=8)
        if yticklabels is not None:
            ax.set_yticks(range(len(yticklabels)))
            ax.set_yticklabels(list(yticklabels), fontsize=8)
        if annotate:
            for i in range(rows):
                for j in range(cols):
                    ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=7,
                            color=annotation_color(im.cmap, im.norm, v[i, j]))
    fig.colorbar(im, ax=list(axes[0]), label=cbar_label, shrink=0.9)
    fig.suptitle(title)
    return fig


def annotation_color(cmap, norm, value: float) -> str:
    """Text colour readable on the heatmap cell that shows ``value``: ``"black"`` on a light
    background, ``"white"`` on a dark one.

    The background is ``cmap(norm(value))``, with relative luminance ``L`` (WCAG 2: sRGB
    channels linearised, weights 0.2126, 0.7152, 0.0722). Black text has contrast ratio
    ``(L + 0.05) / 0.05`` and white ``1.05 / (L + 0.05)``; the larger wins, i.e. black when
    ``L > 0.179``. A NaN cell (the colour map's "bad" colour, transparent by default) gets
    black text.
    """
    if not np.isfinite(value):
        return "black"
    r, g, b, _ = cmap(norm(value))
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "black" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white"


def attention_heatmap(pattern, tokens: Sequence[str], title: str, ax: plt.Axes | None = None):
    """One head's attention pattern ``[query, key]`` with token labels on both axes."""
    p = _np(pattern, "pattern", allow_nan=True)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] != len(tokens):
        raise TutorialError(f"pattern {p.shape} does not match {len(tokens)} tokens")
    return heatmap(p, title, "key (attended-to) token", "query (attending) token", tokens,
                   tokens, cbar_label="attention weight", cmap="Blues", ax=ax,
                   figsize=(1.5 + 0.32 * len(tokens), 1.0 + 0.3 * len(tokens)))


def attention_grid(patterns, tokens: Sequence[str], title: str, layer_labels=None,
                   head_labels=None, cbar_label: str = "attention weight",
                   vmax: float | None = 1.0, axis_labels: tuple[str, str] = ("query", "key")):
    """Several ``[query, key]`` maps on one colour scale: ``patterns [rows, cols, T, T]`` (e.g.
    layers x heads; a single ``[T, T]`` or ``[cols, T, T]`` is one row).

    Token labels sit on the left column (queries) and the bottom row (keys), one colour bar is
    shared by every panel (``vmax=None``: the largest value shown, else ``[0, vmax]``). Panel
    titles are ``"{layer_labels[r]} {head_labels[c]}"`` (default ``L{r}`` and ``H{c}``);
    ``axis_labels`` names the rows and columns of each map (``("query", "source")`` for
    context-mixing maps). Keep it
    to a few rows: at about ten tokens two rows of four panels stay readable.
    """
    p = _np(patterns, "patterns", allow_nan=True)
    if p.ndim == 2:
        p = p[None, None]
    elif p.ndim == 3:
        p = p[None]
    if p.ndim != 4 or p.shape[-1] != p.shape[-2] or p.shape[-1] != len(tokens):
        raise TutorialError(f"patterns {p.shape} must be [rows, cols, T, T] with T = {len(tokens)} tokens")
    n_rows, n_cols, T = p.shape[0], p.shape[1], p.shape[-1]
    rows = list(layer_labels) if layer_labels is not None else [f"L{r}" for r in range(n_rows)]
    cols = list(head_labels) if head_labels is not None else [f"H{c}" for c in range(n_cols)]
    if len(rows) != n_rows or len(cols) != n_cols:
        raise TutorialError(f"{len(rows)} row labels and {len(cols)} column labels for a "
                            f"{n_rows} x {n_cols} grid")
    top = float(np.nanmax(p)) if vmax is None else float(vmax)
    side = max(1.9, 0.21 * T + 0.3)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(side * n_cols + 2.2, side * n_rows + 1.6))
    labels = list(tokens)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            im = ax.imshow(p[r, c], cmap="Blues", vmin=0, vmax=top)
            ax.set_title(f"{rows[r]} {cols[c]}", fontsize=9)
            ax.set_xticks(range(T))
            ax.set_yticks(range(T))
            if c == 0:
                ax.set_yticklabels(labels, fontsize=7)
                ax.set_ylabel(axis_labels[0])
            else:
                ax.set_yticklabels([])
            if r == n_rows - 1:
                ax.set_xticklabels(labels, fontsize=7, rotation=90)
                ax.set_xlabel(axis_labels[1])
            else:
                ax.set_xticklabels([])
            ax.tick_params(length=2)
    fig.colorbar(im, ax=axes, shrink=0.9 if n_rows > 1 else 1.0,
                 label=f"{cbar_label} (one scale, all panels)")
    fig.suptitle(title)
    return fig


def heatmap_pair(left, right, titles: Sequence[str], ticklabels, xlabel: str, ylabel: str,
                 suptitle: str, cbar_label: str, vmax: float | None = None,
                 cmap: str = "Blues", missing: str = "not defined for this model"):
    """Two heatmaps side by side on ONE colour scale with one colour bar, so that the same
    colour means the same value in both panels.

    ``left``/``right``: 2-D arrays ``[rows, cols]`` (``right=None`` leaves the right panel as a
    note, ``missing``); ``titles``: the two panel titles; ``ticklabels``: ``((x_left, y_left),
    (x_right, y_right))`` (token or row labels). The scale runs from 0 to ``vmax`` (default the
    larger maximum of the two); values must be non-negative (shares, norms, scores).
    """
    a = _np(left, "left", allow_nan=True)
    b = None if right is None else _np(right, "right", allow_nan=True)
    for v in (a, b):
        if v is not None and v.ndim != 2:
            raise TutorialError(f"heatmap_pair needs 2-D arrays, got shape {v.shape}")
    if len(titles) != 2 or len(ticklabels) != 2:
        raise TutorialError("heatmap_pair needs two titles and two (xticklabels, yticklabels)")
    top = float(vmax) if vmax is not None else float(max(np.nanmax(v) for v in (a, b) if v is not None))
    if float(np.nanmin(a)) < -1e-6 or (b is not None and float(np.nanmin(b)) < -1e-6):
        raise TutorialError("heatmap_pair draws non-negative values on a 0..vmax scale")
    # a missing right panel only holds a note: keep it narrow instead of an empty band
    widths = [a.shape[1], b.shape[1] if b is not None else max(2.0, 0.35 * a.shape[1])]
    n_rows = max(a.shape[0], (b if b is not None else a).shape[0])
    fig, axes = plt.subplots(1, 2, layout="constrained", width_ratios=widths,
                             figsize=(min(2.5 + 0.42 * sum(widths), 15), min(1.8 + 0.36 * n_rows, 9)))
    im = None
    for ax, v, t, (xt, yt) in zip(axes, (a, b), titles, ticklabels):
        ax.set_title(t, fontsize=10)
        if v is None:
            ax.text(0.5, 0.5, missing, ha="center", va="center", wrap=True, fontsize=9)
            ax.axis("off")
            continue
        im = ax.imshow(v, cmap=cmap, vmin=0, vmax=top, aspect="auto")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xt is not None:
            ax.set_xticks(range(len(xt)))
            ax.set_xticklabels(list(xt), rotation=60, ha="right", fontsize=8)
        if yt is not None:
            ax.set_yticks(range(len(yt)))
            ax.set_yticklabels(list(yt), fontsize=8)
    both = " (one scale, both panels)" if b is not None else ""
    fig.colorbar(im, ax=list(axes), label=cbar_label + both, shrink=0.9)
    fig.suptitle(suptitle)
    return fig


def bar(values, labels: Sequence[str], title: str, ylabel: str, xlabel: str = "",
        color=None, figsize=None):
    """A labelled bar chart of ``values`` ``[n]`` (NaN and infinities refused: a NaN bar would
    silently be missing)."""
    v = _np(values, "bar values")
    if v.ndim != 1 or len(v) != len(labels):
        raise TutorialError(f"bar needs one value per label: {len(labels)} labels, values of "
                            f"shape {v.shape}")
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


# --------------------------------------------------------------------------------------------
# The logit lens and direct logit attribution (results of tutorial_utils.logit_lens / .dla)
# --------------------------------------------------------------------------------------------

def _head_grid(labels: Sequence[str], vals: torch.Tensor) -> torch.Tensor:
    """``[n_layers, n_heads]`` the values of the rows labelled ``a{l}.h{h}``."""
    heads = head_rows(list(labels))
    if not heads:
        raise TutorialError("plot_dla needs per-head rows (computed with per_head=True)")
    grid = torch.zeros(1 + max(l for _, l, _ in heads), 1 + max(h for _, _, h in heads),
                       dtype=vals.dtype)
    for i, l, h in heads:
        grid[l, h] = vals[i].cpu()
    return grid


def plot_logit_lens(result: Any,
                    token_labels: Sequence[str] | None = None, value: str | None = None,
                    example: int | None = None, title: str | None = None, max_ticks: int = 25,
                    mark: float | None = None, rows: Sequence[str] | None = None,
                    ax: Any = None) -> Any:
    """Heatmap of the logit lens: points (rows) x tokens (columns).

    Args:
        result: a :class:`tutorial_utils.logit_lens.LogitLensResult` (rows are residual-stream
            points) or a :class:`tutorial_utils.dla.ComponentLensResult` / ``DLAResult`` (rows
            are components: "what does
            each component upweight"; only ``value="logit"``).
        token_labels: one label per token column (e.g. ``"00"`` .. ``"99"``).
        value: ``"prob"`` (default for the lens), ``"log_prob"`` or ``"logit"`` (default for
            components).
        example: one example, or None for the mean over the batch (needs shared ``token_ids``).
        mark: draw a dashed vertical line at this column coordinate (e.g. ``YY + 0.5`` to split
            Greater-Than's years into ``<= YY`` and ``> YY``).
        rows: plot only these row labels, in this order.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if not (hasattr(result, "labels") and (hasattr(result, "log_norm")
                                           or hasattr(result, "values"))):
        raise TutorialError(f"plot_logit_lens needs a LogitLensResult or a ComponentLensResult / "
                            f"DLAResult, got {type(result).__name__}")
    is_lens = hasattr(result, "log_norm")  # a LogitLensResult (duck-typed: plotting stands apart)
    value = value or ("prob" if is_lens else "logit")
    if value not in ("prob", "log_prob", "logit"):
        raise TutorialError(f"value must be prob, log_prob or logit, got {value!r}")
    if not is_lens and value != "logit":
        raise TutorialError("component rows are additive logit contributions: use value='logit'")
    if is_lens:
        data = {"prob": result.probs, "log_prob": result.log_probs,
                "logit": lambda: result.logits}[value]()
    else:
        data = result.values
    if example is None:
        if result.token_ids is not None and result.token_ids.ndim == 2:
            raise TutorialError("per-example token_ids: choose an example to plot")
        mat, who = data.mean(1), f"mean over {data.shape[1]} examples"
    else:
        if isinstance(example, bool) or not isinstance(example, int) \
                or not 0 <= example < data.shape[1]:
            raise TutorialError(f"example {example!r} out of range for a batch of "
                                f"{data.shape[1]} (an int)")
        mat, who = data[:, example], f"example {example}"
    row_labels = list(result.labels)
    if rows is not None:
        unknown = [r for r in rows if r not in row_labels]
        if unknown:
            raise TutorialError(f"unknown rows {unknown}; available: {row_labels}")
        mat = mat[[row_labels.index(r) for r in rows]]
        row_labels = list(rows)
    mat = _np(mat, "logit-lens values")
    K = mat.shape[1]
    if token_labels is not None and len(token_labels) != K:
        raise TutorialError(f"{len(token_labels)} token labels for {K} tokens")
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(3 + 0.12 * K, 14), 0.3 * len(row_labels) + 1.9))
    else:
        fig = ax.figure
    cmap = "viridis" if value != "logit" else "RdBu_r"
    kw = {}
    if value == "logit":
        m = float(abs(mat).max()) or 1.0
        kw = {"vmin": -m, "vmax": m}
    im = ax.imshow(mat, aspect="auto", cmap=cmap, interpolation="nearest", **kw)
    ax.set_yticks(range(len(row_labels)), row_labels)
    step = max(1, -(-K // max_ticks))
    ticks = list(range(0, K, step))
    if token_labels is not None:
        ax.set_xticks(ticks, [token_labels[i] for i in ticks], rotation=90 if K > 12 else 0)
    ax.set_xlabel("token" + (f" (every {step}th labelled)" if step > 1 else ""))
    ax.set_ylabel("residual stream after" if is_lens else "component")
    if mark is not None:
        ax.axvline(mark, color="white" if value != "logit" else "black", ls="--", lw=1)
    name = {"prob": "probability", "log_prob": "log-probability",
            "logit": "logit (centred)" if is_lens else "direct contribution to logit"}[value]
    fig.colorbar(im, ax=ax, label=name)
    what = f"Logit lens ({result.scale} LN scale)" if is_lens else \
        f"Component logit lens ({result.scale} LN scale)"
    ax.set_title(title or f"{what}: {name}, {who}")
    fig.tight_layout()
    return fig


def plot_dla(values: Any, labels: Sequence[str] | None = None, title: str | None = None,
             value_label: str = "direct logit attribution", shared_scale: bool = True) -> Any:
    """Direct logit attribution figure: a heads x layers heatmap and a bar chart of the other
    components (embeddings, MLPs, biases).

    ``values``: a :class:`tutorial_utils.dla.MetricAttribution` (averaged over examples), or a tensor ``[C]`` /
    ``[C, B]`` (averaged over B) with ``labels``, e.g. ``logit_diff_attribution(dla, ...)`` with
    ``dla.labels``. Needs per-head rows. ``shared_scale``: one colour/axis range for heads and
    the other components (comparable); False scales the heads on their own (visible even when
    an MLP dominates; the head cells print their values either way on small models). Returns
    the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if hasattr(values, "labels") and hasattr(values, "values"):  # a MetricAttribution
        labels, vals = values.labels, values.values
    else:
        if labels is None:
            raise TutorialError("pass labels (e.g. dla.labels) with a tensor of values")
        vals = torch.as_tensor(values)
    vals = torch.as_tensor(_np(vals, "plot_dla values"))
    if vals.ndim == 2:
        vals = vals.float().mean(1)
    if vals.ndim != 1 or len(labels) != vals.shape[0]:
        raise TutorialError(f"values must be [n_components] or [n_components, B] matching "
                         f"{len(labels)} labels, got {tuple(vals.shape)}")
    heads = _head_grid(list(labels), vals.float()).cpu().numpy()     # [L, H]
    other = [(lab, float(v)) for lab, v in zip(labels, vals.tolist())
             if not (lab.startswith("a") and ".h" in lab)]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained",
                                   gridspec_kw={"width_ratios": [1, 1.3]})
    m_other = max([abs(v) for _, v in other] + [0.0])
    m_heads = float(abs(heads).max())
    m = (max(m_heads, m_other) if shared_scale else m_heads) or 1.0
    im = ax0.imshow(heads.T, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto")
    if heads.size <= 64:                                             # small models: print values
        for l in range(heads.shape[0]):
            for h in range(heads.shape[1]):
                v = heads[l, h]
                ax0.text(l, h, f"{v:.2g}", ha="center", va="center", fontsize=8,
                         color="white" if abs(v) > 0.6 * m else "black")
    ax0.set_xticks(range(heads.shape[0]), [f"L{l}" for l in range(heads.shape[0])])
    ax0.set_yticks(range(heads.shape[1]), [f"H{h}" for h in range(heads.shape[1])])
    ax0.set_xlabel("layer")
    ax0.set_ylabel("head")
    ax0.set_title("attention heads" + ("" if shared_scale else " (own colour scale)"))
    fig.colorbar(im, ax=ax0, label=value_label)
    names = [lab for lab, _ in other]
    vs = [v for _, v in other]
    ax1.bar(range(len(vs)), vs, color=["tab:red" if v > 0 else "tab:blue" for v in vs])
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set_xticks(range(len(vs)), names, rotation=45, ha="right")
    lo, hi = min(vs + [0.0]), max(vs + [0.0])
    if shared_scale:
        lo, hi = min(lo, -m_heads if (heads < 0).any() else 0.0), max(hi, m_heads)
    pad = 0.05 * (hi - lo or 1.0)
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_xlabel("component")
    ax1.set_ylabel(value_label)
    ax1.set_title("embeddings, MLPs and biases")
    fig.suptitle(title or "Direct logit attribution")
    fig.get_layout_engine().set(wspace=0.12)
    return fig


# --------------------------------------------------------------------------------------------
# Edge attribution against exact patching, and faithfulness curves (tutorial_utils.circuits)
# --------------------------------------------------------------------------------------------

def plot_edge_scores_vs_exact(scores: dict, graph: Any, n_label: int = 6,
                              methods: Sequence[str] = ("EAP", "EAP-IG"),
                              linthresh: float | None = None, title: str | None = None) -> Any:
    """One scatter panel per method: its score (y) against exact edge patching (x) for every real
    edge of ``graph``, on symmetric-log axes (hundreds of near-zero edges and a few large ones
    stay readable), the ``n_label`` largest exact effects highlighted and named, and the
    diagonal y = x. ``scores``: ``{"exact": [S, R], method: [S, R], ...}``. Returns the figure."""
    import matplotlib.pyplot as plt

    if "exact" not in scores:
        raise TutorialError("scores needs an 'exact' entry (exact_scores) to compare with")
    real = graph.real_edges
    ex = _np(scores["exact"][real], "scores['exact']")
    names = graph.edge_names(real)
    top = np.argsort(-np.abs(ex))[:n_label]
    if linthresh is None:
        nz = np.abs(ex[np.abs(ex) > 0])
        linthresh = float(np.quantile(nz, 0.9)) / 10 if nz.size else 1e-3
    fig, axes = plt.subplots(1, len(methods), figsize=(5.6 * len(methods), 5.0), squeeze=False)
    for ax, method in zip(axes[0], methods):
        if method not in scores:
            raise TutorialError(f"scores has no {method!r} entry; entries: {sorted(scores)}")
        y = _np(scores[method][real], f"scores[{method!r}]")
        lim = 1.5 * float(max(np.abs(ex).max(), np.abs(y).max()))
        ax.scatter(ex, y, s=9, alpha=0.35, color="tab:grey", label=f"all {len(ex)} edges")
        ax.scatter(ex[top], y[top], s=30, color="tab:red",
                   label=f"{n_label} largest |exact| (numbered)")
        for rank, i in enumerate(top, 1):
            ax.annotate(str(rank), (ex[i], y[i]), fontsize=8, xytext=(-9 if rank % 2 else 4, 3),
                        textcoords="offset points", color="tab:red")
        key = "\n".join(f"{rank}: {names[i]}" for rank, i in enumerate(top, 1))
        ax.text(0.98, 0.02, key, transform=ax.transAxes, fontsize=7, ha="right", va="bottom",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "lightgrey"})
        ax.plot([-lim, lim], [-lim, lim], color="black", lw=0.8, ls="--", label="y = x")
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_yscale("symlog", linthresh=linthresh)
        decades = range(int(np.floor(np.log10(linthresh))) + 1, int(np.ceil(np.log10(lim))), 2)
        ticks = sorted([0.0] + [s * 10.0 ** d for d in decades for s in (-1, 1)])
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("exact edge patching: metric change")
        ax.set_ylabel(f"{method} score")
        ax.set_title(f"{method} vs exact (linear within ±{linthresh:.0e})")
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_faithfulness_curves(curves: dict, targets: Sequence[float] = (0.8, 0.9),
                             linthresh: float = 20, title: str | None = None) -> Any:
    """Faithfulness against the number of edges kept, one panel per task.

    ``curves``: ``{task: {method: FaithfulnessCurve}}`` (or ``{method: curve}`` for one task).
    The x axis is linear up to ``linthresh`` edges (where rankings differ) and logarithmic
    beyond; dashed lines mark the ``targets``. Returns the figure."""
    import matplotlib.pyplot as plt

    if curves and not isinstance(next(iter(curves.values())), dict):
        curves = {"": curves}
    fig, axes = plt.subplots(1, len(curves), figsize=(6.2 * len(curves), 4.2), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (task, cs) in zip(axes[0], curves.items()):
        total = 1
        for i, (method, c) in enumerate(cs.items()):
            ax.plot(_np(c.n_edges, f"{method}: n_edges"),
                    _np(c.faithfulness, f"{method}: faithfulness"), marker="o", ms=3, ls=styles[i % 4],
                    lw=2.2 - 0.4 * i, label=method)
            total = max(total, int(c.total_edges))
        for t in targets:
            ax.axhline(t, color="grey", ls="--", lw=0.8)
            ax.text(0.3, t, f"{t:g}", va="bottom", fontsize=7, color="grey")
        ax.set_xscale("symlog", linthresh=linthresh, linscale=2)
        ticks = [t for t in (0, 5, 10, 15, 20, 50, 100, 200, 500, 1000, 10000) if t < total]
        ax.set_xticks(ticks + [total], [str(t) for t in ticks + [total]])
        ax.set_xlim(0, total * 1.05)
        ax.set_xlabel(f"edges kept (top-n by |score|; linear up to {linthresh:g}, log beyond)")
        ax.set_ylabel("normalised faithfulness")
        ax.set_title(task or "faithfulness curve")
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
