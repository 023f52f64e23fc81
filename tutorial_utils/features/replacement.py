"""The replacement model: every MLP replaced by its transcoder (Dunefsky et al. 2024; Ameisen
et al. 2025, "Circuit Tracing", section 2).

    mlp_l(x)  ->  T_l(x) + e_l,      T_l(x) = W_dec,l act(W_enc,l x + b_enc,l) + b_dec,l,

with ``x`` the MLP's input (the ``ln_2`` output). The **error node** ``e_l = mlp_l(x) - T_l(x)``
is what the transcoder misses on this prompt at each position. With error nodes the replacement
model *is* the model (``T_l(x) + mlp_l(x) - T_l(x) = mlp_l(x)``: a consistency check, true by
construction up to float rounding); the measure that matters is the model **without** them
(``e_l = 0``), which keeps only what the features explain: the share of each task's metric it
keeps and the features active per token (L0).

Error nodes may also be *fixed* at their values on another run (``errors=`` a tensor): that is
the local replacement model an attribution graph linearises (errors are inputs, not functions
of the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..tasks.base import TaskDataset
from .dictionary import SparseDictionary
from .unfolded import FrozenState, RunResult, UnfoldedGPT2

__all__ = ["FeatureEdit", "ReplacementModel", "TaskKept"]


@dataclass
class FeatureEdit:
    """Set feature ``feature`` of layer ``layer``'s transcoder at position ``pos`` to
    ``scale`` times its own activation (``scale=0`` switches it off), or to ``value`` when
    given. ``rows`` restricts the edit to those batch rows (default every row)."""

    layer: int
    pos: int
    feature: int
    scale: float = 0.0
    value: float | None = None
    rows: Tensor | None = None


@dataclass
class TaskKept:
    """A task's metric in the model and in the replacement model without error nodes."""

    task: str
    metric_model: float
    metric_replacement: float
    kept: float
    l0_per_layer: list[float]


class ReplacementModel:
    """An :class:`UnfoldedGPT2` whose MLPs are read through transcoders (module docstring).

    ``transcoders`` maps a layer to its transcoder; layers without one keep their MLP."""

    def __init__(self, lm: UnfoldedGPT2, transcoders: Mapping[int, SparseDictionary]):
        self.lm = lm
        self.transcoders = dict(transcoders)
        if not self.transcoders:
            raise TutorialError("ReplacementModel needs at least one transcoder")
        for layer, tc in self.transcoders.items():
            lm.check_layer(layer)
            c = tc.config
            if c.kind != "transcoder" or c.layer != layer or \
                    (c.site_in, c.site_out) != ("ln2_out", "mlp_out"):
                raise TutorialError(
                    f"transcoders[{layer}] must be a transcoder of layer {layer} reading "
                    f"'ln2_out' and writing 'mlp_out'; got a {c.kind} of layer {c.layer} "
                    f"({c.site_in} -> {c.site_out})")
            if c.d_in != lm.w.d_model or c.d_out != lm.w.d_model:
                raise TutorialError(f"transcoders[{layer}] maps {c.d_in} -> {c.d_out}; the "
                                    f"model's d_model is {lm.w.d_model}")

    @property
    def layers(self) -> list[int]:
        return sorted(self.transcoders)

    def run(self, tokens: Int[Tensor, "batch pos"], *, errors: bool | Float[Tensor, "layers batch pos d_model"] = True,
            frozen: FrozenState | None = None, edits: list[FeatureEdit] = (),
            capture: tuple[str, ...] = (), record_frozen: bool = False,
            keep_features: bool = False
            ) -> tuple[RunResult, dict[int, Float[Tensor, "batch pos features"]],
                       dict[int, Float[Tensor, "batch pos d_model"]]]:
        """Forward through the replacement model.

        Args:
            errors: True: error nodes computed on this run (= the model); False: none; a tensor
                ``[L, B or 1, T, d]``: error nodes fixed at those values.
            frozen: attention patterns and LayerNorm denominators to reuse.
            edits: :class:`FeatureEdit` s applied to the features before decoding.
        Returns ``(result, features, errors)``: feature activations ``[B, T, n_features]`` and
        error nodes ``[B, T, d]`` per transcoded layer (features only if ``keep_features``).
        """
        if isinstance(errors, Tensor) and errors.shape[0] != self.lm.w.n_layers:
            raise TutorialError(f"errors must be [n_layers={self.lm.w.n_layers}, batch, pos, "
                                f"d_model], got {tuple(errors.shape)}")
        by_layer: dict[int, list[FeatureEdit]] = {}
        for e in edits:
            if e.layer not in self.transcoders:
                raise TutorialError(f"edit on layer {e.layer}, which has no transcoder "
                                    f"(transcoded layers: {self.layers})")
            if not 0 <= e.feature < self.transcoders[e.layer].config.n_features:
                raise TutorialError(f"edit: feature {e.feature} out of range for layer "
                                    f"{e.layer}'s {self.transcoders[e.layer].config.n_features}")
            if not -tokens.shape[1] <= e.pos < tokens.shape[1]:
                raise TutorialError(f"edit: position {e.pos} outside {tokens.shape[1]} tokens")
            by_layer.setdefault(e.layer, []).append(e)
        feats: dict[int, Tensor] = {}
        errs: dict[int, Tensor] = {}

        def mlp(layer: int, m_in: Tensor, m_out: Tensor) -> Tensor:
            tc = self.transcoders.get(layer)
            if tc is None:
                return m_out
            f = tc.encode(m_in)
            recon = tc.decode(f)
            if isinstance(errors, Tensor):
                err = errors[layer].expand_as(m_out)
            else:
                err = m_out - recon if errors else torch.zeros_like(m_out)
            errs[layer] = err
            if by_layer.get(layer):
                f = f.clone()
                for e in by_layer[layer]:
                    rows = slice(None) if e.rows is None else e.rows
                    new = f[rows, e.pos, e.feature] * e.scale if e.value is None else e.value
                    f[rows, e.pos, e.feature] = new
                recon = tc.decode(f)
            if keep_features:
                feats[layer] = f
            return recon + err

        res = self.lm.run(tokens, mlp_override=mlp, frozen=frozen, capture=capture,
                          record_frozen=record_frozen)
        return res, feats, errs

    @torch.no_grad()
    def logits(self, tokens: Int[Tensor, "batch pos"], errors: bool = True
               ) -> Float[Tensor, "batch pos vocab"]:
        """Logits with (``errors=True``: equal to the model's) or without error nodes."""
        return self.run(tokens, errors=errors)[0].logits

    @torch.no_grad()
    def task_kept(self, dataset: TaskDataset, batch_size: int = 128) -> TaskKept:
        """The task metric (the dataset's own, on its clean prompts) in the model and in the
        replacement model without error nodes, ``kept = replacement / model``, and the mean
        number of active features per token at each transcoded layer on those prompts
        (positions before the answer)."""
        if not isinstance(dataset, TaskDataset):
            raise TutorialError("task_kept needs a TaskDataset (tutorial_utils.tasks.make_task)")
        tokens = self.lm.check_tokens(dataset.clean_tokens)
        model_logits, repl_logits = [], []
        l0 = {l: [0.0, 0] for l in self.layers}
        T = tokens.shape[1]
        valid = torch.arange(T)[None, :] <= dataset.answer_pos[:, None]
        for i in range(0, tokens.shape[0], batch_size):
            t = tokens[i:i + batch_size]
            model_logits.append(self.lm.run(t).logits)
            res, feats, _ = self.run(t, errors=False, keep_features=True)
            repl_logits.append(res.logits)
            v = valid[i:i + batch_size]
            for l, f in feats.items():
                l0[l][0] += float((f > 0).sum(-1)[v].sum())
                l0[l][1] += int(v.sum())
        m = float(dataset.metric(torch.cat(model_logits)))
        r = float(dataset.metric(torch.cat(repl_logits)))
        return TaskKept(dataset.name, m, r, r / m if m else float("nan"),
                        [l0[l][0] / max(1, l0[l][1]) for l in self.layers])


def replacement_from_model(model: Any, transcoders: Mapping[int, SparseDictionary]
                           ) -> ReplacementModel:
    """A :class:`ReplacementModel` on a loaded course model's own weights."""
    return ReplacementModel(UnfoldedGPT2.from_model(model), transcoders)
