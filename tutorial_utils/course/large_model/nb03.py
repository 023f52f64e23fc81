"""Notebook 03\'s section on a published model: activation patching and the logit lens on Greater-Than."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ... import patching as P
from ...dla import task_metric_attribution
from ...logit_lens import logit_lens
from ...names import mlp_name
from ...tasks import make_greater_than
from .common import check_positive, gpu_hint, model_label, model_shape, published_lines, top_named

@dataclass
class PatchingSection:
    """Notebook 03 on a large model, Greater-Than: every head's output and every MLP patched
    from the corrupted run (normalised metric: 1 = clean, 0 = corrupted; ``heads [L, H]``,
    ``mlps [L]``), and the logit lens's probability difference after each block
    (``lens_pd [n_layers + 1]``, index 0 = embeddings), and each component's direct logit
    attribution to the mean logit of the years above YY minus those at or below
    (``dla_upweight [n_components]``, labels ``dla_labels``)."""

    model: str
    shape: str
    n_examples: int
    metric_clean: float
    metric_corrupted: float
    heads: Tensor
    mlps: Tensor
    lens_pd: Tensor
    lens_labels: list[str]
    top_heads: list[tuple[str, float]]
    dla_labels: list[str] = field(default_factory=list)
    dla_upweight: Tensor = field(default_factory=lambda: torch.zeros(0))

    def summary(self) -> str:
        order = self.mlps.nan_to_num(float("inf")).argsort()[:4]
        return "\n".join([
            f"Notebook 03 on {self.model} ({self.shape}), Greater-Than, {self.n_examples} prompts:",
            f"  probability difference: clean {self.metric_clean:.3f}, corrupted "
            f"{self.metric_corrupted:.3f}",
            "  heads whose patching hurts most (normalised metric): "
            + ", ".join(f"{h} {v:.2f}" for h, v in self.top_heads),
            "  MLPs whose patching hurts most: "
            + ", ".join(f"{mlp_name(int(i))} {float(self.mlps[i]):.2f}" for i in order),
            "  logit lens, probability difference by layer: "
            + ", ".join(f"{n} {float(v):.2f}" for n, v in zip(self.lens_labels, self.lens_pd)),
            "  direct logit attribution, mean logit of years > YY minus years <= YY, largest: "
            + ", ".join(f"{self.dla_labels[int(i)]} {float(self.dla_upweight[i]):+.2f}"
                        for i in self.dla_upweight.abs().argsort(descending=True)[:5]),
            published_lines("greater_than", "greater_than_circuit"),
            gpu_hint("03", "n_examples=64"),
        ])


def section_03(model: Any, *, n_examples: int = 6, seed: int = 0, top_k: int = 5,
               verbose: bool = True) -> PatchingSection:
    """Notebook 03's activation patching and logit lens on Greater-Than (canonical frame):
    :func:`tutorial_utils.patching.patch_heads` and an ``mlp_out`` sweep by layer, then
    :func:`tutorial_utils.logit_lens.logit_lens` and
    :func:`tutorial_utils.dla.task_metric_attribution` (``linearise=False``) over the 100 year
    tokens."""

    check_positive(n_examples=n_examples, top_k=top_k)
    ds = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    heads = P.patch_heads(model, ds, progress=False)
    mlps = P.patching_sweep(model, ds, "mlp_out", ("layer",), progress=False)
    # the 100 year tokens are every example's candidates, signed + above YY and - at or below
    lens = logit_lens(model, ds.clean_tokens, ds.answer_pos, token_ids=ds.candidate_ids[0])
    probs = lens.probs().float().cpu()  # [points, B, 100]
    lens_pd = (probs * ds.candidate_sign.cpu()[None]).sum(-1).mean(-1)
    # mean logit of the years above YY minus that of the years at or below, per component
    dla = task_metric_attribution(model, ds, linearise=False)
    upweight = dla.values.mean(1).float().cpu()  # [components]
    nh = heads.normalized()
    res = PatchingSection(model_label(model), model_shape(model), n_examples, float(heads.metric_clean),
                          float(heads.metric_corrupted), nh, mlps.normalized(), lens_pd,
                          list(lens.labels), top_named(nh, top_k, largest=False), list(dla.labels),
                          upweight)
    if verbose:
        print(res.summary())
    return res
