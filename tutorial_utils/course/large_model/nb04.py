"""Notebook 04\'s section on a published model: induction composition and IOI head classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ... import composition as C
from ... import path_patching as PP
from ...tasks import make_ioi
from ...errors import TutorialError
from ...names import head_name, parse_head
from .common import (IOI_CLASSES, check_positive, format_heads, gpu_hint,
                     model_label, model_shape, published_lines, top_named)

@dataclass
class CompositionSection:
    """Notebook 04 on a large model.

    Induction: previous-token and induction head classes on repeated random tokens and the
    share of the induction effect removed by path patching the previous-token heads into the
    induction heads' query, key or value (``composition``); the weight-based K-composition
    score of the strongest pair (heads listed first) with its random-matrix baseline.
    IOI: each head's direct effect on the logit difference (``direct [L, H]``, share of clean -
    corrupted; NaN below ``direct_from_layer``) and attention between the named positions (``attention[name] [L, H]``: ``END->IO``, ``END->S2``, ``S2->S1``
    (duplicate token), ``S2->S1+1`` (induction)); ``prev_token [L, H]``."""

    model: str
    shape: str
    seq_len: int
    batch: int
    prev_heads: list[str]
    induction_heads: list[str]
    composition: dict[str, float]
    k_composition: float
    k_composition_baseline: float
    n_ioi: int
    ld_clean: float
    ld_corrupted: float
    direct: Tensor
    attention: dict[str, Tensor]
    prev_token: Tensor
    induction_scores: Tensor
    direct_from_layer: int = 0
    published: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"Notebook 04 on {self.model} ({self.shape}):",
            f"  induction ({self.batch} x 2 x {self.seq_len} random tokens): previous-token heads "
            f"{self.prev_heads[:4]}, induction heads {self.induction_heads[:6]}",
            f"  K-composition {self.prev_heads[0]} -> {self.induction_heads[0]} from the weights: "
            f"{self.k_composition:.3f} (random matrices of these shapes: "
            f"{self.k_composition_baseline:.3f})",
            "  path patching previous-token heads -> induction heads, share of the effect "
            "removed: " + ", ".join(f"{k} {v:.2f}" for k, v in self.composition.items()),
            f"  IOI ({self.n_ioi} prompts): logit difference clean {self.ld_clean:.2f}, corrupted "
            f"{self.ld_corrupted:.2f}",
            f"  largest direct effects on the logits (heads of layers {self.direct_from_layer}+): "
            + ", ".join(f"{h} {v:+.2f}" for h, v in top_named(self.direct, 4)),
            "  this run's measures at Wang et al.'s heads:",
        ]
        lines += [f"    {k:<16} {v}" for k, v in self.published.items()]
        lines += [published_lines("ioi", "induction"),
                  gpu_hint("04", "n_ioi=64, batch=32, direct_from_layer=0")]
        return "\n".join(lines)


def section_04(model: Any, *, n_ioi: int = 8, batch: int = 8, seq_len: int = 20,
               direct_from_layer: int | None = None, seed: int = 0, verbose: bool = True
               ) -> CompositionSection:
    """Notebook 04's composition analysis: :func:`tutorial_utils.composition.induction_classes`
    and :func:`~tutorial_utils.composition.induction_composition_patching` on ``batch``
    repeated sequences, then on ``n_ioi`` canonical IOI prompts the direct path patching of
    each head of layers ``direct_from_layer`` and above into the logits (default: the upper
    half of the model, where Wang et al.'s name movers sit; ``0`` for every head, about twice
    the time) and every head's attention between IO, S1, S2 and END. Needs ``hooks=True``."""

    check_positive(n_ioi=n_ioi, batch=batch, seq_len=seq_len)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    start = L // 2 if direct_from_layer is None else direct_from_layer
    if not (isinstance(start, int) and 0 <= start < L):
        raise TutorialError(f"direct_from_layer must be an int in [0, {L}), got {start!r}")
    clean_rep, _ = C.induction_patching_data(model, seq_len=seq_len, batch=batch, seed=seed)
    classes = C.induction_classes(model, clean_rep, seq_len)
    best_prev = max(classes.prev_heads, key=lambda h: classes.prev_token_scores[parse_head(h)])
    best_ind = max(classes.induction_heads,
                   key=lambda h: classes.induction_scores[parse_head(h)])
    prev_first = [best_prev] + [h for h in classes.prev_heads if h != best_prev]
    ind_first = [best_ind] + [h for h in classes.induction_heads if h != best_ind]
    k_comp = C.composition_score(model, parse_head(best_prev), parse_head(best_ind), "k")
    k_base = C.composition_baseline(model, "k", n_samples=20, seed=seed)
    evidence = C.induction_composition_patching(model, classes.prev_heads, classes.induction_heads,
                                                seq_len=seq_len, batch=batch, seed=seed)
    ioi = make_ioi(model, n=n_ioi, frames_split="canonical", seed=seed)
    senders = [head_name(l, h) for l in range(start, L) for h in range(H)]
    to_logits = PP.path_patching(model, ioi, senders=senders, receivers=["logits"])
    direct = C.head_grid(model, to_logits)
    direct[:start] = float("nan")  # not measured
    pos = C.ioi_positions(ioi)
    toks = ioi.clean_tokens
    attention = {
        "END->IO": C.attention_between(model, toks, pos["END"], pos["IO"]),
        "END->S2": C.attention_between(model, toks, pos["END"], pos["S2"]),
        "S2->S1": C.attention_between(model, toks, pos["S2"], pos["S1"]),
        "S2->S1+1": C.attention_between(model, toks, pos["S2"], pos["S1"] + 1),
    }
    prev = classes.prev_token_scores.float()
    ind = classes.induction_scores.float()
    measures = {
        "name mover": ("direct effect", direct), "S-inhibition": ("attention END->S2",
                                                                  attention["END->S2"]),
        "induction": ("attention S2->S1+1", attention["S2->S1+1"]),
        "duplicate token": ("attention S2->S1", attention["S2->S1"]),
        "previous token": ("previous-token score", prev),
    }
    published = {cls: f"{what}: {format_heads(model, grid, IOI_CLASSES[cls])}"
                 for cls, (what, grid) in measures.items()}
    res = CompositionSection(
        model_label(model), model_shape(model), seq_len, batch, prev_first, ind_first,
        dict(evidence.effects), k_comp, k_base, n_ioi,
        to_logits.metric_clean, to_logits.metric_corrupted, direct, attention, prev, ind,
        start, published)
    if verbose:
        print(res.summary())
    return res
