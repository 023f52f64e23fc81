"""The scalar every attribution method explains: a **target** ``f(output) -> [B]``, one value
per example, from the model's output ``[B, T, V]`` (or an activation ``[B, T, ...]``).

Builders: :func:`logit_target`, :func:`prob_target`, :func:`contrastive_target` (Yin & Neubig
2022: ``logit(A) - logit(B)``, "why A and not B"), :func:`metric_target` (a task's metric).
Their token ids and positions are checked when the target is built, before any forward pass.

:func:`evaluate_target` is how the methods call a target on ``n`` stacked variants of a batch:
block by block (a target never sees the stacking), with the padded positions of the output set
to NaN first, so that a target reading padding cannot pass unnoticed, and every value checked
finite (a NaN target would give NaN attributions everywhere).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..model_checks import check_real_positions
from ..validation import check_int_ids, check_positions

TargetFn = Callable[[Tensor], Tensor]

__all__ = ["TargetFn", "check_target_positions", "contrastive_target", "evaluate_target",
           "logit_target", "metric_target", "prob_target"]


def _check_positions_arg(pos: Any, what: str) -> None:
    """Positions given to a target builder: an int or integer positions (negative allowed)."""
    if isinstance(pos, bool):
        raise TutorialError(f"{what} must be an int or integer positions, got a bool")
    t = torch.as_tensor(pos) if not isinstance(pos, Tensor) else pos
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TutorialError(f"{what} must be an int or integer positions, got {pos!r}")


def _as_index(value: Any, B: int, device: torch.device, what: str,
              vocab: int | None = None) -> Tensor:
    t = torch.as_tensor(value, device=device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TutorialError(f"{what} must hold integers, got {t.dtype}")
    t = t.long()
    if vocab is not None and t.numel() and int(t.max()) >= vocab:
        raise TutorialError(f"{what} {t.flatten()[:5].tolist()} outside the vocabulary [0, "
                            f"{vocab}) of the model's output: were the ids made by another "
                            "tokenizer? Use model.to_single_token(' word')")
    if t.ndim == 0:
        return t.expand(B)
    if t.ndim != 1 or t.shape[0] != B:
        raise TutorialError(f"{what} must be an int or have one entry per example ({B}), got "
                            f"shape {tuple(t.shape)}")
    return t


def _at_position(output: Tensor, pos: Any) -> Tensor:
    """``output[b, pos[b]]`` for ``output`` ``[B, T, V]`` (or ``[B, V]``, returned as is)."""
    if output.ndim == 2:
        return output
    if output.ndim != 3:
        raise TutorialError(f"target output must be [batch, seq, vocab], got {tuple(output.shape)}")
    B, T = output.shape[:2]
    p = check_positions(pos, B, T, "target position").to(output.device)
    return output[torch.arange(B, device=output.device), p]


def _with_positions(target: TargetFn, pos: Any) -> TargetFn:
    """Record the positions a built target reads, for :func:`check_target_positions`."""
    target.positions = pos  # type: ignore[attr-defined]
    return target


def check_target_positions(target_fn: Any, B: int, T: int,
                           mask: Bool[Tensor, "batch pos"] | None = None) -> None:
    """Check a target before any forward pass: callable, and, for a target built here
    (:func:`logit_target`, :func:`prob_target`, :func:`contrastive_target`), its positions in
    range for ``[B, T]`` (:func:`~tutorial_utils.validation.check_positions`) and on real
    tokens (:func:`~tutorial_utils.model_checks.check_real_positions`). A target written by
    hand is checked when it is evaluated (:func:`evaluate_target`)."""
    if not callable(target_fn):
        raise TutorialError(f"target_fn must be a function output [batch, seq, vocab] -> "
                            f"[batch], got {type(target_fn).__name__} (use logit_target(id))")
    pos = getattr(target_fn, "positions", None)
    if pos is None:
        return
    p = check_positions(pos, B, T, "target position")
    if mask is not None:
        check_real_positions(mask, p.to(mask.device), "the target's position")


def logit_target(token_ids: int | Sequence[int] | Int[Tensor, "..."],
                 pos: int | Sequence[int] | Int[Tensor, "..."] = -1) -> TargetFn:
    """Target ``logits[b, pos[b], token_ids[b]]`` (an int applies to every example)."""
    check_int_ids(token_ids, "logit_target: token_ids")
    _check_positions_arg(pos, "logit_target: pos")

    def target(output: Tensor) -> Tensor:
        logits = _at_position(output, pos)
        ids = _as_index(token_ids, logits.shape[0], logits.device, "logit_target: token_ids",
                        logits.shape[-1])
        return logits.gather(-1, ids[:, None])[:, 0]

    return _with_positions(target, pos)


def prob_target(token_ids: int | Sequence[int] | Int[Tensor, "..."],
                pos: int | Sequence[int] | Int[Tensor, "..."] = -1) -> TargetFn:
    """Target ``softmax(logits[b, pos[b]])[token_ids[b]]``."""
    check_int_ids(token_ids, "prob_target: token_ids")
    _check_positions_arg(pos, "prob_target: pos")

    def target(output: Tensor) -> Tensor:
        probs = _at_position(output, pos).float().softmax(-1)
        ids = _as_index(token_ids, probs.shape[0], probs.device, "prob_target: token_ids",
                        probs.shape[-1])
        return probs.gather(-1, ids[:, None])[:, 0]

    return _with_positions(target, pos)


def contrastive_target(target_ids: int | Sequence[int] | Int[Tensor, "..."],
                       foil_ids: int | Sequence[int] | Int[Tensor, "..."],
                       pos: int | Sequence[int] | Int[Tensor, "..."] = -1) -> TargetFn:
    """Contrastive target "why A and not B": ``logit(A) - logit(B)`` at ``pos``
    (Yin & Neubig 2022). The softmax normaliser cancels, so only evidence that separates the
    two candidates gets credit."""
    t, f = logit_target(target_ids, pos), logit_target(foil_ids, pos)
    return _with_positions(lambda output: t(output) - f(output), pos)


def metric_target(dataset: Any) -> TargetFn:
    """The per-example task metric of a :class:`~tutorial_utils.tasks.TaskDataset` (logit or
    probability difference at each example's answer position) as a target; use it with
    ``dataset.clean_tokens``."""
    if not callable(getattr(dataset, "metric", None)):
        raise TutorialError(f"metric_target needs a TaskDataset (tasks.make_task(...)), got "
                            f"{type(dataset).__name__}")
    return lambda output: dataset.metric(output, per_example=True)


def _poison_padding(output: Tensor, mask: Bool[Tensor, "rows pos"]) -> Tensor:
    """``output`` with every padded position set to NaN (differentiable: no gradient flows
    from a NaN-filled position)."""
    pad = ~mask.to(output.device)
    pad = pad.reshape(*pad.shape, *([1] * (output.ndim - 2)))
    return output.masked_fill(pad, float("nan"))


def evaluate_target(target_fn: TargetFn, output: Float[Tensor, "rows pos vocab"], n: int, B: int,
                    mask: Bool[Tensor, "batch pos"] | None = None) -> Float[Tensor, "n batch"]:
    """Apply ``target_fn`` to each of the ``n`` blocks of ``B`` rows of ``output``; returns
    ``[n, B]``.

    With ``mask`` (``[B, T]``, True = real token) the padded positions of each block are NaN
    when the target reads them. A value that is not a finite number is refused, naming the
    example and whether the target read padding."""
    if not callable(target_fn):
        raise TutorialError(f"target_fn must be a function output [batch, seq, vocab] -> "
                            f"[batch], got {type(target_fn).__name__} (use logit_target(id))")
    values = []
    for k in range(n):
        block = output[k * B:(k + 1) * B]
        seen = block if mask is None or block.ndim < 2 or block.shape[1] != mask.shape[1] \
            else _poison_padding(block, mask)
        v = target_fn(seen)
        if not isinstance(v, Tensor) or v.shape != (B,):
            raise TutorialError(f"target_fn must return a tensor of shape [batch] = ({B},), got "
                                f"{getattr(v, 'shape', type(v).__name__)}")
        bad = ~torch.isfinite(v.detach())
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            if seen is not block:
                with torch.no_grad():
                    plain = target_fn(block)
                if bool(torch.isfinite(plain[b])):
                    raise TutorialError(
                        f"target_fn read a padded position of example {b} (its value is NaN "
                        "once padding is hidden): with right-padded rows, pos=-1 is padding; "
                        "read each example at a real position (pos=TaskDataset.answer_pos), "
                        "or pass attention_mask=torch.ones_like(tokens) if every token is real")
            raise TutorialError(
                f"target_fn returned {float(v.detach()[b])} for example {b}: a non-finite target gives "
                "non-finite attributions; check the target (a log of 0, a division by zero?)")
        values.append(v)
    return torch.stack(values)
