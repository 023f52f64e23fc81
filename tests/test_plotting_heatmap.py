"""plotting.heatmap annotations: the text colour follows the cell's background, not the sign."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import Normalize, to_rgba

from tutorial_utils.plotting import annotation_color, heatmap


def _luminance(rgb) -> float:
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("cmap", ["RdBu_r", "viridis", "Blues", "magma"])
def test_annotation_colour_has_the_better_contrast(cmap: str) -> None:
    cm, norm = plt.get_cmap(cmap), Normalize(-1, 1)
    for v in np.linspace(-1, 1, 41):
        bg = cm(norm(v))
        chosen = annotation_color(cm, norm, float(v))
        other = "white" if chosen == "black" else "black"
        assert _contrast(bg, to_rgba(chosen)) >= _contrast(bg, to_rgba(other)) - 1e-9, (cmap, v)


def test_small_negative_on_a_diverging_map_is_black_not_white() -> None:
    """The bug this replaces: a value just below the centre (an almost white cell of RdBu_r)
    used to get white text because it is negative."""
    fig = heatmap(np.array([[-0.04, 0.04], [-1.0, 1.0]]), "t", "x", "y", center=0,
                  annotate=True)
    texts = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    plt.close(fig)
    assert texts["-0.04"] == "black" and texts["0.04"] == "black"
    assert texts["-1.00"] == "white" and texts["1.00"] == "white"


def test_sequential_map_and_nan() -> None:
    fig = heatmap(np.array([[0.0, 1.0, np.nan]]), "t", "x", "y", cmap="viridis", annotate=True)
    texts = [t.get_color() for t in fig.axes[0].texts]
    plt.close(fig)
    assert texts == ["white", "black", "black"]  # dark purple, light yellow, NaN
