"""Concept erasure by iterative nullspace projection (INLP), and running a model with a concept
erased at every position.

Ravfogel et al. (2020), "Null It Out: Guarding Protected Attributes by Iterative Nullspace
Projection". Given representations ``X`` ``[N, d]`` and labels ``y`` ``[N]`` of a concept:

    repeat k times:
        train a linear probe on P (x - mu)           (P = I at the start)
        u_i = its weight vector, made orthogonal to u_1 .. u_{i-1} and normalised
        P = I - sum_i u_i u_i^T                      (the projection onto their nullspace)

so after ``k`` iterations of a binary concept ``P`` is the orthogonal projection that removes a
rank-``k`` subspace, ``P^2 = P = P^T``. The eraser maps ``x -> mu + P (x - mu)``: the
component of ``x - mu`` in the removed subspace is set to zero, i.e. every removed coordinate
is replaced by its mean over the fitting data (a mean-ablation of ``k`` directions at once,
rather than of one). Ravfogel et al. apply ``x -> P x`` (removed coordinates set to 0); the two
differ by the constant ``(I - P) mu``, so a probe with a bias reads the same from both, but the
affine form keeps activations patched into a model closer to their distribution. Each new probe is trained on data from which the earlier directions are
gone, so it finds another direction that still carries the concept; iterating until a fresh
probe is at chance removes all *linearly* decodable information on the fitting distribution.
A multi-class probe contributes ``C - 1`` directions per iteration (its weight rows minus their
mean).

* :func:`nullspace_projection`: ``P`` from any set of directions (orthonormalised by QR).
* :func:`inlp`: the iteration; returns a :class:`NullspaceEraser`.
* :func:`random_eraser`: the control, a random subspace of the same rank and the same ``mu``.
* :func:`run_with_eraser`: a model's logits with the eraser applied to the activation at one
  hook, at every position (or at chosen ones).

Decodable is not the same as used (Elazar et al. 2021, "Amnesic Probing"): if behaviour
survives the removal of every linearly decodable direction of a concept, the model does not
rely on that linear information at that place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .interchange import stacked_forward
from .model_checks import (check_hook_names, check_model, check_tokens, forward_attention_mask,
                           padding_mask)
from .probing import _labels, train_probe
from .validation import check_batch_size, check_finite, check_int, check_number

if TYPE_CHECKING:
    from .models import Model

__all__ = ["NullspaceEraser", "nullspace_projection", "inlp", "random_eraser",
           "run_with_eraser"]


def nullspace_projection(directions: Float[Tensor, "k d"], tol: float = 1e-6
                         ) -> Float[Tensor, "d d"]:
    """``P = I - Q Q^T`` ``[d, d]``, the orthogonal projection onto the nullspace of the rows
    of ``directions`` ``[k, d]`` (``Q`` an orthonormal basis of their span, by QR).

    Raises if the directions are linearly dependent (their rank is below ``k``)."""
    directions = check_finite(directions, "directions")
    tol = check_number(tol, "tol", 0.0)
    if directions.ndim != 2 or directions.shape[0] == 0:
        raise TutorialError(f"directions must be [k, d] with k >= 1, got "
                            f"{tuple(directions.shape)}")
    q = _orthonormal_basis(directions, tol)
    d = directions.shape[1]
    return torch.eye(d, dtype=q.dtype) - q.T @ q


def _orthonormal_basis(directions: Tensor, tol: float = 1e-6) -> Tensor:
    """Orthonormal rows spanning the rows of ``directions`` ``[k, d]`` (``[k, d]``)."""
    a = directions.detach().double()
    q, r = torch.linalg.qr(a.T)  # a.T = q r, q [d, k]
    diag = r.diagonal().abs()
    if bool((diag <= tol * max(float(diag.max()), 1e-30)).any()):
        raise TutorialError(f"the {directions.shape[0]} directions are linearly dependent "
                            f"(rank below {directions.shape[0]})")
    return q.T.contiguous()


@dataclass
class NullspaceEraser:
    """``x -> mean + P (x - mean)`` with ``P = I - basis^T basis``.

    ``basis`` ``[k, d]``: orthonormal rows spanning the removed subspace (float64);
    ``mean`` ``[d]``: the mean of the fitting data; ``probe_accuracies``: for :func:`inlp`,
    the training accuracy of each iteration's probe *before* its direction was removed.
    """

    basis: Float[Tensor, "k d"]
    mean: Float[Tensor, "d"]
    probe_accuracies: list[float] = field(default_factory=list)

    @property
    def rank(self) -> int:
        """Dimension of the removed subspace."""
        return int(self.basis.shape[0])

    @property
    def projection(self) -> Float[Tensor, "d d"]:
        """``P`` ``[d, d]`` (float64)."""
        d = self.basis.shape[1]
        return torch.eye(d, dtype=self.basis.dtype) - self.basis.T @ self.basis

    def __call__(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        """Erase from ``x`` ``[..., d]`` (any float dtype; returns the same dtype)."""
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            raise TutorialError(f"the eraser takes float activations [..., d], got "
                                f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.shape[-1] != self.basis.shape[1]:
            raise TutorialError(f"activations of size {x.shape[-1]}, eraser fitted on size "
                                f"{self.basis.shape[1]}")
        b = self.basis.to(x)
        centred = x - self.mean.to(x)
        return x - (centred @ b.T) @ b


def inlp(X: Float[Tensor, "n d"], y: Int[Tensor, "n"], n_iterations: int,
         weight_decay: float = 1e-2, max_iter: int = 200) -> NullspaceEraser:
    """Iterative nullspace projection (Ravfogel et al. 2020) of the concept ``y`` ``[N]``
    (integer classes) from ``X`` ``[N, d]``.

    Each iteration trains :func:`tutorial_utils.probing.train_probe` (L2-regularised logistic
    regression, unstandardised so that its weights live in the current subspace) on
    ``(X - mean) P``, takes its direction(s) (``C - 1`` of them for ``C`` classes), projects them
    into the current subspace, orthonormalises them against those already removed, and updates
    ``P``. The removed rank is ``n_iterations * (C - 1)``, or less when a probe's weights
    vanish (nothing linear about ``y`` is left; the iteration stops there, see
    :attr:`NullspaceEraser.rank`). Deterministic.
    """
    X = check_finite(X, "X (features)")
    y = _labels(y, "y")
    n_iterations = check_int(n_iterations, "n_iterations", 1)
    weight_decay = check_number(weight_decay, "weight_decay", 0.0)
    max_iter = check_int(max_iter, "max_iter", 1)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise TutorialError(f"X must be [N, d] and y [N], got {tuple(X.shape)} and "
                            f"{tuple(y.shape)}")
    C = int(y.max()) + 1
    if C < 2 or int(y.min()) < 0:
        raise TutorialError("y must hold integer classes 0..C-1 with at least two classes")
    d = X.shape[1]
    if not 1 <= n_iterations * (C - 1) < d:
        raise TutorialError(f"n_iterations * (classes - 1) = {n_iterations * (C - 1)} must be in "
                            f"[1, d = {d})")
    Xd = X.detach().double()
    mean = Xd.mean(0)
    Z = Xd - mean
    basis = torch.zeros(0, d, dtype=torch.float64)
    accs: list[float] = []
    for _ in range(n_iterations):
        Zp = Z - (Z @ basis.T) @ basis
        probe = train_probe(Zp, y, n_classes=C, weight_decay=weight_decay, max_iter=max_iter,
                            standardize=False)
        accs.append(probe.accuracy(Zp, y))
        W = probe.weight - probe.weight.mean(0, keepdim=True)  # [C, d], rank C - 1
        new = W[1:] if C == 2 else W[:-1]
        for w in new:
            w = w - (w @ basis.T) @ basis  # stay in the current subspace
            w = w - (w @ basis.T) @ basis  # (twice: Gram-Schmidt is unstable once)
            n = float(w.norm())
            if n < 1e-8 * max(1.0, float(Z.norm(dim=1).max())):
                # the probe's weights vanished: no linear information about y is left
                return NullspaceEraser(basis, mean, accs)
            basis = torch.cat([basis, (w / n)[None]])
    return NullspaceEraser(basis, mean, accs)


def random_eraser(d: int, rank: int, mean: Float[Tensor, "d"], seed: int = 0
                  ) -> NullspaceEraser:
    """The control: a uniformly random ``rank``-dimensional subspace of ``R^d`` erased around
    the same ``mean`` ``[d]``."""
    d, rank, seed = check_int(d, "d", 2), check_int(rank, "rank"), check_int(seed, "seed")
    mean = check_finite(mean, "mean")
    if mean.shape != (d,):
        raise TutorialError(f"mean must be a vector of size d={d}, got {tuple(mean.shape)}")
    if not 1 <= rank < d:
        raise TutorialError(f"rank must be in [1, {d}), got {rank}")
    g = torch.Generator().manual_seed(seed)
    return NullspaceEraser(_orthonormal_basis(torch.randn(rank, d, generator=g,
                                                          dtype=torch.float64)),
                           mean.detach().double())


def run_with_eraser(model: Model, tokens: Int[Tensor, "batch pos"], hook_name: str,
                    eraser: NullspaceEraser | Mapping[int, NullspaceEraser],
                    positions: Sequence[int] | None = None,
                    batch_size: int = 256,
                    attention_mask: Int[Tensor, "batch pos"] | None = None
                    ) -> Float[Tensor, "batch pos vocab"]:
    """Logits ``[B, T, V]`` of ``model`` on ``tokens`` with ``eraser`` applied to the activation
    at ``hook_name`` (``[B, T, d]``) at every position, or only at ``positions``; or, with
    ``eraser`` a mapping ``{position: eraser}``, each position's own eraser. With padding
    (``attention_mask``, or found as :mod:`tutorial_utils.model_checks` says) the forward pass
    gets the mask where it changes the real positions."""
    check_model(model, "run_with_eraser")
    tokens = check_tokens(model, tokens)
    check_hook_names(model, [hook_name])
    T = tokens.shape[1]
    if isinstance(eraser, Mapping):
        if positions is not None:
            raise TutorialError("give positions= or a {position: eraser} mapping, not both")
        if not eraser:
            raise TutorialError("the {position: eraser} mapping is empty")
        by_pos = {check_int(p, "a position of the eraser mapping", minimum=0): e
                  for p, e in eraser.items()}
    else:
        if positions is None:
            pos = list(range(T))
        else:
            if isinstance(positions, (str, bytes)) or not hasattr(positions, "__iter__"):
                raise TutorialError(f"positions must be a list of ints, got {positions!r}")
            pos = [check_int(p, "positions[i]") for p in positions]
        by_pos = {p: eraser for p in pos}
    for e in by_pos.values():
        if not isinstance(e, NullspaceEraser):
            raise TutorialError(f"eraser must be a NullspaceEraser (from inlp or random_eraser), "
                                f"got {type(e).__name__}")
    if any(not 0 <= p < T for p in by_pos):
        raise TutorialError(f"positions {sorted(by_pos)} outside a sequence of length {T}")
    groups: dict[int, tuple[NullspaceEraser, list[int]]] = {}  # one call per distinct eraser
    for p, e in by_pos.items():
        groups.setdefault(id(e), (e, []))[1].append(p)
    fwd_mask = forward_attention_mask(model, padding_mask(model, tokens, attention_mask))
    batch_size = check_batch_size(batch_size)

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        for e, pos in groups.values():
            if act.shape[-1] != e.basis.shape[1]:
                raise TutorialError(f"{hook_name} has width {act.shape[-1]}, the eraser was "
                                    f"fitted on width {e.basis.shape[1]}")
            act[:, pos] = e(act[:, pos])
        return act

    outs = []
    for s in range(0, tokens.shape[0], batch_size):
        outs.append(stacked_forward(model, tokens[s:s + batch_size], 1, [(hook_name, hook)],
                                    attention_mask=None if fwd_mask is None
                                    else fwd_mask[s:s + batch_size]))
    return torch.cat(outs)
