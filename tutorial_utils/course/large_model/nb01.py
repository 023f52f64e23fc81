"""Notebook 01\'s section on a published model: behaviour, probing, input attribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ... import input_attribution as A
from ... import probing as P
from ...tasks import accuracy, make_greater_than, make_sva
from ...errors import TutorialError
from .common import batched_logits, check_positive, gpu_hint, model_label, model_shape, published_lines

@dataclass
class BaselinesSection:
    """Notebook 01 on a large model: minimal-pair behaviour (accuracy and probability
    difference) on agreement and Greater-Than, a subject-number probe at one layer with its
    control task, and input attributions of a few agreement prompts.

    ``attributions[method]``: ``[n_attribution, T]``; ``agreement``: mean Spearman correlation
    between every pair of methods (``[M, M]``, order of ``methods``)."""

    model: str
    shape: str
    n_examples: int
    sva_accuracy: float
    sva_pd: float
    gt_accuracy: float
    gt_pd: float
    probe_layer: int
    probe_accuracy: float
    control_accuracy: float
    methods: list[str]
    attributions: dict[str, Tensor]
    agreement: Tensor
    ig_error: float
    occlusion_token: str

    @property
    def selectivity(self) -> float:
        return self.probe_accuracy - self.control_accuracy

    def summary(self) -> str:
        off = ~torch.eye(len(self.methods), dtype=torch.bool)
        rho = float(self.agreement[off].nanmean()) if len(self.methods) > 1 else float("nan")
        return "\n".join([
            f"Notebook 01 on {self.model} ({self.shape}), {self.n_examples} prompts per task:",
            f"  agreement (opposite attractor): accuracy {self.sva_accuracy:.2f}, probability "
            f"difference {self.sva_pd:.3f}",
            f"  Greater-Than (canonical frame): accuracy {self.gt_accuracy:.2f}, probability "
            f"difference {self.gt_pd:.3f}",
            f"  subject-number probe on the residual stream "
            f"{'at the embeddings' if self.probe_layer == 0 else f'after block {self.probe_layer - 1}'}"
            " (held-out nouns): "
            f"accuracy {self.probe_accuracy:.2f}, control task {self.control_accuracy:.2f}, "
            f"selectivity {self.selectivity:+.2f}",
            f"  input attribution ({', '.join(self.methods)}; occlusion by "
            f"{self.occlusion_token!r}): mean pairwise Spearman {rho:.2f}; IG completeness "
            f"error (median, relative) {self.ig_error:.1e}",
            published_lines("sva", "greater_than"),
            gpu_hint("01", "n_examples=200, n_attribution=24"),
        ])


def section_01(model: Any, *, n_examples: int = 48, n_attribution: int = 4, ig_steps: int = 32,
               probe_layer: int | None = None, batch_size: int = 16, seed: int = 0,
               verbose: bool = True) -> BaselinesSection:
    """Notebook 01's baselines on ``model`` (a causal decoder).

    ``probe_layer`` indexes :func:`tutorial_utils.probing.residual_stream` (0 = embeddings,
    ``l`` = after block ``l - 1``); default the middle of the model."""

    check_positive(n_examples=n_examples, n_attribution=n_attribution, ig_steps=ig_steps,
                    batch_size=batch_size)
    L = model.cfg.n_layers
    layer = L // 2 if probe_layer is None else probe_layer
    if not (isinstance(layer, int) and 0 <= layer <= L):
        raise TutorialError(f"probe_layer must be an int in [0, {L}], got {probe_layer!r}")
    # behaviour
    sva = make_sva(model, n=n_examples, frames_split="all", attractor="opposite", seed=seed)
    sva_logits = batched_logits(model, sva.clean_tokens, batch_size)
    gt = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    gt_logits = batched_logits(model, gt.clean_tokens, batch_size)
    # probe for subject number at one layer: train nouns -> held-out nouns, and a control task
    feats, labels, probed = {}, {}, {}
    for split, s in (("train", seed), ("heldout", seed + 1)):
        ds = make_sva(model, n=n_examples, frames_split="train", nouns=split,
                      attractor="opposite", seed=s)
        feats[split] = P.residual_stream(model, ds.clean_tokens, pos=ds.answer_pos,
                                         batch_size=batch_size)[layer].float().cpu()
        labels[split] = torch.tensor([int(p) for p in ds.meta["plural"]])
        probed[split] = (ds.clean_tokens, ds.answer_pos)  # the token the probe reads
    probe = P.train_probe(feats["train"], labels["train"])
    probe_acc = float(probe.accuracy(feats["heldout"], labels["heldout"]))
    # Hewitt & Liang: one random label per type of the token at the probed position
    control = P.control_task(*probed["train"], labels["train"], seed=seed)
    tr, te = P.random_split(len(control), test_frac=0.3, seed=seed)
    ctrl_acc = float(P.train_probe(feats["train"][tr], control[tr])
                     .accuracy(feats["train"][te], control[te]))
    # input attribution on a few canonical agreement prompts
    canon = make_sva(model, n=n_attribution, frames_split="canonical", attractor="opposite",
                     seed=seed + 3)
    K = canon.candidate_ids.shape[1]  # agreeing forms first, then the disagreeing ones
    agree, disagree = canon.candidate_ids[:, 0], canon.candidate_ids[:, K // 2]
    target = A.contrastive_target(agree, disagree, pos=canon.answer_pos)
    toks = canon.clean_tokens
    occ_id = model.tokenizer.unk_token_id
    if occ_id is None:
        occ_id = model.tokenizer.bos_token_id
    occ_token = model.tokenizer.convert_ids_to_tokens(int(occ_id))
    ig = A.integrated_gradients(model, toks, target, baseline="zero", n_steps=ig_steps)
    attributions = {
        "saliency": A.saliency(model, toks, target),
        "grad x input": A.gradient_x_input(model, toks, target),
        "integrated gradients": ig,
        "occlusion": A.occlusion(model, toks, target, replacement=int(occ_id)),
    }
    attributions = {k: v.detach().float().cpu() for k, v in attributions.items()}
    comp = A.ig_completeness(model, toks, target, ig, baseline="zero")
    T = toks.shape[1]
    mask = (torch.arange(T)[None] >= 1) & (torch.arange(T)[None] <= canon.answer_pos[:, None])
    names, rho = A.method_agreement(attributions, mask)
    res = BaselinesSection(
        model_label(model), model_shape(model), n_examples,
        accuracy(sva_logits, sva), float(sva.metric(sva_logits)),
        accuracy(gt_logits, gt), float(gt.metric(gt_logits)),
        layer, probe_acc, ctrl_acc, list(names), attributions, rho.float().cpu(),
        float(comp.relative_error.float().median()), occ_token)
    if verbose:
        print(res.summary())
    return res
