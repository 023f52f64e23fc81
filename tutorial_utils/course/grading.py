"""Generic core of the exercise checks.

Each exercise in a notebook is followed by a check cell such as::

    my_function = nb03.check_my_function(my_function)

where ``check_my_function`` lives in a per-notebook module (for instance
``tutorial_utils.course.checks.nb03``): a judging function decorated by
:func:`tutorial_utils.course.answers.exercise`, which prints the verdict and returns what later
cells use. The judging functions are built from the helpers here:

* :func:`compare_to_reference` runs the student's function and the reference
  implementation on the same freshly generated inputs, for a few seeds, and
  compares the outputs within a tolerance;
* :func:`check_value` compares one computed value (number, tensor, ...) with the
  expected one;
* :func:`report` prints the one-line verdict and returns the :class:`CheckResult`
  (``report(check_value(...))`` in a notebook cell compares a number with the library's).

The check functions never raise: a missing implementation, a crash or a wrong
answer all become a failed :class:`CheckResult` with a message a student can act
on. Only :func:`report` may raise, and only when asked to, so that running the
*solution* notebooks under nbval with ``TUTORIAL_CHECKS_STRICT=1`` turns a broken
reference or check into a failing test. (Which answer later cells then use is
:mod:`tutorial_utils.course.answers`' business.)

Answers: any reasonable type is judged, none is crashed on
-------------------------------------------------------------
Where a tensor is expected, a tensor of any dtype, a numpy array or scalar, a
Python number or a (nested) list or tuple of numbers is accepted
(:func:`as_tensor`, :func:`as_number`, :func:`as_mask`); a boolean mask may also be
an integer (uint8, int64) 0/1 mask. What cannot be an answer is refused with an
:class:`InvalidAnswer` whose message says what to return instead: ``None`` (a
forgotten ``return``), a string, a result object, and **NaN** (every comparison with
NaN is false, so a check written as ``if abs(x - 1) > tol: fail`` would pass it:
NaN never passes anywhere here). A bool is not a number: ``True`` does not equal
``1.0``, and a float is not a mask's ``True``. :func:`guard_answer_function` wraps a
student's function so that every value it returns goes through the ``None``/NaN
refusal before any check looks at it.

Outputs that can be compared: ``torch.Tensor``, Python numbers and bools, numpy
arrays and scalars, ``None``, strings, and (nested) tuples, lists, dicts and
dataclasses of these. numpy is never imported here; a value is recognised as a
numpy value only when numpy has already been imported by someone else.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CheckResult",
    "InvalidAnswer",
    "STRICT_ENV_VAR",
    "as_mask",
    "as_number",
    "as_tensor",
    "compare_to_reference",
    "check_value",
    "close",
    "describe",
    "guard_answer_function",
    "is_stub_error",
    "not_done",
    "raised",
    "report",
]

STRICT_ENV_VAR = "TUTORIAL_CHECKS_STRICT"

_NOT_IMPLEMENTED_MESSAGE = "not implemented yet: fill in the exercise cell, run it, then re-run this check"


@dataclass
class CheckResult:
    """Outcome of one exercise check.

    Attributes:
        name: what was checked, e.g. ``"logit_diff"``.
        passed: whether the check passed.
        message: on success a short note on what was compared; on failure what went
            wrong, specific enough to act on.
        not_done: the answer is the student version's stub (a function that raises
            ``NotImplementedError``, or ``...`` left in place of a value): nothing was judged.
    """

    name: str
    passed: bool
    message: str
    not_done: bool = False
    _reported: bool = field(default=False, init=False, repr=False, compare=False)

    def __str__(self) -> str:
        if self.passed:
            return f"✅ {self.name}: passed ({self.message})" if self.message else f"✅ {self.name}: passed"
        return f"❌ {self.name}: {self.message}"

    def _ipython_display_(self) -> None:
        """Show the one-line verdict in Jupyter, unless :func:`report` already printed it.

        This keeps ``report(check(...))`` as the last line of a cell from printing the
        verdict twice (once by ``report``, once as the cell's value).
        """
        if not self._reported:
            print(str(self))
            self._reported = True


class InvalidAnswer(Exception):
    """An answer a check cannot judge (``None``, a string, an object, NaN, a wrong kind of
    number). The message is for the student: what was returned and what to return instead.
    Checks let it propagate; :func:`raised` and :mod:`~tutorial_utils.course.answers` turn it
    into a failed :class:`CheckResult`."""


def _is_numpy(value: Any) -> bool:
    """Whether ``value`` is a numpy array or scalar, without importing numpy."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, (np.ndarray, np.generic))


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, complex))


def describe(value: Any) -> str:
    """A short description of ``value`` for a message: ``None``, ``a str 'abc'``, ``a tensor of
    shape (2, 3)``, ``a CircuitResult``."""
    if value is None:
        return "None"
    if value is Ellipsis:
        return "... (the exercise's placeholder)"
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, str):
        text = value if len(value) <= 30 else value[:27] + "..."
        return f"a str {text!r}"
    if _is_numpy(value):
        return f"a numpy {value.dtype} value of shape {tuple(getattr(value, 'shape', ()))}"
    if _is_number(value):
        return f"a {type(value).__name__} {value!r}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def _tensor_or_none(value: Any) -> torch.Tensor | None:
    """``value`` as a tensor when it is tensor-like (a tensor, a numpy value, a Python number, a
    nested list/tuple of numbers or of equal-shape tensors), else ``None``. Never raises."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if _is_number(value) or _is_numpy(value):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, (list, tuple)):
        if not value:
            return torch.zeros(0)
        items = [_tensor_or_none(v) for v in value]
        if any(t is None for t in items) or len({tuple(t.shape) for t in items}) != 1:
            return None
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in items])
        try:
            return torch.stack([t.cpu().to(dtype) for t in items])
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _has_nan(t: torch.Tensor) -> bool:
    return (t.is_floating_point() or t.is_complex()) and bool(torch.isnan(t).any())


def refuse_none_or_nan(value: Any, what: str = "your answer") -> None:
    """Raise :class:`InvalidAnswer` when ``value`` is ``None`` or contains NaN anywhere (in a
    tensor, a number, a numpy value, or a list, tuple, dict or dataclass of these)."""
    if value is None:
        raise InvalidAnswer(f"{what} is None: did you forget the `return`?")
    _refuse_nan(value, what, depth=0)


def _refuse_nan(value: Any, what: str, depth: int) -> None:
    if depth > 6:
        return
    if isinstance(value, torch.Tensor) or _is_number(value) or _is_numpy(value):
        t = _tensor_or_none(value)
        if t is not None and _has_nan(t):
            n = int(torch.isnan(t).sum())
            where = "" if t.numel() == 1 else f" ({n} of {t.numel()} entries)"
            raise InvalidAnswer(f"{what} is NaN{where}: look for a division by zero (0 / 0) or "
                                f"the mean of an empty selection")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_nan(item, f"{what}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_nan(item, f"{what}[{i}]", depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _refuse_nan(getattr(value, f.name), f"{what}.{f.name}", depth + 1)


def as_tensor(value: Any, what: str = "your answer", dtype: torch.dtype | None = None
              ) -> torch.Tensor:
    """The answer ``value`` as a (detached, CPU) tensor, whatever reasonable type it came in: a
    tensor, a numpy array or scalar, a Python number, a nested list or tuple of numbers or of
    equal-shape tensors. ``dtype`` converts it (e.g. ``torch.float32`` to compare in float).

    Raises:
        InvalidAnswer: ``None``, a string, an object that is not a number, or NaN.
    """
    refuse_none_or_nan(value, what)
    t = _tensor_or_none(value)
    if t is None:
        raise InvalidAnswer(f"{what} is {describe(value)}: return a tensor (a numpy array or a "
                            f"list of numbers is fine too)")
    t = t.cpu()
    return t if dtype is None else t.to(dtype)


def as_number(value: Any, what: str = "your answer") -> float:
    """The answer ``value`` as one finite-or-infinite Python float: a Python or numpy number,
    or a tensor / array / list with exactly one element.

    Raises:
        InvalidAnswer: ``None``, a string, an object, NaN, a bool (a bool is not a number), or
            more than one element.
    """
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise InvalidAnswer(f"{what} is {describe(value)}, a truth value: return a number")
    t = as_tensor(value, what)
    if t.numel() != 1:
        raise InvalidAnswer(f"{what} has shape {tuple(t.shape)}: return one number")
    if t.dtype == torch.bool:
        raise InvalidAnswer(f"{what} is a truth value: return a number")
    return float(t.reshape(()).real if t.is_complex() else t.reshape(()))


def as_mask(value: Any, what: str = "your mask", shape: tuple[int, ...] | None = None
            ) -> torch.Tensor:
    """The answer ``value`` as a boolean tensor: a bool tensor, or an integer (uint8, int64...)
    or float tensor / array / list whose entries are all 0 or 1. ``shape`` is checked too.

    Raises:
        InvalidAnswer: not tensor-like, entries other than 0/1, or the wrong shape.
    """
    t = as_tensor(value, what)
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise InvalidAnswer(f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if t.dtype == torch.bool:
        return t
    if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
        raise InvalidAnswer(f"{what} holds values other than True/False (or 0/1): return a "
                            f"boolean mask")
    return t != 0


def guard_answer_function(fn: Callable[..., Any], what: str = "your function") -> Callable[..., Any]:
    """``fn`` wrapped so that each value it returns is refused (:class:`InvalidAnswer`) when it
    is ``None`` or contains NaN, before any check compares it: checks written as
    ``abs(got - want) > tol`` would otherwise pass NaN. Exceptions of ``fn`` pass through."""
    if getattr(fn, "__guarded__", False):
        return fn

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        refuse_none_or_nan(out, f"the value {what} returned")
        return out

    guarded.__guarded__ = True  # type: ignore[attr-defined]
    return guarded


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    return "float" if (t.is_floating_point() or t.is_complex()) else "int"


def _compare_tensors(actual: torch.Tensor, expected: torch.Tensor, where: str, atol: float, rtol: float) -> str | None:
    """Compare two tensors; return a description of the first problem, or ``None``.

    NaN never matches (not even an expected NaN); a bool never matches a number (``True`` is
    not ``1.0``), while an integer 0/1 answer matches a boolean mask and an integer-valued
    answer of any dtype matches an integer."""
    if _shape(actual) != _shape(expected):
        return f"{where} has shape {_shape(actual)}, expected shape {_shape(expected)}"
    actual = actual.to(expected.device)
    if _has_nan(actual):
        return f"{where} contains NaN ({int(torch.isnan(actual).sum())} of {actual.numel()} entries)"
    if _has_nan(expected):
        return f"{where}: the expected value contains NaN, so the check cannot judge this case"
    kind_a, kind_e = _kind(actual), _kind(expected)
    if kind_a == "bool" and kind_e != "bool":
        return f"{where} holds True/False, expected numbers"
    if kind_e == "bool" and kind_a == "float":
        return f"{where} holds floats, expected True/False (a boolean or 0/1 integer mask)"
    exact = kind_e != "float"
    if exact:
        if actual.is_floating_point() or actual.is_complex():
            # A float answer where an integer one is expected: compare values exactly.
            equal = actual == expected.to(actual.dtype)
        else:
            equal = actual.to(torch.int64) == expected.to(torch.int64)
        if bool(equal.all()):
            return None
        bad = (~equal).nonzero()[0]
        index = tuple(int(i) for i in bad)
        return (
            f"{where} differs (exact match expected), shape {_shape(expected)}: "
            f"{int((~equal).sum())} of {expected.numel()} entries wrong, first at index {index}: "
            f"got {actual[index].item()!r}, expected {expected[index].item()!r}"
        )
    dtype = torch.promote_types(actual.dtype, expected.dtype)
    if not (dtype.is_floating_point or dtype.is_complex):
        dtype = expected.dtype
    a, e = actual.to(dtype), expected.to(dtype)
    close = torch.isclose(a, e, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    diff = (a - e).abs()
    diff = torch.nan_to_num(diff, nan=math.inf)
    max_err = float(diff.max()) if diff.numel() else 0.0
    index = tuple(int(i) for i in (~close).nonzero()[0])
    return (
        f"{where} differs: max abs error {max_err:.3g} (atol={atol:g}, rtol={rtol:g}), "
        f"shape {_shape(expected)}, {int((~close).sum())} of {expected.numel()} entries off, "
        f"first at index {index}: got {a[index].item():.6g}, expected {e[index].item():.6g}"
    )


def _numbers_only(value: Any) -> bool:
    """A list/tuple whose leaves are all Python numbers (compared as one tensor)."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_numbers_only(v) for v in value)
    return _is_number(value)


def _compare(actual: Any, expected: Any, where: str, atol: float, rtol: float) -> str | None:
    """Recursively compare ``actual`` with ``expected``; return the first mismatch or ``None``."""
    expected_tensor = (_tensor_or_none(expected)
                       if not isinstance(expected, (list, tuple)) or _numbers_only(expected)
                       else None)
    if expected_tensor is not None:
        actual_tensor = _tensor_or_none(actual)
        if actual_tensor is None:
            return f"{where} is {describe(actual)}, expected {describe(expected)}"
        return _compare_tensors(actual_tensor, expected_tensor, where, atol, rtol)
    if expected is None:
        return None if actual is None else f"{where} is {describe(actual)}, expected None"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where} is {describe(actual)}, expected a dict"
        if set(actual) != set(expected):
            missing = sorted(map(repr, set(expected) - set(actual)))
            extra = sorted(map(repr, set(actual) - set(expected)))
            return f"{where} has the wrong keys: missing {missing}, unexpected {extra}"
        for key in expected:
            problem = _compare(actual[key], expected[key], f"{where}[{key!r}]", atol, rtol)
            if problem:
                return problem
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            return f"{where} is {describe(actual)}, expected a {type(expected).__name__}"
        if len(actual) != len(expected):
            return f"{where} has length {len(actual)}, expected length {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            problem = _compare(a, e, f"{where}[{i}]", atol, rtol)
            if problem:
                return problem
        return None
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        if type(actual) is not type(expected):
            return f"{where} is {describe(actual)}, expected a {type(expected).__name__}"
        for f in dataclasses.fields(expected):
            problem = _compare(getattr(actual, f.name), getattr(expected, f.name), f"{where}.{f.name}", atol, rtol)
            if problem:
                return problem
        return None
    if type(actual) is not type(expected) and not (isinstance(actual, str) and isinstance(expected, str)):
        return f"{where} is {describe(actual)}, expected {describe(expected)}"
    if actual != expected:
        return f"{where} is {actual!r}, expected {expected!r}"
    return None


def is_stub_error(error: BaseException) -> bool:
    """Whether ``error`` comes from an exercise stub: the student version's functions raise
    ``NotImplementedError("Exercise: fill in this part")`` (any ``NotImplementedError`` counts,
    as a student may write their own ``raise NotImplementedError``)."""
    return isinstance(error, NotImplementedError)


def not_done(name: str) -> CheckResult:
    """The failed, ``not_done`` :class:`CheckResult` of an exercise still holding its stub."""
    return CheckResult(name, False, _NOT_IMPLEMENTED_MESSAGE, not_done=True)


def close(actual: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Whether ``actual`` matches ``expected`` by the rules of :func:`check_value` (any tensor-like
    type; shapes equal; NaN never matches; a bool never equals a number). Never raises."""
    try:
        return _compare(actual, expected, "value", atol, rtol) is None
    except Exception:  # noqa: BLE001 - a helper of checks never raises
        return False


def raised(name: str, error: BaseException) -> CheckResult:
    """The failed :class:`CheckResult` for a student function that raised ``error``: "not
    implemented yet" (``not_done``) for ``NotImplementedError`` (the student stub), the
    message of an :class:`InvalidAnswer` (the function returned ``None``, NaN, ...), else the
    error's type and message."""
    if is_stub_error(error):
        return not_done(name)
    if isinstance(error, InvalidAnswer):
        return CheckResult(name, False, str(error))
    return CheckResult(name, False, f"your function raised {_describe(error)}")


def _call(fn: Callable[..., Any], inputs: Any) -> Any:
    """Call ``fn`` with ``inputs``: a tuple is spread as positional args, a dict as keyword args."""
    if isinstance(inputs, tuple):
        return fn(*inputs)
    if isinstance(inputs, dict):
        return fn(**inputs)
    return fn(inputs)


def _seeded(seed: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the global torch RNG seeded, restoring the caller's RNG state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def compare_to_reference(
    name: str,
    student_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    make_inputs: Callable[[torch.Generator | int], tuple | dict],
    n_trials: int = 3,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> CheckResult:
    """Check ``student_fn`` against ``reference_fn`` on ``n_trials`` sets of fresh inputs.

    For trial ``t`` the seed is ``seed + t``. ``make_inputs`` is called with a
    ``torch.Generator`` seeded with it (``generator.initial_seed()`` gives the int),
    with the global torch RNG seeded the same way; it is called once for each of the
    two functions, so neither sees inputs the other may have modified in place. A
    tuple is passed as positional arguments, a dict as keyword arguments, anything
    else as the single argument. Both functions also run with the global torch RNG
    seeded identically, and the caller's RNG state is left untouched.

    Outputs are compared element-wise with ``|student - reference| <= atol + rtol *
    |reference|`` (integer and bool outputs exactly; shapes, lengths and keys must
    match; NaN never matches). A numpy array or a list where the reference returns a
    tensor is compared by value. Never raises: a ``NotImplementedError`` from the
    student function is reported as "not implemented yet" (``not_done``), any other
    exception by type and message, a mismatch by where it is, the max abs error and
    the shape.

    Returns:
        A :class:`CheckResult` named ``name``.
    """
    for trial in range(n_trials):
        trial_seed = seed + trial
        label = f"trial {trial + 1}/{n_trials} (seed {trial_seed})"

        def fresh_inputs() -> tuple | dict:
            generator = torch.Generator().manual_seed(trial_seed)
            return make_inputs(generator)

        try:
            expected = _seeded(trial_seed, lambda: _call(reference_fn, _seeded(trial_seed, fresh_inputs)))
        except Exception as error:  # noqa: BLE001 - a broken check must still not raise
            return CheckResult(name, False, f"the check itself failed on {label}: {_describe(error)}")
        try:
            inputs = _seeded(trial_seed, fresh_inputs)
        except Exception as error:  # noqa: BLE001
            return CheckResult(name, False, f"the check itself failed on {label}: {_describe(error)}")
        try:
            actual = _seeded(trial_seed, lambda: _call(student_fn, inputs))
        except Exception as error:  # noqa: BLE001
            result = raised(name, error)
            if not result.not_done:
                result.message += f" on {label}"
            return result
        try:
            problem = _compare(actual, expected, "output", atol, rtol)
        except Exception as error:  # noqa: BLE001
            return CheckResult(name, False, f"could not compare the outputs on {label}: {_describe(error)}")
        if problem:
            return CheckResult(name, False, f"{problem} [{label}]")
    return CheckResult(name, True, f"matches the reference on {n_trials} random input(s)")


def check_value(
    name: str,
    student_value: Any,
    expected: Any,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> CheckResult:
    """Check one computed value (number, tensor, numpy array or a container of these).

    Passes when ``|student_value - expected| <= atol + rtol * |expected|`` element-wise
    (integers and bools exactly) and shapes match; NaN never passes, a bool never equals a
    number. ``...`` (a placeholder left in the student notebook) is reported as "not
    implemented yet" (``not_done``). Never raises.
    """
    if student_value is Ellipsis:
        return not_done(name)
    try:
        problem = _compare(student_value, expected, "value", atol, rtol)
    except Exception as error:  # noqa: BLE001
        return CheckResult(name, False, f"could not compare the values: {_describe(error)}")
    if problem:
        return CheckResult(name, False, problem)
    return CheckResult(name, True, "matches the expected value")


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def report(result: CheckResult, raise_on_fail: bool = False) -> CheckResult:
    """Print ``str(result)`` once and return ``result``.

    Idempotent: a result that was already reported is not printed again, so
    ``report(check(...))`` prints one verdict even when ``check`` itself reports (in a
    notebook, under ``jupyter nbconvert --execute`` and in plain python alike; the
    notebook display of the returned result, :meth:`CheckResult._ipython_display_`,
    prints nothing after a report either).

    A failed result raises ``AssertionError`` (after printing) when ``raise_on_fail``
    is true or the environment variable ``TUTORIAL_CHECKS_STRICT`` is ``1``; the
    test harness sets it when running the solution notebooks, so a broken reference
    or check fails CI while students only see the message.
    """
    if not result._reported:
        print(str(result))
        result._reported = True
    if not result.passed and (raise_on_fail or _strict_from_env()):
        raise AssertionError(str(result))
    return result
