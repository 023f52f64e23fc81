"""Reading features: what makes a feature fire, and what it does to a task.

* :func:`top_activating_contexts`: the corpus positions where a feature is most active, each
  with the tokens before it (Bricken et al. 2023's "top activating examples");
* :func:`feature_task_scores`: for a task dataset, each feature's mean activation at the
  answer position on examples of one kind minus the other (e.g. plural minus singular subjects),
  to find features tied to a task variable;
* :func:`edit_feature_metric`: the task metric when an SAE feature is ablated (set to 0),
  scaled, or a multiple of its decoder direction is added (steering), at the answer position,
  with the SAE's error kept (``x <- x + (f'_i - f_i) W_dec,i``), so only that feature changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..tasks.base import TaskDataset
from .dictionary import SparseDictionary
from .unfolded import UnfoldedGPT2

__all__ = ["Context", "answer_activations", "dictionary_inputs", "edit_feature_metric",
           "feature_correlations", "feature_task_scores", "top_activating_contexts"]


def _check_sae(d: SparseDictionary) -> None:
    if d.config.kind != "sae" or d.config.site_in != "resid_pre":
        raise TutorialError(f"this function needs an SAE on 'resid_pre', got a {d.config.kind} on "
                            f"{d.config.site_in!r}")


def _check_feature(d: SparseDictionary, feature: Any) -> int:
    n = d.config.n_features
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < n:
        raise TutorialError(f"feature must be an integer in [0, {n}), got {feature!r}")
    return feature


@torch.no_grad()
def dictionary_inputs(lm: UnfoldedGPT2, d: SparseDictionary, tokens: Int[Tensor, "batch pos"],
                      batch_size: int = 64) -> Float[Tensor, "batch pos d_in"]:
    """The activations ``d`` reads (its ``site_in`` at its layer) on ``tokens``: ``[B, T, d_in]``."""
    name = lm.check_site(d.config.site_in, d.config.layer)
    return lm.activations(tokens, (name,), batch_size)[name]


@dataclass
class Context:
    """One top-activating position: document, position, activation, and the text up to and
    including the token (``tokens_before`` then ``token``)."""

    doc: int
    pos: int
    activation: float
    tokens_before: list[str]
    token: str

    def __str__(self) -> str:
        return f"{self.activation:6.2f}  {''.join(self.tokens_before)}[[{self.token}]]"


@torch.no_grad()
def top_activating_contexts(lm: UnfoldedGPT2, d: SparseDictionary,
                            tokens: Int[Tensor, "batch pos"], features: Sequence[int], k: int = 8,
                            window: int = 10, skip_bos: bool = True,
                            batch_size: int = 64) -> dict[int, list[Context]]:
    """For each feature, its ``k`` highest activations over ``tokens`` (the corpus documents),
    each with the ``window`` tokens before it. ``skip_bos`` leaves out position 0 (the
    constant BOS position)."""
    feats = [_check_feature(d, f) for f in features]
    if k < 1 or window < 0:
        raise TutorialError("k must be >= 1 and window >= 0")
    lm.check_tokens(tokens)
    idx = torch.tensor(feats)
    B, T = tokens.shape
    best_v = torch.full((len(feats), 0), float("-inf"))
    best_i = torch.zeros((len(feats), 0), dtype=torch.long)
    for i in range(0, B, batch_size):
        x = dictionary_inputs(lm, d, tokens[i:i + batch_size], batch_size)
        a = d.encode(x)[..., idx]                               # [b, T, F]
        if skip_bos:
            a[:, 0] = float("-inf")
        flat = a.permute(2, 0, 1).reshape(len(feats), -1)       # [F, b*T]
        gidx = torch.arange(flat.shape[1]) + i * T
        v = torch.cat([best_v, flat], 1)
        j = torch.cat([best_i, gidx[None].expand(len(feats), -1)], 1)
        top = v.topk(min(k, v.shape[1]), dim=1)
        best_v, best_i = top.values, j.gather(1, top.indices)
    tok = lm.tokenizer
    dec = (lambda t: tok.decode([int(t)])) if tok is not None else (lambda t: f"<{int(t)}>")
    out: dict[int, list[Context]] = {}
    for n, f in enumerate(feats):
        rows = []
        for v, g in zip(best_v[n].tolist(), best_i[n].tolist()):
            if v == float("-inf") or v <= 0:
                continue
            doc, pos = divmod(g, T)
            before = [dec(t) for t in tokens[doc, max(0, pos - window):pos]]
            rows.append(Context(doc, pos, v, before, dec(tokens[doc, pos])))
        out[f] = rows
    return out


@torch.no_grad()
def answer_activations(lm: UnfoldedGPT2, d: SparseDictionary, dataset: TaskDataset
                       ) -> Float[Tensor, "batch features"]:
    """``[B, n_features]``: every feature's activation at each example's answer position."""
    x = dictionary_inputs(lm, d, dataset.clean_tokens)
    return d.encode(x[torch.arange(len(dataset)), dataset.answer_pos])


@torch.no_grad()
def feature_correlations(lm: UnfoldedGPT2, d: SparseDictionary, dataset: TaskDataset,
                         values: Sequence[float] | Float[Tensor, "batch"]
                         ) -> Float[Tensor, "features"]:
    """``[n_features]``: Pearson correlation over the examples between each feature's
    activation at the answer position and a number per example (e.g. the start year's two
    digits ``dataset.meta["yy"]``); 0 for features that never vary."""
    v = torch.as_tensor(list(values) if not isinstance(values, Tensor) else values,
                        dtype=torch.float32)
    if v.shape != (len(dataset),):
        raise TutorialError(f"values must hold one number per example ({len(dataset)}), got "
                            f"shape {tuple(v.shape)}")
    f = answer_activations(lm, d, dataset)
    fc, vc = f - f.mean(0), v - v.mean()
    denom = fc.norm(dim=0) * vc.norm()
    return torch.where(denom > 0, (fc * vc[:, None]).sum(0) / denom.clamp_min(1e-12),
                       torch.zeros_like(denom))


@torch.no_grad()
def feature_task_scores(lm: UnfoldedGPT2, d: SparseDictionary, dataset: TaskDataset,
                        group: Bool[Tensor, "batch"] | Sequence[bool]
                        ) -> Float[Tensor, "features"]:
    """``[n_features]``: mean activation at the answer position on the examples where
    ``group`` is True minus where it is False (e.g. ``dataset.meta["plural"]``)."""
    group = torch.as_tensor(list(group) if not isinstance(group, Tensor) else group,
                            dtype=torch.bool)
    if group.shape != (len(dataset),) or group.all() or not group.any():
        raise TutorialError(f"group must be {len(dataset)} booleans (one per example) with both "
                            "values present")
    f = answer_activations(lm, d, dataset)
    return f[group].mean(0) - f[~group].mean(0)


@torch.no_grad()
def edit_feature_metric(lm: UnfoldedGPT2, d: SparseDictionary, dataset: TaskDataset,
                        feature: int | Sequence[int], *, scale: float | None = 0.0,
                        add: float = 0.0, per_example: bool = True
                        ) -> Float[Tensor, "batch"] | Float[Tensor, ""]:
    """The task metric with SAE feature(s) ``feature`` edited at every example's answer
    position: each activation ``f_i`` replaced by ``scale * f_i`` (``scale=0``: ablation;
    ``None``: kept) and ``add`` times the unit decoder direction added (steering; for several
    features, along each of them); the SAE's reconstruction error is kept, so nothing else in
    the residual stream changes."""
    _check_sae(d)
    feats = [_check_feature(d, f) for f in ([feature] if isinstance(feature, int)
                                            and not isinstance(feature, bool) else feature)]
    if not feats:
        raise TutorialError("give at least one feature")
    idx = torch.tensor(feats)
    rows = torch.arange(len(dataset))
    pos = dataset.answer_pos
    directions = d.W_dec[:, idx]                                  # [d, n]

    def edit(layer: int, x: Tensor) -> Tensor:
        if layer != d.config.layer:
            return x
        x = x.clone()
        here = x[rows, pos]
        change = add * directions.sum(1).expand_as(here)
        if scale is not None:
            f = d.encode(here)[:, idx]                            # [B, n]
            change = change + ((scale - 1.0) * f) @ directions.T
        x[rows, pos] = here + change
        return x

    logits = lm.run(lm.check_tokens(dataset.clean_tokens), resid_edit=edit).logits
    return dataset.metric(logits, per_example=per_example)
