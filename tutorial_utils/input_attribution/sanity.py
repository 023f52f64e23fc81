"""Comparing attributions, and the model-randomisation sanity check (Adebayo et al. 2018,
"Sanity Checks for Saliency Maps").

* :func:`attribute`: one entry point over :data:`METHODS`.
* :func:`spearman`, :func:`method_agreement`: rank agreement between methods (or models).
* :func:`randomized_weights`: every learned weight but the input embeddings re-drawn at once
  (the same draw as the last step of a cascade with the same seed).
* :func:`cascading_randomization`: Adebayo et al.'s check proper. The layers are randomised from
  the top down, cumulatively: first the output (unembedding and final norm), then the last
  block, then the one below, ... down to block 0 (``mode="independent"`` randomises one group
  at a time instead). After each step the attribution is recomputed and compared with the
  trained model's by Spearman rank correlation (signed and of magnitudes). A method that
  explains the model should lose its agreement as soon as the layers it depends on are random;
  one whose maps survive randomisation describes the input, not the model.

Randomising a parameter ``p`` (named ``name`` in ``model.named_parameters()``) draws
``p' = mean(p) + std(p) * z`` with ``z ~ N(0, 1)`` from a ``torch.Generator`` seeded with
``(seed * 1_000_003 + crc32(name)) mod 2**63``: the same scale, no learned structure, and the
same draw for a parameter whichever steps randomise it. The token, position and token-type
embeddings (and BERT's embedding LayerNorm) are never randomised: they define the input being
attributed (a parameter shared with them, such as a tied unembedding, stays trained).
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..stats import spearman
from ..validation import check_choice, check_finite, check_int, check_mask
from .forward import attributed_positions, prepare
from .gradients import gradient_x_input, integrated_gradients, saliency
from .occlusion import occlusion
from .targets import TargetFn

if TYPE_CHECKING:
    from ..models import Model

METHODS = ("saliency", "grad_x_input", "integrated_gradients", "occlusion")
RANDOMISATION_MODES = ("cascading", "independent")
#: The bridge components that are the input being attributed: never randomised.
INPUT_COMPONENTS = ("embed", "pos_embed", "token_type_embed", "embed_ln")

__all__ = ["INPUT_COMPONENTS", "METHODS", "RANDOMISATION_MODES", "RandomisationCheck",
           "attribute", "cascading_randomization", "layer_groups", "method_agreement",
           "randomized_layers", "randomized_weights", "spearman"]


# --------------------------------------------------------------------------------------------
# One entry point, and comparisons
# --------------------------------------------------------------------------------------------

def attribute(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
              method: str, **kwargs: Any) -> Float[Tensor, "batch pos"]:
    """Per-token scores ``[B, T]`` from ``method`` in :data:`METHODS` (keyword arguments go
    to that method's function, ``attention_mask`` included)."""
    fns = {"saliency": saliency, "grad_x_input": gradient_x_input,
           "integrated_gradients": integrated_gradients, "occlusion": occlusion}
    check_choice(method, METHODS, "method")
    return fns[method](model, tokens, target_fn, **kwargs)




def method_agreement(scores: Mapping[str, Float[Tensor, "batch pos"]], mask: Bool[Tensor, "batch pos"] | None = None,
                     absolute: bool = False) -> tuple[list[str], Float[Tensor, "methods methods"]]:
    """Mean Spearman correlation (over examples) between every pair of methods.

    ``scores`` maps a method name to ``[B, T]`` scores of the same examples. With ``absolute``
    the magnitudes are compared (sensible when one method, like saliency, is unsigned).
    Returns ``(names, matrix [M, M])``.
    """
    if not isinstance(scores, Mapping):
        raise TutorialError(f"scores must map method names to [batch, seq] tensors, got "
                            f"{type(scores).__name__}")
    names = list(scores)
    if not names:
        raise TutorialError("no methods to compare")
    shapes = {tuple(getattr(v, "shape", ())) for v in scores.values()}
    if len(shapes) != 1:
        raise TutorialError(f"all score tensors must have the same shape, got {shapes}")
    check_choice(absolute, (True, False), "absolute")
    M = len(names)
    mat = torch.ones(M, M, dtype=torch.float64)
    for i in range(M):
        for j in range(i + 1, M):
            a, b = scores[names[i]], scores[names[j]]
            if absolute:
                a, b = a.abs(), b.abs()
            mat[i, j] = mat[j, i] = torch.nanmean(spearman(a, b, mask))
    return names, mat


# --------------------------------------------------------------------------------------------
# Randomising weights
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def randomized_weights(model: Model, seed: int = 0,
                       include: Callable[[str], bool] | None = None) -> Iterator[Model]:
    """Temporarily re-initialise the model's weights all at once (the model-randomisation
    check of Adebayo et al. 2018 in one step; :func:`cascading_randomization` is the layer by
    layer version), restored on exit.

    The parameters of every :func:`layer_groups` group are re-drawn exactly as
    :func:`randomized_layers` draws them (``mean(p) + std(p) * z``, ``z`` from the generator of
    ``(seed, name)``, see the module docstring), so ``randomized_weights(model, seed)`` is the
    same model as ``randomized_layers(model, <every group>, seed)``, the last step of a
    cascade with that seed. The input embeddings (and a parameter shared with them, such as a
    tied unembedding) stay trained, so the inputs being attributed stay the same.
    ``include`` (a function ``name -> bool`` over ``model.named_parameters()`` names)
    randomises only the group parameters it accepts.
    """
    seed = check_int(seed, "seed")
    if include is not None and not callable(include):
        raise TutorialError(f"include must be a function name -> bool, got "
                            f"{type(include).__name__}")
    names = [n for _, group in layer_groups(model) for n in group
             if include is None or include(n)]
    if not names:
        raise TutorialError("include() selected no parameter to randomise")
    with _randomized_parameters(model, names, seed):
        yield model


def layer_groups(model: Model) -> list[tuple[str, list[str]]]:
    """The parameters of ``model`` in the order Adebayo et al. randomise them, top down:
    ``("output", [...])`` (unembedding, final norm, a masked-LM head: every parameter outside
    the blocks and the input embeddings), then ``("block L-1", [...])`` ... ``("block 0", ...)``.
    Names are those of ``model.named_parameters()``; the input embeddings
    (:data:`INPUT_COMPONENTS`) and any parameter shared with them appear in no group."""
    names = {id(p): n for n, p in model.named_parameters()}
    inputs: set[int] = set()
    for comp in INPUT_COMPONENTS:
        mod = getattr(model, comp, None)
        if isinstance(mod, torch.nn.Module):
            inputs |= {id(p) for p in mod.parameters()}
    blocks = list(getattr(model, "blocks", []))
    if not blocks:
        raise TutorialError("layer_groups needs a model with blocks (a TransformerBridge)")
    in_blocks: list[list[str]] = []
    seen = set(inputs)
    for blk in blocks:
        ids = [id(p) for p in blk.parameters() if id(p) not in seen]
        seen |= set(ids)
        in_blocks.append([names[i] for i in ids if i in names])
    output = [n for i, n in names.items() if i not in seen]
    groups = [("output", output)] if output else []
    groups += [(f"block {l}", in_blocks[l]) for l in reversed(range(len(blocks)))]
    return groups


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)


def _random_like(p: Tensor, name: str, seed: int) -> Tensor:
    """``mean(p) + std(p) * z``, ``z`` from the generator of ``(seed, name)``."""
    std = float(p.float().std()) if p.numel() > 1 else 0.0
    z = torch.randn(p.shape, generator=_generator(seed, name), dtype=torch.float32)
    return (p.float().mean() + std * z).to(p.device, p.dtype)


@contextlib.contextmanager
def randomized_layers(model: Model, groups: Sequence[str], seed: int = 0) -> Iterator[Model]:
    """Temporarily randomise the parameters of the named :func:`layer_groups` (``"output"``,
    ``"block 3"``, ...) as the module docstring says; restored exactly on exit (also after an
    error)."""
    seed = check_int(seed, "seed")
    available = dict(layer_groups(model))
    if isinstance(groups, str):
        groups = [groups]
    for g in groups:
        check_choice(g, list(available), "group")
    with _randomized_parameters(model, [n for g in groups for n in available[g]], seed):
        yield model


@contextlib.contextmanager
def _randomized_parameters(model: Model, names: Sequence[str], seed: int) -> Iterator[Model]:
    """Re-draw the named parameters with :func:`_random_like`; restore them on exit (also
    after an error)."""
    params = dict(model.named_parameters())
    saved: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            for name in names:
                p = params[name]
                saved[name] = p.detach().clone()
                p.copy_(_random_like(saved[name], name, seed))
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


@dataclass
class RandomisationCheck:
    """The result of :func:`cascading_randomization`.

    Attributes:
        labels: ``"trained"``, then one label per step (``"output"``, ``"block 3"``, ...).
        randomized: for each step, the groups that are random at that step (cumulative in
            ``"cascading"`` mode, one group in ``"independent"`` mode).
        attributions: ``[steps, B, T]`` the method's scores at each step (step 0: trained).
        spearman: ``[steps, B]`` Spearman correlation with the trained model's scores over
            ``mask`` (step 0 is 1); ``spearman_abs`` the same for the magnitudes.
        mask: ``[B, T]`` the positions compared.
        mode: ``"cascading"`` or ``"independent"``.
    """

    labels: list[str]
    randomized: list[list[str]]
    attributions: Float[Tensor, "steps batch pos"]
    spearman: Float[Tensor, "steps batch"]
    spearman_abs: Float[Tensor, "steps batch"]
    mask: Bool[Tensor, "batch pos"]
    mode: str

    def mean(self, absolute: bool = False) -> Float[Tensor, "steps"]:
        """``[steps]`` the correlation with the trained model's scores, averaged over the
        examples (NaN rows, e.g. constant scores, left out)."""
        s = self.spearman_abs if absolute else self.spearman
        return torch.nanmean(s, dim=1)


def cascading_randomization(model: Model, tokens: Int[Tensor, "batch pos"],
                            target_fn: TargetFn | None,
                            method: str | Callable[[Model], Float[Tensor, "batch pos"]] = "integrated_gradients",
                            mode: str = "cascading", seed: int = 0,
                            mask: Bool[Tensor, "batch pos"] | None = None,
                            attention_mask: Int[Tensor, "batch pos"] | None = None,
                            progress: bool = False, **method_kwargs: Any) -> RandomisationCheck:
    """The model-randomisation sanity check of Adebayo et al. (2018), layer by layer.

    Step 0 is the trained model; step ``k`` randomises the first ``k`` of :func:`layer_groups`
    (output, then the blocks from the top: ``mode="cascading"``) or only the ``k``-th
    (``mode="independent"``), recomputes the attribution and compares it with step 0:
    ``spearman[k, b] = rho(scores_k[b], scores_0[b])`` over ``mask``. The weights are restored
    after every step.

    Args:
        method: a name in :data:`METHODS` (``target_fn``, ``attention_mask`` and
            ``method_kwargs`` go to :func:`attribute`), or a function ``model -> [B, T]`` scores
            (e.g. ``lambda m: contrastive_erasure(m, tokens, a, b, pos)``; ``target_fn`` unused).
        mask: ``[B, T]`` positions to compare; default every real token but a row's opening
            BOS/[CLS].
        seed: the randomisation seed (see the module docstring).
    """
    batch = prepare(model, tokens, attention_mask, None, "cascading_randomization",
                    None if callable(method) else target_fn)
    check_choice(mode, RANDOMISATION_MODES, "mode")
    if callable(method):
        run = lambda m: method(m)  # noqa: E731
    else:
        check_choice(method, METHODS, "method")
        kw = dict(method_kwargs)
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask
        run = lambda m: attribute(m, tokens, target_fn, method, **kw)  # noqa: E731
    B, T = batch.tokens.shape
    if mask is None:
        mask = attributed_positions(model, batch)
    else:
        mask = check_mask(mask, (B, T), "mask").to(batch.tokens.device)
    groups = [g for g, params in layer_groups(model) if params]
    steps = [[g] for g in groups] if mode == "independent" else \
        [groups[:k + 1] for k in range(len(groups))]
    it = steps
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(steps, desc="randomising layers")
    trained = _scores(run(model), B, T)
    scores = [trained]
    for random_groups in it:
        with randomized_layers(model, random_groups, seed):
            scores.append(_scores(run(model), B, T))
    stacked = torch.stack(scores)
    rho = torch.stack([spearman(s, trained, mask) for s in scores])
    rho_abs = torch.stack([spearman(s.abs(), trained.abs(), mask) for s in scores])
    return RandomisationCheck(labels=["trained"] + [s[-1] for s in steps],
                              randomized=[[]] + steps, attributions=stacked, spearman=rho,
                              spearman_abs=rho_abs, mask=mask.cpu(), mode=mode)


def _scores(s: Any, B: int, T: int) -> Tensor:
    if not isinstance(s, Tensor) or tuple(s.shape) != (B, T):
        raise TutorialError(f"the attribution method must return [batch, seq] = ({B}, {T}) "
                            f"scores, got {getattr(s, 'shape', type(s).__name__)}")
    return check_finite(s.detach(), "attribution scores").cpu()
