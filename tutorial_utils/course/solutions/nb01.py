"""Reference solutions of ``notebooks/01_model_agnostic_baselines``' exercises."""

from __future__ import annotations

import random
from typing import Any, Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ... import input_attribution as A
from ... import probing as P

__all__ = ["control_task_labels", "gradient_x_input", "inlp", "integrated_gradients",
           "occlusion", "train_binary_probe"]


def train_binary_probe(X: Float[Tensor, "n d"], y: Int[Tensor, "n"], weight_decay: float
                       ) -> tuple[Float[Tensor, "d"], Float[Tensor, ""]]:
    """Exercise 2.1: logistic regression ``sigmoid(X w + b)`` minimising the mean binary
    cross-entropy plus ``weight_decay / 2 * ||w||^2`` (no penalty on ``b``), by L-BFGS."""
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y.float())
                + 0.5 * weight_decay * (w ** 2).sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def control_task_labels(tokens: Int[Tensor, "n pos"], pos: Int[Tensor, "n"],
                        labels: Int[Tensor, "n"], seed: int) -> Int[Tensor, "n"]:
    """Exercise 2.2: Hewitt & Liang's (2019) control task: one label per word type at the
    probed position, drawn at random from the labels' empirical distribution."""
    words = tokens[torch.arange(len(tokens)), pos].tolist()
    rng = random.Random(seed)
    pool = labels.tolist()
    table = {w: rng.choice(pool) for w in sorted(set(words))}
    return torch.tensor([table[w] for w in words])


def gradient_x_input(model: Any, tokens: Int[Tensor, "batch pos"], target_fn: Callable
                     ) -> Float[Tensor, "batch pos"]:
    """Exercise 3.1: ``(df/dx_t) . x_t`` for each token embedding ``x_t`` (Shrikumar et al.
    2016)."""
    x = A.token_embeddings(model, tokens)
    _, g = A.embedding_gradients(model, tokens, target_fn, embeds=x)
    return (g * x).sum(-1)


def integrated_gradients(model: Any, tokens: Int[Tensor, "batch pos"], target_fn: Callable,
                         baseline_embeds: Float[Tensor, "batch pos d_model"], n_steps: int
                         ) -> Float[Tensor, "batch pos"]:
    """Exercise 3.2: integrated gradients (Sundararajan et al. 2017) by the midpoint rule,
    ``(x - x') . (1/n) sum_k grad f(x' + (k + 1/2)/n (x - x'))``."""
    x = A.token_embeddings(model, tokens)
    total = torch.zeros_like(x)
    for k in range(n_steps):
        alpha = (k + 0.5) / n_steps
        _, g = A.embedding_gradients(model, tokens, target_fn,
                                     embeds=baseline_embeds + alpha * (x - baseline_embeds))
        total += g / n_steps
    return ((x - baseline_embeds) * total).sum(-1)


def occlusion(model: Any, tokens: Int[Tensor, "batch pos"], target_fn: Callable,
              replacement_id: int) -> Float[Tensor, "batch pos"]:
    """Exercise 3.3: ``f(x) - f(x with token t replaced)`` for every position but the first
    (Zeiler & Fergus 2014), 0 at position 0."""
    f_x = A.target_values(model, tokens, target_fn)
    scores = torch.zeros(tokens.shape)
    for t in range(1, tokens.shape[1]):
        occluded = tokens.clone()
        occluded[:, t] = replacement_id
        scores[:, t] = f_x - A.target_values(model, occluded, target_fn)
    return scores


def inlp(X: Float[Tensor, "n d"], y: Int[Tensor, "n"], n_iterations: int) -> Float[Tensor, "k d"]:
    """Exercise 5.1: iterative nullspace projection (Ravfogel et al. 2020): train a probe on
    the data projected onto the nullspace of the directions found so far, add its (orthogonalised,
    normalised) direction, repeat; returns the orthonormal basis ``[n_iterations, d]``."""
    Z = X - X.mean(0)
    basis = torch.zeros(0, X.shape[1])
    for _ in range(n_iterations):
        Zp = Z - (Z @ basis.T) @ basis
        probe = P.train_probe(Zp, y, standardize=False)
        w = (probe.weight[1] - probe.weight[0]).float()
        w = w - (w @ basis.T) @ basis
        basis = torch.cat([basis, (w / w.norm())[None]])
    return basis
