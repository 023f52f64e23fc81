"""Notebook 06's section on a published model: a TopK sparse autoencoder trained for a minute on
GPT-2 small's residual stream, reported as the notebook reports the shipped ones."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...features.dictionary import DictionaryConfig, SparseDictionary
from ...features.evaluation import reconstruction_stats, splice_stats
from ...features.reading import feature_task_scores
from ...features.training import TrainConfig, train_dictionary
from ...features.unfolded import UnfoldedGPT2
from ...tasks import make_task
from ...tasks.base import TaskDataset
from ..dictionaries import sae_task_metric
from ..printing import fixed
from .common import check_positive, gpu_hint, model_label, model_shape, published_lines

TASKS = ("greater_than", "sva", "ioi")


@dataclass
class FeaturesSection:
    """Notebook 06 on a large model: a TopK SAE of ``n_features`` on ``resid_pre`` of ``layer``,
    trained on the prompts of :data:`TASKS` (training frames) and evaluated on held-out frames:
    L0, variance explained, dead share, next-token loss clean / spliced / site zeroed (over the
    prompts' real tokens) and the share recovered; each task's metric with the SAE spliced in;
    the feature most tied to the agreement subject's number."""

    model: str
    shape: str
    layer: int
    n_features: int
    k: int
    steps: int
    n_train_tokens: int
    n_eval_tokens: int
    train_seconds: float
    l0: float
    fve: float
    dead_fraction: float
    loss_clean: float
    loss_spliced: float
    loss_zero: float
    loss_recovered: float
    task_metric: dict[str, tuple[float, float]]
    number_feature: int
    number_score: tuple[float, float]

    def summary(self) -> str:
        lines = [
            f"Notebook 06 on {self.model} ({self.shape}): a TopK SAE (k = {self.k}, "
            f"{self.n_features:,} features) on resid_pre {self.layer}, {self.steps} Adam steps "
            f"on {self.n_train_tokens:,} tokens of task prompts ({self.train_seconds:.0f} s)",
            f"  held-out prompts ({self.n_eval_tokens:,} tokens): L0 {self.l0:.1f}, variance "
            f"explained {self.fve:.3f}, dead features {self.dead_fraction:.1%}",
            f"  next-token loss clean {self.loss_clean:.3f}, SAE spliced {self.loss_spliced:.3f}, "
            f"site zeroed {self.loss_zero:.3f}: loss recovered {self.loss_recovered:.3f}",
            "  task metric, model -> SAE spliced: " + ", ".join(
                f"{t} {fixed(m, 3)} -> {fixed(s, 3)}" for t, (m, s) in self.task_metric.items()),
            f"  agreement: feature {self.number_feature} separates plural from singular subjects "
            f"most (activation difference {self.number_score[0]:.2f} on training frames, "
            f"{self.number_score[1]:.2f} held out)",
            published_lines("features"),
            gpu_hint("06", "n_prompts=1000, steps=3000, n_features=8192"),
        ]
        return "\n".join(lines)


def _real_positions(ds: TaskDataset) -> Tensor:
    """``[B, T]``: the prompt's own tokens (up to the answer position; the rest is padding)."""
    T = ds.clean_tokens.shape[1]
    return torch.arange(T)[None, :] <= ds.answer_pos[:, None]


def _activations(lm: UnfoldedGPT2, datasets: list[TaskDataset], site: str, batch_size: int
                 ) -> Tensor:
    rows = []
    for ds in datasets:
        x = lm.activations(ds.clean_tokens, (site,), batch_size)[site]
        rows.append(x[_real_positions(ds)])
    return torch.cat(rows)


def _padded_prompts(datasets: list[TaskDataset]) -> tuple[Tensor, Tensor]:
    """Every dataset's prompts right-padded to the longest, ``[N, T]``, and the mask of their
    real tokens (up to each answer position) for :func:`~tutorial_utils.features.evaluation.
    splice_stats` (causal attention: padding after a token does not change it)."""
    T = max(ds.clean_tokens.shape[1] for ds in datasets)
    toks, masks = [], []
    for ds in datasets:
        pad = T - ds.clean_tokens.shape[1]
        toks.append(torch.nn.functional.pad(ds.clean_tokens, (0, pad)))
        masks.append(torch.nn.functional.pad(_real_positions(ds), (0, pad)))
    return torch.cat(toks), torch.cat(masks)


def section_06(model: Any, *, layer: int | None = None, n_features: int = 2048, k: int = 32,
               n_prompts: int = 200, n_eval: int = 60, steps: int = 400, batch_size: int = 256,
               seed: int = 0, verbose: bool = True) -> FeaturesSection:
    """Train a TopK SAE (:mod:`tutorial_utils.features`) on the residual stream before block
    ``layer`` (default the middle one) of ``model``'s own, unfolded weights, over ``n_prompts``
    prompts of each task of :data:`TASKS` (training frames), for ``steps`` Adam steps; then
    evaluate it on ``n_eval`` held-out prompts per task (held-out frames, nouns and names) as notebook 06
    evaluates the shipped SAEs, and find the feature most tied to the agreement subject's
    number (:func:`~tutorial_utils.features.reading.feature_task_scores`)."""
    check_positive(n_features=n_features, k=k, n_prompts=n_prompts, n_eval=n_eval, steps=steps,
                   batch_size=batch_size)
    lm = UnfoldedGPT2.from_model(model)
    layer = lm.w.n_layers // 2 if layer is None else lm.check_layer(layer)
    site = f"resid_pre.{layer}"
    tok = lm.tokenizer
    train = {t: make_task(t, tok, n=n_prompts, frames_split="train", seed=seed) for t in TASKS}
    held = {t: make_task(t, tok, n=n_eval, frames_split="heldout", seed=seed + 1,
                         **({"names": "heldout"} if t == "ioi" else {"nouns": "heldout"}))
            for t in TASKS}
    x = _activations(lm, list(train.values()), site, batch_size)
    x_eval = _activations(lm, list(held.values()), site, batch_size)
    sae = SparseDictionary(DictionaryConfig("sae", lm.w.d_model, lm.w.d_model, n_features, "topk",
                                            k=k, layer=layer, model=lm.name), seed=seed)
    start = time.time()
    train_dictionary(sae, x, x, TrainConfig(steps=steps, batch_size=min(batch_size, x.shape[0]),
                                            seed=seed, log_every=max(1, steps)))
    seconds = time.time() - start
    sae.requires_grad_(False)
    stats = reconstruction_stats(sae, x_eval, x_eval)
    tokens, real = _padded_prompts(list(held.values()))
    losses = splice_stats(lm, sae, tokens, batch_size, mask=real)
    metrics = {t: sae_task_metric(lm, sae, ds) for t, ds in held.items()}
    score = feature_task_scores(lm, sae, train["sva"], train["sva"].meta["plural"])
    feat = int(score.argmax())
    held_score = feature_task_scores(lm, sae, held["sva"], held["sva"].meta["plural"])
    res = FeaturesSection(
        model_label(model), model_shape(model), layer, n_features, k, steps, int(x.shape[0]),
        int(x_eval.shape[0]), seconds, stats.l0, stats.fve, stats.dead_fraction,
        losses.loss_clean, losses.loss_spliced, losses.loss_zero, losses.loss_recovered, metrics, feat,
        (float(score[feat]), float(held_score[feat])))
    if verbose:
        print(res.summary())
    return res
