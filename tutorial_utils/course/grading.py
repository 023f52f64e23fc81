"""Generic core of the exercise checks.

Each exercise in a notebook is followed by a check cell such as::

    report(check_my_function(my_function))

where ``check_my_function`` lives in a per-notebook module (for instance
``tutorial_utils.course.checks.nb03``) and is built from the helpers here:

* :func:`compare_to_reference` runs the student's function and the reference
  implementation on the same freshly generated inputs, for a few seeds, and
  compares the outputs within a tolerance;
* :func:`check_value` compares one computed value (number, tensor, ...) with the
  expected one;
* :func:`report` prints the one-line verdict and returns the :class:`CheckResult`.

The check functions never raise: a missing implementation, a crash or a wrong
answer all become a failed :class:`CheckResult` with a message a student can act
on. Only :func:`report` may raise, and only when asked to, so that running the
*solution* notebooks under nbval with ``TUTORIAL_CHECKS_STRICT=1`` turns a broken
reference or check into a failing test.

Outputs that can be compared: ``torch.Tensor``, Python numbers and bools, numpy
arrays and scalars, ``None``, strings, and (nested) tuples, lists, dicts and
dataclasses of these. numpy is never imported here; a value is recognised as a
numpy value only when numpy has already been imported by someone else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CheckResult",
    "STRICT_ENV_VAR",
    "compare_to_reference",
    "check_value",
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
    """

    name: str
    passed: bool
    message: str
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


def _is_numpy(value: Any) -> bool:
    """Whether ``value`` is a numpy array or scalar, without importing numpy."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, (np.ndarray, np.generic))


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, complex))


def _as_tensor(value: Any) -> torch.Tensor | None:
    """``value`` as a tensor if it is tensor-like (tensor, number, numpy), else ``None``."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if _is_number(value) or _is_numpy(value):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _compare_tensors(actual: torch.Tensor, expected: torch.Tensor, where: str, atol: float, rtol: float) -> str | None:
    """Compare two tensors; return a description of the first problem, or ``None``."""
    if _shape(actual) != _shape(expected):
        return f"{where} has shape {_shape(actual)}, expected shape {_shape(expected)}"
    actual = actual.to(expected.device)
    exact = not (expected.is_floating_point() or expected.is_complex())
    if exact:
        if actual.is_floating_point() or actual.is_complex():
            # A float answer where an integer/bool one is expected: compare values exactly.
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
    close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return None
    both_nan = torch.isnan(a) & torch.isnan(e)
    diff = (a - e).abs()
    diff = torch.where(both_nan, torch.zeros_like(diff), diff)
    diff = torch.nan_to_num(diff, nan=math.inf)
    max_err = float(diff.max()) if diff.numel() else 0.0
    index = tuple(int(i) for i in (~close).nonzero()[0])
    return (
        f"{where} differs: max abs error {max_err:.3g} (atol={atol:g}, rtol={rtol:g}), "
        f"shape {_shape(expected)}, {int((~close).sum())} of {expected.numel()} entries off, "
        f"first at index {index}: got {a[index].item():.6g}, expected {e[index].item():.6g}"
    )


def _compare(actual: Any, expected: Any, where: str, atol: float, rtol: float) -> str | None:
    """Recursively compare ``actual`` with ``expected``; return the first mismatch or ``None``."""
    expected_tensor = _as_tensor(expected)
    if expected_tensor is not None:
        actual_tensor = _as_tensor(actual)
        if actual_tensor is None:
            return f"{where} is a {type(actual).__name__}, expected a {type(expected).__name__}"
        return _compare_tensors(actual_tensor, expected_tensor, where, atol, rtol)
    if expected is None:
        return None if actual is None else f"{where} is a {type(actual).__name__}, expected None"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where} is a {type(actual).__name__}, expected a dict"
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
            return f"{where} is a {type(actual).__name__}, expected a {type(expected).__name__}"
        if len(actual) != len(expected):
            return f"{where} has length {len(actual)}, expected length {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            problem = _compare(a, e, f"{where}[{i}]", atol, rtol)
            if problem:
                return problem
        return None
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        if type(actual) is not type(expected):
            return f"{where} is a {type(actual).__name__}, expected a {type(expected).__name__}"
        for f in dataclasses.fields(expected):
            problem = _compare(getattr(actual, f.name), getattr(expected, f.name), f"{where}.{f.name}", atol, rtol)
            if problem:
                return problem
        return None
    if actual != expected:
        return f"{where} is {actual!r}, expected {expected!r}"
    return None


def raised(name: str, error: BaseException) -> CheckResult:
    """The failed :class:`CheckResult` for a student function that raised ``error``: "not
    implemented yet" for ``NotImplementedError`` (the student stub), else the error's type and
    message."""
    if isinstance(error, NotImplementedError):
        return CheckResult(name, False, _NOT_IMPLEMENTED_MESSAGE)
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
    match). Never raises: a ``NotImplementedError`` from the student function is
    reported as "not implemented yet", any other exception by type and message, a
    mismatch by where it is, the max abs error and the shape.

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
        except NotImplementedError:
            return CheckResult(name, False, _NOT_IMPLEMENTED_MESSAGE)
        except Exception as error:  # noqa: BLE001
            return CheckResult(name, False, f"your function raised {_describe(error)} on {label}")
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
    (integers and bools exactly) and shapes match. ``...`` (a placeholder left in
    the student notebook) is reported as "not implemented yet". Never raises.
    """
    if student_value is Ellipsis:
        return CheckResult(name, False, _NOT_IMPLEMENTED_MESSAGE)
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
