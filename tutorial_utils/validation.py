"""Pure argument checks shared by every module (the error type is :mod:`tutorial_utils.errors`).

These know no model and no dataset: numbers, choices, positions, finite tensors, boolean or
0/1 masks, integer ids. The checks of a loaded model (tokens, hooks, layers, heads, padding,
caches) live in :mod:`tutorial_utils.model_checks`.

Every check runs *before* any forward pass, so a mistake fails at once with a
:class:`TutorialError` that names the bad argument, what was expected, and the fix (the model
of einops' messages, which name the offending pattern and shapes). Each returns the value in
the form the caller needs (an ``int``, a ``float``, a ``LongTensor``, a boolean mask).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

import torch
from jaxtyping import Bool, Int, Shaped
from torch import Tensor

from .errors import TutorialError

__all__ = ["as_tensor", "check_batch_size", "check_choice", "check_finite",
           "check_int", "check_int_ids", "check_mask", "check_number", "check_positions",
           "check_probability", "check_same_shape"]


def _is_int(value: Any) -> bool:
    """A Python/NumPy integer or a 0-d integer tensor; never a bool or a float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    if isinstance(value, Tensor) and value.ndim == 0:
        return not (value.dtype.is_floating_point or value.dtype.is_complex
                    or value.dtype == torch.bool)
    return False


def check_int(value: Any, what: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``; a float (even ``2.0``), a bool or a
    string is refused (``n_steps=2.5`` would otherwise be truncated or fail deep inside)."""
    if not _is_int(value):
        raise TutorialError(f"{what} must be an integer, got {value!r} "
                            f"({type(value).__name__})")
    v = int(value)
    if minimum is not None and v < minimum:
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise TutorialError(f"{what} must be an integer {bound}, got {v}")
    if maximum is not None and v > maximum:
        bound = f"in [{minimum}, {maximum}]" if minimum is not None else f"<= {maximum}"
        raise TutorialError(f"{what} must be an integer {bound}, got {v}")
    return v


def check_batch_size(batch_size: Any, what: str = "batch_size") -> int:
    """``batch_size`` must be an integer >= 1."""
    if not _is_int(batch_size) or int(batch_size) < 1:
        raise TutorialError(f"{what} must be an integer >= 1 (examples per forward pass), got "
                            f"{batch_size!r}")
    return int(batch_size)


def check_number(value: Any, what: str, minimum: float | None = None,
                 maximum: float | None = None, finite: bool = True) -> float:
    """``value`` as a ``float`` (an int, a float, a NumPy number or a 0-d tensor), NaN refused,
    infinities refused unless ``finite=False``, and within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not (isinstance(value, numbers.Real)
                                       or (isinstance(value, Tensor) and value.numel() == 1)):
        raise TutorialError(f"{what} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if math.isnan(v):
        raise TutorialError(f"{what} is NaN: pass a number")
    if finite and math.isinf(v):
        raise TutorialError(f"{what} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise TutorialError(f"{what} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise TutorialError(f"{what} must be <= {maximum}, got {v}")
    return v


def check_probability(value: Any, what: str, open_interval: bool = False) -> float:
    """A number in ``[0, 1]`` (``(0, 1)`` with ``open_interval``)."""
    v = check_number(value, what, 0.0, 1.0)
    if open_interval and v in (0.0, 1.0):
        raise TutorialError(f"{what} must lie strictly between 0 and 1, got {v}")
    return v


def check_choice(value: Any, choices: Iterable[Any], what: str) -> Any:
    """``value`` if it is one of ``choices``, else an error listing them (and the closest)."""
    options = list(choices)
    # same type and equal: True is not 1, and a tensor is never compared elementwise
    if any(value is o or (type(value) is type(o) and value == o) for o in options):
        return value
    import difflib

    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TutorialError(f"{what} must be one of {options}, got {value!r}{hint}")


def as_tensor(value: Any, what: str) -> Shaped[Tensor, "..."]:
    """A tensor from a tensor, a NumPy array, a list or a number; anything else refused."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (str, bytes, dict, set)) or value is None:
        raise TutorialError(f"{what} must be a tensor (or an array or list of numbers), got "
                            f"{type(value).__name__}")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TutorialError(f"{what} must be a tensor (or an array or list of numbers), got "
                            f"{type(value).__name__} ({exc})") from None


def check_finite(values: Any, what: str) -> Shaped[Tensor, "..."]:
    """``values`` as a tensor with no NaN and no inf; the message counts them and names the
    first index, so the place where they entered can be found."""
    t = as_tensor(values, what)
    if t.dtype == torch.bool or not (t.dtype.is_floating_point or t.dtype.is_complex):
        return t
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        n_nan = int(torch.isnan(t).sum())
        raise TutorialError(
            f"{what} contains {int(bad.sum())} non-finite value(s) ({n_nan} NaN, "
            f"{int(bad.sum()) - n_nan} inf) of {t.numel()}, the first at index {idx}: "
            f"{float(t[idx]) if t.ndim else float(t)}; find where they came from (a division by "
            "zero, a log of 0, padding) before passing them on")
    return t


def check_mask(mask: Any, shape: Sequence[int] | None, what: str) -> Bool[Tensor, "..."]:
    """A boolean mask from a bool tensor or 0/1 values (int, uint8 or float; a NumPy array or a
    list), of ``shape`` when given. Values other than 0 and 1 are refused (a score passed as a
    mask would otherwise be read as True wherever it is non-zero)."""
    m = as_tensor(mask, what)
    if shape is not None and tuple(m.shape) != tuple(shape):
        raise TutorialError(f"{what} has shape {tuple(m.shape)}; expected {tuple(shape)}")
    if m.dtype == torch.bool:
        return m
    if m.dtype.is_complex or not bool(((m == 0) | (m == 1)).all()):
        bad = m[~((m == 0) | (m == 1))] if not m.dtype.is_complex else m.flatten()
        raise TutorialError(f"{what} must hold only 0/1 or True/False, got values such as "
                            f"{bad.flatten()[:3].tolist()}")
    return m.bool()


def check_int_ids(values: Any, what: str, vocab: int | None = None,
                  allow_empty: bool = False) -> Int[Tensor, "..."]:
    """Integer ids (token ids, positions into a vocabulary) as a LongTensor of the same shape:
    an int, a list, a NumPy array or an integer tensor. Floats are refused even when whole
    (``3.7`` would be truncated to 3 and give another token's answer), as are bools, negative
    ids and, given ``vocab``, ids ``>= vocab``."""
    if isinstance(values, bool) or (isinstance(values, Tensor) and values.dtype == torch.bool):
        raise TutorialError(f"{what} must be integer ids, got a bool")
    t = as_tensor(values, what)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TutorialError(f"{what} must be integer ids, got {t.dtype} values such as "
                            f"{t.flatten()[:3].tolist()} (use model.to_single_token(' word') or "
                            ".long() only if they really are ids)")
    if t.numel() == 0:
        if allow_empty:
            return t.long()
        raise TutorialError(f"{what} is empty: pass at least one id")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0:
        raise TutorialError(f"{what} must be non-negative ids, got {lo}")
    if vocab is not None and hi >= vocab:
        raise TutorialError(f"{what} contains id {hi}, outside the vocabulary [0, {vocab}): "
                            "were the ids made by another tokenizer? Use model.to_tokens(text) "
                            "or model.to_single_token(' word')")
    return t.long()


def check_positions(pos: Any, B: int, T: int, what: str = "pos") -> Int[Tensor, "batch"]:
    """``pos`` (an int for every example, or one position per example) as a LongTensor ``[B]``
    of non-negative positions in ``[0, T)``; negative positions count from the end."""
    if isinstance(pos, bool) or (isinstance(pos, Tensor) and pos.dtype == torch.bool):
        raise TutorialError(f"{what} must be an int or one integer position per example, got a "
                            "bool")
    if _is_int(pos):
        p = int(pos)
        if not -T <= p < T:
            raise TutorialError(f"{what} {p} out of range for sequences of length {T}")
        return torch.full((B,), p % T, dtype=torch.long)
    t = as_tensor(pos, what)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TutorialError(f"{what} must hold integer positions, got dtype {t.dtype}")
    if t.ndim == 0:
        return check_positions(int(t), B, T, what)
    if tuple(t.shape) != (B,):
        raise TutorialError(f"{what} must be an int or have shape [batch] = [{B}], got "
                            f"{tuple(t.shape)}")
    t = t.long().cpu()
    bad = (t < -T) | (t >= T)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise TutorialError(f"{what}[{i}] = {int(t[i])} out of range for sequences of length {T}")
    return t % T


def check_same_shape(clean: Int[Tensor, "batch pos"], corrupted: Int[Tensor, "batch pos"]) -> None:
    """Clean and corrupted token batches must have the same shape (same length, same batch)."""
    if clean.shape != corrupted.shape:
        raise TutorialError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} "
            "differ in shape: patching needs prompt pairs of equal token length"
        )


