"""Linear probing of activations, control tasks and selectivity, and a causal check of what a
probe finds.

* :func:`collect_activations` / :func:`residual_stream`: activations at chosen hooks (a names
  filter) and positions, batched, as ``[B, d]`` (or ``[B, T, d]``) tensors.
* :func:`train_probe`: multinomial logistic regression in torch (full-batch L-BFGS on
  standardised features), minimising

      L(W, b) = mean_n CE(W z_n + b, y_n) + (weight_decay / 2) ||W||_F^2,
      z_n = (x_n - mean) / scale,

  so no scikit-learn is needed; the optimum satisfies ``grad L = 0`` (tested).
* :func:`control_task`, :func:`control_labels` and :func:`selectivity`: the control task of
  Hewitt & Liang (2019, "Designing and Interpreting Probes with Control Tasks"). Every word
  *type* ``v`` gets one random label ``C(v)``, drawn from the empirical distribution of the real
  labels over the examples; an example whose representation is read at position ``t`` gets
  ``C(token at t)``, the label of the word *at the probed position*, so the only way to predict
  it is to memorise the identity of the token the representation sits on.
  ``selectivity = accuracy(task) - accuracy(control)`` on the same split: a probe that is
  accurate but not selective may be memorising rather than reading a property.
* :func:`probe_layers`: one probe per layer, the task and its control, accuracy by layer.
* :func:`ablate_direction`: a causal check (in the spirit of amnesic probing, Elazar et al.
  2021, and of Ravichander et al. 2021, "Probing the probing paradigm"): set the component of
  an activation along a (probe) direction ``u`` to a constant and see whether the model's
  behaviour changes. Decodable is not the same as used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .interchange import stacked_forward
from .names import hook_name
from .model_checks import (check_hook_names, check_model, check_real_positions, check_tokens,
                           forward_attention_mask, padding_mask)
from .readout import gather_pos
from .validation import (as_tensor, check_batch_size, check_choice, check_finite, check_int,
                         check_int_ids, check_number, check_positions, check_probability)

if TYPE_CHECKING:
    from .models import Model

__all__ = [
    "collect_activations", "residual_stream", "LinearProbe", "train_probe", "control_labels",
    "control_task", "probed_word_types",
    "split_by_group", "random_split", "LayerProbes", "probe_layers", "selectivity",
    "project_out", "ablate_direction", "random_unit_vectors",
]


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

def _check_pos(pos: int | Sequence[int] | Tensor | None, B: int, T: int) -> Tensor | None:
    """None (every position) or one position per example as a LongTensor ``[B]``."""
    return None if pos is None else check_positions(pos, B, T)


def _max_block(names: Sequence[str]) -> int | None:
    """Highest block index among hook names, or None if any name is outside the blocks."""
    layers = []
    for n in names:
        parts = n.split(".")
        if parts[0] != "blocks" or len(parts) < 3 or not parts[1].isdigit():
            return None
        layers.append(int(parts[1]))
    return max(layers) if layers else None


def collect_activations(model: Model, tokens: Int[Tensor, "batch pos"],
                        names_filter: str | Sequence[str] | Callable[[str], bool],
                        pos: int | Sequence[int] | Int[Tensor, "batch"] | None = None,
                        batch_size: int = 64, progress: bool = False,
                        device: str | torch.device = "cpu",
                        attention_mask: Int[Tensor, "batch pos"] | None = None
                        ) -> dict[str, Float[Tensor, "batch ..."]]:
    """Activations of ``model`` on ``tokens`` ``[B, T]`` at the hooks ``names_filter`` selects.

    ``names_filter``: a hook name, a list of names (validated before any forward pass) or a
    predicate on names. ``pos``: None keeps every position (``[B, T, ...]``), an int or one
    position per example ``[B]`` keeps one (``[B, ...]``). Runs in batches of ``batch_size``
    and, when every requested hook lies in the blocks, stops after the last block needed.
    Returns ``{hook name: activations on device}``.

    Padding (``attention_mask``, 1 = real token; or found as :mod:`tutorial_utils.model_checks`
    says): the forward pass gets the mask where it changes the real positions, a ``pos`` on a
    padded position is refused, and with ``pos=None`` the padded positions hold NaN (a mean
    over positions that forgot the padding shows it, rather than giving a plausible number).
    """
    check_model(model, "collect_activations")
    tokens = check_tokens(model, tokens)
    B, T = tokens.shape
    p = _check_pos(pos, B, T)
    mask = padding_mask(model, tokens, attention_mask)
    if p is not None:
        check_real_positions(mask, p)
    fwd_mask = forward_attention_mask(model, mask)
    batch_size = check_batch_size(batch_size)
    if isinstance(names_filter, str):
        names_filter = [names_filter]
    stop = None
    names: list[str] = []
    if not callable(names_filter):
        if not isinstance(names_filter, (list, tuple)):
            raise TutorialError(f"names_filter must be a hook name, a list of names or a "
                                f"function name -> bool, got {type(names_filter).__name__}")
        names = list(names_filter)
        if not names:
            raise TutorialError("names_filter selects no hook")
        check_hook_names(model, names)
        top = _max_block(names)
        if top is not None and top + 1 < model.cfg.n_layers:
            stop = top + 1
    dev = next(model.parameters()).device
    out: dict[str, list[Tensor]] = {}
    starts = range(0, B, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="collecting activations")
    for s in starts:
        toks = tokens[s:s + batch_size].to(dev)
        kw = {} if fwd_mask is None else {"attention_mask": fwd_mask[s:s + batch_size].to(dev)}
        with torch.no_grad():
            _, cache = model.run_with_cache(toks, names_filter=names_filter, stop_at_layer=stop,
                                            **kw)
        keys = names if not callable(names_filter) else list(cache.keys())
        pb = None if p is None else p[s:s + batch_size]
        for k in keys:
            act = cache[k]
            if pb is None and mask is not None and act.ndim >= 2 and act.shape[1] == T:
                pad = ~mask[s:s + batch_size].to(act.device)
                act = act.masked_fill(pad.reshape(*pad.shape, *([1] * (act.ndim - 2))),
                                      float("nan"))
            out.setdefault(k, []).append((act if pb is None else gather_pos(act, pb)).to(device))
    if not out:
        raise TutorialError("names_filter selected no hook of this model")
    return {k: torch.cat(v) for k, v in out.items()}


def residual_stream(model: Model, tokens: Int[Tensor, "batch pos"],
                    pos: int | Sequence[int] | Int[Tensor, "batch"],
                    batch_size: int = 64, progress: bool = False,
                    attention_mask: Int[Tensor, "batch pos"] | None = None
                    ) -> Float[Tensor, "points batch d_model"]:
    """The residual stream at ``pos`` before every block and after the last,
    ``[n_layers + 1, B, d_model]``: index ``l`` is ``blocks.l.hook_resid_pre`` (0 = the
    embeddings) and index ``n_layers`` is the last ``hook_resid_post``."""
    check_model(model, "residual_stream")
    if pos is None:
        raise TutorialError("residual_stream needs pos (an int or one position per example, "
                            "e.g. TaskDataset.answer_pos)")
    L = model.cfg.n_layers
    names = [hook_name("resid_pre", l) for l in range(L)] + [hook_name("resid_post", L - 1)]
    acts = collect_activations(model, tokens, names, pos=pos, batch_size=batch_size,
                               progress=progress, attention_mask=attention_mask)
    return torch.stack([acts[n] for n in names])


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------

@dataclass
class LinearProbe:
    """A trained linear classifier ``logits = ((x - mean) / scale) @ weight.T + bias``.

    ``weight`` ``[C, d]``, ``bias`` ``[C]``, ``mean`` and ``scale`` ``[d]``.
    """

    weight: Float[Tensor, "classes d"]
    bias: Float[Tensor, "classes"]
    mean: Float[Tensor, "d"]
    scale: Float[Tensor, "d"]
    weight_decay: float = 0.0

    def _features(self, X: Any) -> Tensor:
        X = check_finite(X, "X")
        if X.ndim != 2 or X.shape[1] != self.weight.shape[1]:
            raise TutorialError(f"X must be [N, d={self.weight.shape[1]}] (the probe's width), "
                                f"got {tuple(X.shape)}")
        return X

    def logits(self, X: Float[Tensor, "n d"]) -> Float[Tensor, "n classes"]:
        z = (self._features(X).to(self.weight) - self.mean) / self.scale
        return z @ self.weight.T + self.bias

    def predict(self, X: Float[Tensor, "n d"]) -> Int[Tensor, "n"]:
        return self.logits(X).argmax(-1)

    def accuracy(self, X: Float[Tensor, "n d"], y: Int[Tensor, "n"]) -> float:
        y = _labels(y, "y")
        pred = self.predict(X)
        if y.shape != pred.shape:
            raise TutorialError(f"y must hold one label per row of X ({pred.shape[0]}), got "
                                f"{tuple(y.shape)}")
        return float((pred == y.to(self.weight.device)).double().mean())

    def direction(self, positive: int = 1, negative: int = 0) -> Float[Tensor, "d"]:
        """The unit vector in activation space along which the logit difference
        ``logit[positive] - logit[negative]`` grows: ``(w_pos - w_neg) / scale``, normalised."""
        C = self.weight.shape[0]
        positive = check_int(positive, "positive", 0, C - 1)
        negative = check_int(negative, "negative", 0, C - 1)
        if positive == negative:
            raise TutorialError("positive and negative must be different classes")
        w = (self.weight[positive] - self.weight[negative]) / self.scale
        return (w / w.norm()).float()


def _labels(y: Any, what: str) -> Int[Tensor, "n"]:
    """Integer class labels (a bool or a float label is refused: 0.5 is not a class)."""
    t = as_tensor(y, what)
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
        raise TutorialError(f"{what} must hold integer class labels 0..C-1, got dtype {t.dtype} "
                            "(convert with .long() if they really are classes)")
    return t.long()


def train_probe(X: Float[Tensor, "n d"], y: Int[Tensor, "n"], n_classes: int | None = None,
                weight_decay: float = 1e-2, max_iter: int = 200,
                standardize: bool = True) -> LinearProbe:
    """Fit an L2-regularised multinomial logistic regression by full-batch L-BFGS.

    Args:
        X: features ``[N, d]``; y: integer labels ``[N]`` in ``[0, n_classes)``.
        weight_decay: the L2 coefficient ``lambda`` in the loss of the module docstring.
        standardize: z-score each feature with the training mean and std first.

    Deterministic (float64, no random initialisation: W = 0 at start).
    """
    X = check_finite(X, "X (features)")
    y = _labels(y, "y")
    if not X.dtype.is_floating_point:
        X = X.double()
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise TutorialError(f"X must be [N, d] and y [N], got {tuple(X.shape)} and "
                            f"{tuple(y.shape)}")
    if X.shape[0] < 2:
        raise TutorialError("need at least 2 training examples")
    weight_decay = check_number(weight_decay, "weight_decay", 0.0)
    max_iter = check_int(max_iter, "max_iter", 1)
    check_choice(standardize, (True, False), "standardize")
    C = int(y.max()) + 1 if n_classes is None else check_int(n_classes, "n_classes", 2)
    if int(y.min()) < 0 or int(y.max()) >= C:
        raise TutorialError(f"labels must lie in [0, {C}), got [{int(y.min())}, {int(y.max())}]")
    if C < 2:
        raise TutorialError("need at least 2 classes")
    Xd = X.detach().double()
    mean = Xd.mean(0) if standardize else torch.zeros(X.shape[1], dtype=torch.float64)
    scale = Xd.std(0).clamp_min(1e-6) if standardize else torch.ones(X.shape[1],
                                                                     dtype=torch.float64)
    Z = (Xd - mean) / scale
    W = torch.zeros(C, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = probe_loss(Z, y, W, b, weight_decay)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(W.detach(), b.detach(), mean, scale, weight_decay)


def probe_loss(Z: Float[Tensor, "n d"], y: Int[Tensor, "n"], W: Float[Tensor, "classes d"],
               b: Float[Tensor, "classes"], weight_decay: float) -> Float[Tensor, ""]:
    """``mean CE(Z W^T + b, y) + weight_decay / 2 * ||W||^2`` (``Z`` already standardised)."""
    return torch.nn.functional.cross_entropy(Z @ W.T + b, y) + 0.5 * weight_decay * (W * W).sum()


def control_labels(word_types: Sequence[Any], labels: Int[Tensor, "n"] | Sequence[int],
                   seed: int = 0) -> Int[Tensor, "n"]:
    """Hewitt & Liang (2019) control labels for given word types: each distinct type ``v``
    gets one label ``C(v)`` drawn (independently, with :class:`random.Random` ``(seed)``, types
    in sorted order) from the empirical distribution of ``labels`` over the examples, and
    example ``n`` gets ``C(word_types[n])``. Returns ``[N]`` control labels.

    ``word_types[n]`` must be the word the probed representation of example ``n`` sits on;
    :func:`control_task` takes it from the tokens and the probed positions."""
    labels = _labels(labels, "labels")
    seed = check_int(seed, "seed")
    if isinstance(word_types, (str, bytes)) or not hasattr(word_types, "__len__"):
        raise TutorialError(f"word_types must be a sequence (one word type per example), got "
                            f"{type(word_types).__name__}")
    if labels.ndim != 1 or len(word_types) != labels.shape[0]:
        raise TutorialError(f"{len(word_types)} word types for {labels.shape[0]} labels")
    if labels.numel() == 0:
        raise TutorialError("no examples")
    rng = random.Random(seed)
    pool = labels.tolist()  # sampling from it = the empirical label distribution
    assigned = {w: rng.choice(pool) for w in sorted(set(word_types), key=str)}
    return torch.tensor([assigned[w] for w in word_types], dtype=torch.long)


def probed_word_types(tokens: Int[Tensor, "n pos"], pos: int | Sequence[int] | Int[Tensor, "n"]
                      ) -> list[int]:
    """The token id at the probed position of each example: ``tokens[n, pos[n]]`` (``[N]``
    as a list), the word type a representation read at ``pos`` belongs to."""
    tokens = check_int_ids(tokens, "tokens")
    if tokens.ndim != 2:
        raise TutorialError(f"tokens must be [batch, seq], got shape {tuple(tokens.shape)}")
    p = _check_pos(pos, tokens.shape[0], tokens.shape[1])
    return [int(t) for t in gather_pos(tokens, p)]


def control_task(tokens: Int[Tensor, "n pos"], pos: int | Sequence[int] | Int[Tensor, "n"],
                 labels: Int[Tensor, "n"] | Sequence[int], seed: int = 0) -> Int[Tensor, "n"]:
    """Hewitt & Liang (2019) control task for a probe that reads position ``pos`` of
    ``tokens`` ``[N, T]``: ``C(tokens[n, pos[n]])`` for every example, with one random label per
    token type drawn from the empirical distribution of ``labels`` ``[N]`` (see
    :func:`control_labels`). Returns ``[N]``.

    The control label is a function of the token *at the probed position* alone, the token
    whose identity the representation there certainly encodes; labelling by another word (e.g.
    the subject, when the probe reads the last position) makes the control task harder than
    Hewitt & Liang's for a reason unrelated to memorisation, and inflates selectivity."""
    return control_labels(probed_word_types(tokens, pos), labels, seed=seed)


def split_by_group(groups: Sequence[Any], test_groups: Sequence[Any] | None = None,
                   test_frac: float = 0.3, seed: int = 0
                   ) -> tuple[Int[Tensor, "n_train"], Int[Tensor, "n_test"]]:
    """Train/test indices such that no group (e.g. noun lemma) is in both. ``test_groups``
    names the test groups; otherwise a ``test_frac`` share of the groups is drawn at random."""
    test_frac = check_probability(test_frac, "test_frac", open_interval=True)
    seed = check_int(seed, "seed")
    uniq = sorted(set(groups), key=str)
    if test_groups is None:
        rng = random.Random(seed)
        k = max(1, round(test_frac * len(uniq)))
        test_groups = rng.sample(uniq, k)
    test_set = set(test_groups)
    unknown = test_set - set(uniq)
    if unknown:
        raise TutorialError(f"test groups {sorted(map(str, unknown))} do not occur")
    test = [i for i, g in enumerate(groups) if g in test_set]
    train = [i for i, g in enumerate(groups) if g not in test_set]
    if not train or not test:
        raise TutorialError("the split leaves the train or the test set empty")
    return torch.tensor(train), torch.tensor(test)


def random_split(n: int, test_frac: float = 0.3, seed: int = 0
                 ) -> tuple[Int[Tensor, "n_train"], Int[Tensor, "n_test"]]:
    """A random train/test split of ``range(n)`` (word types may occur on both sides)."""
    n = check_int(n, "n", 2)
    test_frac = check_probability(test_frac, "test_frac", open_interval=True)
    seed = check_int(seed, "seed")
    if round(test_frac * n) >= n:
        raise TutorialError(f"test_frac={test_frac} of n={n} leaves no training example")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, round(test_frac * n))
    return perm[k:].sort().values, perm[:k].sort().values


def selectivity(task_accuracy: float | Float[Tensor, "..."],
                control_accuracy: float | Float[Tensor, "..."]) -> float | Float[Tensor, "..."]:
    """Hewitt & Liang's selectivity: task accuracy minus control-task accuracy."""
    return task_accuracy - control_accuracy


@dataclass
class LayerProbes:
    """One probe per layer. Accuracies are ``[L]`` tensors; ``control_*`` are NaN when no
    control labels were given. ``selectivity = test_accuracy - control_test_accuracy``."""

    train_accuracy: Float[Tensor, "layers"]
    test_accuracy: Float[Tensor, "layers"]
    control_train_accuracy: Float[Tensor, "layers"]
    control_test_accuracy: Float[Tensor, "layers"]
    probes: list[LinearProbe] = field(repr=False)

    @property
    def selectivity(self) -> Float[Tensor, "layers"]:
        return self.test_accuracy - self.control_test_accuracy

    @property
    def best_layer(self) -> int:
        return int(self.test_accuracy.argmax())


def probe_layers(acts: Float[Tensor, "layers n d"], labels: Int[Tensor, "n"],
                 train_idx: Int[Tensor, "n_train"], test_idx: Int[Tensor, "n_test"],
                 control: Int[Tensor, "n"] | None = None, progress: bool = False,
                 **train_kwargs: Any) -> LayerProbes:
    """Train a probe on ``acts[l, train_idx]`` for every layer ``l`` (``acts`` ``[L, N, d]``)
    and test it on ``test_idx``; with ``control`` labels ``[N]``, also a control probe on the
    same split. Keyword arguments go to :func:`train_probe`."""
    acts = check_finite(acts, "acts")
    labels = _labels(labels, "labels")
    control = None if control is None else _labels(control, "control")
    N = labels.shape[0] if labels.ndim == 1 else -1
    train_idx = check_int_ids(train_idx, "train_idx", N)
    test_idx = check_int_ids(test_idx, "test_idx", N)
    if acts.ndim != 3 or acts.shape[1] != labels.shape[0]:
        raise TutorialError(f"acts must be [layers, N, d] with N = {labels.shape[0]}, got "
                         f"{tuple(acts.shape)}")
    if control is not None and control.shape != labels.shape:
        raise TutorialError("control labels must have the same shape as the labels")
    overlap = set(train_idx.tolist()) & set(test_idx.tolist())
    if overlap:
        raise TutorialError(f"train and test share {len(overlap)} examples")
    L = acts.shape[0]
    res = {k: torch.full((L,), float("nan")) for k in ("tr", "te", "ctr", "cte")}
    probes = []
    layers = range(L)
    if progress:
        from tqdm.auto import tqdm

        layers = tqdm(layers, desc="probing layers")
    for l in layers:
        X = acts[l]
        probe = train_probe(X[train_idx], labels[train_idx], **train_kwargs)
        probes.append(probe)
        res["tr"][l] = probe.accuracy(X[train_idx], labels[train_idx])
        res["te"][l] = probe.accuracy(X[test_idx], labels[test_idx])
        if control is not None:
            cp = train_probe(X[train_idx], control[train_idx], **train_kwargs)
            res["ctr"][l] = cp.accuracy(X[train_idx], control[train_idx])
            res["cte"][l] = cp.accuracy(X[test_idx], control[test_idx])
    return LayerProbes(res["tr"], res["te"], res["ctr"], res["cte"], probes)


# --------------------------------------------------------------------------------------------
# Causal check: ablate a direction
# --------------------------------------------------------------------------------------------

def _direction(direction: Any, d: int, what: str = "direction") -> Tensor:
    """A finite, non-zero vector of size ``d``."""
    u = check_finite(direction, what)
    if not u.dtype.is_floating_point:
        u = u.double()
    if u.ndim != 1 or u.shape[0] != d:
        raise TutorialError(f"{what} must be a vector of size {d}, got {tuple(u.shape)}")
    if float(u.norm()) == 0:
        raise TutorialError(f"{what} is the zero vector")
    return u


def _value(value: Any, what: str = "value") -> float | Tensor:
    if isinstance(value, Tensor) and value.ndim:
        return check_finite(value, what)
    return check_number(value, what)


def _project_out(x: Tensor, direction: Tensor, value: float | Tensor) -> Tensor:
    u = direction.to(x) / direction.norm()
    coef = x @ u
    return x - (coef - torch.as_tensor(value, dtype=x.dtype, device=x.device))[..., None] * u


def project_out(x: Float[Tensor, "... d"], direction: Float[Tensor, "d"],
                value: float | Float[Tensor, "..."] = 0.0) -> Float[Tensor, "... d"]:
    """Set the component of ``x`` (``[..., d]``) along the unit vector ``u = direction/|direction|``
    to ``value``: ``x - ((x . u) - value) u``. ``value`` may be a scalar or broadcast against
    ``x[..., 0]`` (e.g. the mean projection over a dataset: mean-ablation along ``u``)."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        raise TutorialError(f"x must be a float tensor [..., d], got {type(x).__name__}")
    u = _direction(direction, x.shape[-1])
    return _project_out(x, u, _value(value))


def ablate_direction(model: Model, tokens: Int[Tensor, "batch pos"], hook_name: str,
                     direction: Float[Tensor, "d_model"],
                     pos: int | Sequence[int] | Int[Tensor, "batch"] | None = None,
                     value: float | Float[Tensor, "batch"] = 0.0, batch_size: int = 256,
                     attention_mask: Int[Tensor, "batch pos"] | None = None
                     ) -> Float[Tensor, "batch pos vocab"]:
    """Logits ``[B, T, V]`` of ``model`` on ``tokens`` with the activation at ``hook_name``
    replaced by :func:`project_out` of it along ``direction`` at ``pos`` (None: every
    position; an int or one position per example). ``value``: a number, or one per example
    ``[B]``. With padding (``attention_mask``, or found as :mod:`tutorial_utils.model_checks`
    says) the forward pass gets the mask where it changes the real positions and a ``pos`` on
    padding is refused; the logits at padded positions are those of the padded run, as the
    model's own forward gives them."""
    check_model(model, "ablate_direction")
    tokens = check_tokens(model, tokens)
    check_hook_names(model, [hook_name])
    direction = _direction(direction, model.cfg.d_model,
                           f"direction (of size d_model={model.cfg.d_model})")
    value = _value(value)
    B, T = tokens.shape
    if isinstance(value, Tensor) and value.shape not in ((B,), (1,)):
        raise TutorialError(f"value must be a number or one value per example ({B}), got shape "
                            f"{tuple(value.shape)}")
    p = _check_pos(pos, B, T)
    mask = padding_mask(model, tokens, attention_mask)
    if p is not None:
        check_real_positions(mask, p)
    fwd_mask = forward_attention_mask(model, mask)
    batch_size = check_batch_size(batch_size)
    dev = next(model.parameters()).device
    outs = []
    for s in range(0, B, batch_size):
        toks = tokens[s:s + batch_size].to(dev)
        rows = torch.arange(toks.shape[0], device=dev)
        pb = None if p is None else p[s:s + batch_size].to(dev)
        val = value[s:s + batch_size] if isinstance(value, Tensor) and value.shape == (B,) \
            else value

        def hook(act: Tensor, hook: Any, pb=pb, val=val, rows=rows) -> Tensor:
            if pb is None:
                v = val if not (isinstance(val, Tensor) and val.ndim) else val[:, None]
                return _project_out(act, direction, v)
            act = act.clone()
            act[rows, pb] = _project_out(act[rows, pb], direction, val)
            return act

        outs.append(stacked_forward(model, toks, 1, [(hook_name, hook)],
                                    attention_mask=None if fwd_mask is None
                                    else fwd_mask[s:s + batch_size]))
    return torch.cat(outs)


def random_unit_vectors(d: int, n: int, seed: int = 0) -> Float[Tensor, "n d"]:
    """``n`` random unit vectors in ``R^d`` (``[n, d]``), the control for a direction ablation."""
    d, n, seed = check_int(d, "d", 1), check_int(n, "n", 1), check_int(seed, "seed")
    v = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-1, keepdim=True)
