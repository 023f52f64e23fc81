"""Superposition in a toy model (Elhage et al. 2022, "Toy Models of Superposition").

``n`` features, each zero with probability ``S`` (the *sparsity*) and otherwise uniform in
``[0, 1]``, are squeezed through ``m < n`` hidden dimensions and read back:

    h = W x,        x_hat = ReLU(W^T h + b) = ReLU(W^T W x + b),     W [m, n],

trained on the importance-weighted squared error ``L = E_x sum_i I_i (x_i - x_hat_i)^2`` with
``I_i = decay^i``. Dense features (``S = 0``): the model keeps the ``m`` most important ones,
orthogonal, and drops the rest. As ``S`` grows it represents more features than dimensions, at
angles that interfere little because two features are rarely active together.

Geometry (Elhage et al., sections 3-4), for each feature ``i`` with column ``W_i``:

* ``||W_i||``: about 1 if the feature is represented, about 0 if dropped (*represented* here:
  ``||W_i|| > 0.5``);
* interference ``sum_{j != i} (W_hat_i . W_j)^2``, with ``W_hat_i = W_i / ||W_i||``;
* feature dimensionality ``D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2`` (1: a dimension of its
  own; 1/2: shares one with another feature, e.g. an antipodal pair; 2/5: a pentagon...);
* dimensions per feature ``m / ||W||_F^2`` (1 when ``m`` features are represented
  orthogonally; below 1 in superposition).

Several sparsities train at once as independent *instances* of one batched model (seconds on
a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..errors import TutorialError

__all__ = ["ToyModel", "ToyModelConfig", "ToyModels", "feature_geometry", "sample_features",
           "toy_loss", "train_toy_models"]


@dataclass
class ToyModelConfig:
    """The toy models to train: one instance per sparsity."""

    n_features: int = 20
    n_hidden: int = 5
    sparsities: tuple[float, ...] = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997)
    importance_decay: float = 0.9
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0

    def check(self) -> "ToyModelConfig":
        for name in ("n_features", "n_hidden", "steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TutorialError(f"{name} must be an integer >= 1, got {v!r}")
        if not self.sparsities or any(not 0.0 <= float(s) < 1.0 for s in self.sparsities):
            raise TutorialError(f"sparsities must be probabilities in [0, 1) (the chance a "
                                f"feature is zero), got {self.sparsities!r}")
        if not 0.0 < self.importance_decay <= 1.0:
            raise TutorialError(f"importance_decay must be in (0, 1], got "
                                f"{self.importance_decay!r}")
        return self


class ToyModel(nn.Module):
    """``K`` independent toy models: ``W [K, m, n]``, ``b [K, n]``."""

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        bound = (6 / (n_features + n_hidden)) ** 0.5          # Xavier-uniform
        self.W = nn.Parameter((torch.rand(n_instances, n_hidden, n_features, generator=gen)
                               * 2 - 1) * bound)
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))

    def forward(self, x: Float[Tensor, "batch instances features"]
                ) -> Float[Tensor, "batch instances features"]:
        """``ReLU(W^T W x + b)`` for each instance."""
        h = torch.einsum("kmn,bkn->bkm", self.W, x)
        return torch.relu(torch.einsum("kmn,bkm->bkn", self.W, h) + self.b)


def sample_features(batch: int, sparsities: Float[Tensor, "instances"], n_features: int,
                    generator: torch.Generator | None = None
                    ) -> Float[Tensor, "batch instances features"]:
    """``x_i ~ U[0, 1]`` with probability ``1 - S_k``, else 0, for each instance ``k``."""
    K = sparsities.shape[0]
    values = torch.rand(batch, K, n_features, generator=generator)
    keep = torch.rand(batch, K, n_features, generator=generator) >= sparsities[None, :, None]
    return values * keep


def toy_loss(x: Float[Tensor, "batch instances features"],
             x_hat: Float[Tensor, "batch instances features"],
             importance: Float[Tensor, "features"]) -> Float[Tensor, "instances"]:
    """``E_x sum_i I_i (x_i - x_hat_i)^2`` for each instance."""
    return (importance * (x - x_hat).pow(2)).sum(-1).mean(0)


@dataclass
class ToyModels:
    """Trained toy models, their config and final losses (one per sparsity)."""

    model: ToyModel
    config: ToyModelConfig
    importance: Tensor
    final_loss: Tensor
    history: list[list[float]] = field(default_factory=list)

    @property
    def W(self) -> Tensor:
        return self.model.W.detach()


@torch.enable_grad()  # trains even when the caller (a notebook) turned gradients off
def train_toy_models(config: ToyModelConfig = ToyModelConfig()) -> ToyModels:
    """Train one toy model per sparsity (Adam, constant learning rate, seeded)."""
    config.check()
    gen = torch.Generator().manual_seed(config.seed)
    S = torch.tensor(config.sparsities, dtype=torch.float32)
    K, n = S.shape[0], config.n_features
    model = ToyModel(K, n, config.n_hidden, seed=config.seed)
    importance = config.importance_decay ** torch.arange(n, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = []
    for step in range(config.steps):
        x = sample_features(config.batch_size, S, n, gen)
        loss = toy_loss(x, model(x), importance)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if step % max(1, config.steps // 20) == 0 or step == config.steps - 1:
            history.append(loss.detach().tolist())
    with torch.no_grad():
        x = sample_features(8192, S, n, gen)
        final = toy_loss(x, model(x), importance)
    return ToyModels(model, config, importance, final, history)


def feature_geometry(W: Float[Tensor, "instances hidden features"]
                     ) -> dict[str, Float[Tensor, "..."]]:
    """The geometry of each instance's features (module docstring): ``norms [K, n]``,
    ``represented [K]`` (features with norm > 0.5), ``interference [K, n]``,
    ``dimensionality [K, n]``, ``dims_per_feature [K]`` and the Gram matrix ``gram [K, n, n]``
    (``W^T W``)."""
    if not isinstance(W, Tensor) or W.ndim != 3:
        raise TutorialError(f"feature_geometry needs W [instances, hidden, features], got "
                            f"{tuple(W.shape) if isinstance(W, Tensor) else type(W).__name__}")
    W = W.detach().float()
    norms = W.norm(dim=1)                                      # [K, n]
    unit = W / norms[:, None, :].clamp_min(1e-8)
    overlap = torch.einsum("kmi,kmj->kij", unit, W).pow(2)     # (W_hat_i . W_j)^2
    eye = torch.eye(W.shape[2], dtype=torch.bool)[None]
    interference = overlap.masked_fill(eye, 0.0).sum(-1)
    dimensionality = norms.pow(2) / overlap.sum(-1).clamp_min(1e-12)
    dimensionality = torch.where(norms > 1e-3, dimensionality, torch.zeros_like(dimensionality))
    return {
        "norms": norms,
        "represented": (norms > 0.5).sum(-1),
        "interference": interference,
        "dimensionality": dimensionality,
        "dims_per_feature": W.shape[1] / W.pow(2).sum((1, 2)),
        "gram": torch.einsum("kmi,kmj->kij", W, W),
    }
