"""Training a :class:`~tutorial_utils.features.dictionary.SparseDictionary` on activations.

The loss is made dimensionless by the target's total variance ``V = E ||y - E[y]||^2`` (a
constant of the training set), so one sparsity coefficient means the same on any site:

    relu: L = E ||y - y_hat||^2 / V  +  l1_coeff * E[ sum_i f_i ] / sqrt(V)
    topk: L = E ||y - y_hat||^2 / V  +  aux_coeff * E ||e - e_hat_dead||^2 / V

The first term is the fraction of variance unexplained. ReLU features pay an L1 penalty
(Bricken et al. 2023; with unit-norm decoder columns it is the penalty ``sum_i f_i ||W_dec,i||``
of Conerly et al. 2024). TopK needs no penalty; its auxiliary loss (Gao et al. 2024, section
A.2) reconstructs the residual error ``e = y - y_hat`` from the ``aux_k`` largest
pre-activations of *dead* features (no activation in the last ``dead_after`` tokens), which
brings them back into use.

Adam; the learning rate decays linearly to 0 over the last ``decay_frac`` of the steps, the L1
coefficient warms up linearly over the first ``l1_warmup_frac`` (Conerly et al. 2024); decoder
columns are renormalised after every step. ``b_dec`` starts at the mean of ``y``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..errors import TutorialError
from .dictionary import SparseDictionary

__all__ = ["TrainConfig", "TrainResult", "dictionary_loss", "train_dictionary"]


@dataclass
class TrainConfig:
    """Optimisation settings (see the module docstring)."""

    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    l1_coeff: float = 1.0
    l1_warmup_frac: float = 0.05
    decay_frac: float = 0.2
    aux_k: int = 64
    aux_coeff: float = 1 / 32
    dead_after: int = 100_000
    seed: int = 0
    log_every: int = 250


@dataclass
class TrainResult:
    """The loss history (one dict per logged step) and the wall time."""

    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def dictionary_loss(d: SparseDictionary, x: Float[Tensor, "batch d_in"],
                    y: Float[Tensor, "batch d_out"], variance: float, l1_coeff: float = 0.0,
                    aux_k: int = 0, aux_coeff: float = 0.0,
                    dead: Bool[Tensor, "features"] | None = None
                    ) -> tuple[Float[Tensor, ""], dict[str, Float[Tensor, "..."]]]:
    """The training loss (module docstring) and its parts: ``mse`` (divided by ``variance``),
    ``l1``, ``aux``, and the activations ``f``."""
    pre = d.pre_activations(x)
    f = d.activate(pre)
    y_hat = d.decode(f)
    err = y - y_hat
    mse = err.pow(2).sum(-1).mean() / variance
    loss = mse
    parts: dict[str, Tensor] = {"mse": mse.detach(), "f": f.detach()}
    if d.config.activation == "relu":
        l1 = f.sum(-1).mean() / variance ** 0.5
        loss = loss + l1_coeff * l1
        parts["l1"] = l1.detach()
    if aux_k and aux_coeff and dead is not None and bool(dead.any()):
        k = min(aux_k, int(dead.sum()))
        masked = pre.masked_fill(~dead, float("-inf"))
        vals, idx = masked.topk(k, dim=-1)
        f_aux = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        e_hat = f_aux @ d.W_dec.T
        aux = (err.detach() - e_hat).pow(2).sum(-1).mean() / variance
        loss = loss + aux_coeff * aux
        parts["aux"] = aux.detach()
    return loss, parts


@torch.enable_grad()  # trains even when the caller (a notebook) turned gradients off
def train_dictionary(d: SparseDictionary, x: Float[Tensor, "n d_in"], y: Float[Tensor, "n d_out"],
                     config: TrainConfig = TrainConfig(),
                     progress: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``d`` in place on the pairs ``(x[i], y[i])`` (``y is x`` for an SAE).

    Batches are drawn uniformly at random with the seeded generator ``config.seed``; returns
    the logged history (``mse``, ``l0``, ``dead`` fraction, ``l1``/``aux``) and the wall time."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise TutorialError(f"train_dictionary: x [n, d_in] and y [n, d_out] must have the same "
                            f"number of rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != d.config.d_in or y.shape[1] != d.config.d_out:
        raise TutorialError(f"train_dictionary: the dictionary maps {d.config.d_in} -> "
                            f"{d.config.d_out}, the data {x.shape[1]} -> {y.shape[1]}")
    if config.steps < 1 or config.batch_size < 1:
        raise TutorialError("train_dictionary: steps and batch_size must be >= 1")
    t0 = time.time()
    n = x.shape[0]
    gen = torch.Generator().manual_seed(config.seed)
    variance = float((y - y.mean(0)).pow(2).sum(-1).mean())
    with torch.no_grad():
        d.b_dec.copy_(y.mean(0))
    opt = torch.optim.Adam([p for p in d.parameters() if p.requires_grad], lr=config.lr)
    last_fired = torch.zeros(d.config.n_features, dtype=torch.long)
    tokens_seen = 0
    result = TrainResult(config=asdict(config))
    decay_start = int(config.steps * (1 - config.decay_frac))
    for step in range(config.steps):
        lr = config.lr if step < decay_start else \
            config.lr * (config.steps - step) / max(1, config.steps - decay_start)
        for g in opt.param_groups:
            g["lr"] = lr
        warm = min(1.0, (step + 1) / max(1, config.l1_warmup_frac * config.steps))
        idx = torch.randint(0, n, (config.batch_size,), generator=gen)
        dead = (tokens_seen - last_fired) >= config.dead_after
        loss, parts = dictionary_loss(d, x[idx], y[idx], variance, config.l1_coeff * warm,
                                      config.aux_k if d.config.activation == "topk" else 0,
                                      config.aux_coeff, dead)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        d.remove_parallel_grad()
        opt.step()
        d.normalize_decoder()
        tokens_seen += config.batch_size
        last_fired[(parts["f"] > 0).any(0)] = tokens_seen
        if step % config.log_every == 0 or step == config.steps - 1:
            row = {"step": step, "loss": float(loss.detach()), "fvu": float(parts["mse"]),
                   "l0": float((parts["f"] > 0).sum(-1).float().mean()),
                   "dead": float(dead.float().mean()), "elapsed_s": time.time() - t0}
            for k in ("l1", "aux"):
                if k in parts:
                    row[k] = float(parts[k])
            result.history.append(row)
            if progress is not None:
                progress(row)
    d.eval()
    result.wall_time_s = time.time() - t0
    return result
