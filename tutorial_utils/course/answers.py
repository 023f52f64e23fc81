"""Which answer the cells after an exercise use: the student's when its check passes, else the
reference solution, so that a student who skipped or got stuck on an exercise can follow the
rest of a live session.

The pattern every exercise follows (the notebook-author contract)
-----------------------------------------------------------------
A solution notebook writes each exercise as two code cells (the student version is generated
from them by :mod:`tutorial_utils.course.exercises`, which checks this pattern):

1. the **exercise cell**: either a function whose body holds the solution between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the student version raises
   ``NotImplementedError`` there), or top-level code between the markers that binds the
   answer's names (the student version binds each of them to ``...``);
2. right after it, the **check cell**, which rebinds the answer's names to what the check
   returns::

       induction_score = nb00.check_induction_score(induction_score)
       sva_circuit, sva_faith = nb03.check_sva_faithfulness(model, sva, sva_circuit, sva_faith)

Every later cell uses those names. The check (an :class:`ExerciseCheck`, made by the
:func:`exercise` decorator in ``tutorial_utils.course.checks.nbXX``) then does one of three
things, printing one verdict:

* **passed**: ``✅ induction_score: passed (...)``; the student's answer is returned unchanged;
* **not done** (the stub raised ``NotImplementedError``, or a value is still ``...``):
  ``⏭ Exercise 4.1 not done: continuing with the reference solution.``; the reference is
  returned. A stub never passes;
* **failed**: ``❌ induction_score: <why>`` and ``Exercise 4.1: continuing with the reference
  solution ...``; the reference is returned.

With ``TUTORIAL_CHECKS_STRICT=1`` (the solution notebooks under nbval) "not done" and "failed"
raise ``AssertionError`` after printing. The reference of a function exercise is the function in
:mod:`tutorial_utils.course.solutions`; a value exercise computes it from the check's other
arguments (``reference_from``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .grading import (CheckResult, InvalidAnswer, _strict_from_env, describe,
                      guard_answer_function, is_stub_error, not_done, report)

__all__ = ["ExerciseCheck", "exercise", "exercise_checks", "CONTINUING"]

#: Values CPython may share between unrelated computations (small ints, strings...): a
#: student's answer that *is* one of them is not recognised as the handed-out reference.
_INTERNED = (bool, int, str, bytes, type(None))

#: The end of every line that announces a fallback to the reference solution.
CONTINUING = "continuing with the reference solution"


def _mark_student_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped so that an exception it raises is tagged as the student's (a check that
    lets it propagate is then reported as "your function raised ...", not as a broken check)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            error.__from_student__ = True  # type: ignore[attr-defined]
            raise

    return call


@dataclass(eq=False)
class ExerciseCheck:
    """The check of one exercise: judges an answer (:meth:`judge`) and, called from a notebook,
    returns what later cells use (:meth:`__call__`).

    Attributes:
        label: the exercise's number in its notebook, e.g. ``"4.1"`` (the heading
            ``#### Exercise 4.1 · ...``).
        judge_fn: the function that judges; its parameters named in ``answers`` are the
            student's answer(s), the others what the check needs (model, dataset, ...).
        answers: the names of ``judge_fn``'s answer parameters (default: its first one).
        reference: what later cells use instead of a function answer that is not done or
            fails (the reference solution in :mod:`tutorial_utils.course.solutions`).
        reference_from: for value answers: computes the reference value(s) from the check's
            other arguments (only those it names as parameters are passed).
        name: the verdict's name when the judge never ran (a value left as ``...``).

    Called from a notebook, the check also recognises the reference it handed out: re-running
    the check cell after a fallback (without re-running the exercise cell) is still "not done",
    never "passed".
    """

    label: str
    judge_fn: Callable[..., CheckResult]
    answers: tuple[str, ...]
    reference: Any = None
    reference_from: Callable[..., Any] | None = None
    name: str = ""
    _handed_out: list[Any] = field(default_factory=list, repr=False)

    def _bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        bound = inspect.signature(self.judge_fn).bind(*args, **kwargs)
        bound.apply_defaults()
        return bound

    def judge(self, *args: Any, **kwargs: Any) -> CheckResult:
        """The verdict on the answer passed with the check's other arguments, as
        ``judge_fn`` takes them. Never raises (except on a call with the wrong arguments):
        a stub gives a ``not_done`` result, an unjudgeable answer (``None``, a string, NaN, a
        crash of the student's function) a failed one that says so."""
        bound = self._bind(args, kwargs)
        for key in self.answers:
            value = bound.arguments[key]
            if value is Ellipsis:
                return not_done(self.name)
            if callable(value) and not isinstance(value, type):
                bound.arguments[key] = guard_answer_function(_mark_student_errors(value))
        try:
            result = self.judge_fn(*bound.args, **bound.kwargs)
        except InvalidAnswer as error:
            return CheckResult(self.name, False, str(error))
        except Exception as error:  # noqa: BLE001 - a check judges, it never crashes
            if is_stub_error(error):
                return not_done(self.name)
            if getattr(error, "__from_student__", False):
                return CheckResult(self.name, False, f"your function raised "
                                                     f"{type(error).__name__}: {error}")
            answer = describe(bound.arguments[self.answers[0]])
            return CheckResult(self.name, False, f"the check could not judge this answer "
                                                 f"({type(error).__name__}: {error}); the "
                                                 f"answer was {answer}")
        if not isinstance(result, CheckResult):
            return CheckResult(self.name, False, f"the check returned {describe(result)} "
                                                 f"instead of a verdict (a bug in the check)")
        return result

    def _answer(self, bound: inspect.BoundArguments) -> Any:
        values = tuple(bound.arguments[key] for key in self.answers)
        return values[0] if len(values) == 1 else values

    def _reference_for(self, bound: inspect.BoundArguments) -> Any:
        if self.reference_from is None:
            return self.reference
        wanted = inspect.signature(self.reference_from).parameters
        kwargs = {k: v for k, v in bound.arguments.items()
                  if k in wanted and k not in self.answers}
        return self.reference_from(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Judge the answer, print one verdict, and return what later cells use: the answer
        itself when it passes, the reference solution otherwise (a tuple for several
        answers). With ``TUTORIAL_CHECKS_STRICT=1`` a stub or a failure raises
        ``AssertionError`` after printing."""
        bound = self._bind(args, kwargs)
        given = [g for g in (self.reference, *self._handed_out)
                 if g is not None and not isinstance(g, _INTERNED)]  # identity means nothing there
        if any(bound.arguments[key] is obj for key in self.answers for obj in given):
            result = not_done(self.name)  # the reference this check handed out earlier
        else:
            result = self.judge(*args, **kwargs)
        if result.passed:
            report(result)
            return self._answer(bound)
        if result.not_done:
            line = f"⏭ Exercise {self.label} not done: {CONTINUING}."
        else:
            line = (f"{result}\n   Exercise {self.label}: {CONTINUING} for the cells below; fix "
                    f"your answer and re-run its cell and this one.")
        print(line)
        result._reported = True
        if _strict_from_env():
            raise AssertionError(line)
        fallback = self._reference_for(bound)
        if self.reference_from is not None:
            self._handed_out[:] = list(fallback) if len(self.answers) > 1 else [fallback]
        return fallback

    def __repr__(self) -> str:
        return f"<check of Exercise {self.label}: {self.judge_fn.__name__}>"


def exercise(label: str, *, reference: Any = None,
             reference_from: Callable[..., Any] | None = None,
             answers: tuple[str, ...] | None = None
             ) -> Callable[[Callable[..., CheckResult]], ExerciseCheck]:
    """Decorator that makes a judging function ``check_x(answer, ...) -> CheckResult`` the
    :class:`ExerciseCheck` of Exercise ``label``.

    Args:
        label: the exercise's number, e.g. ``"4.1"``.
        reference: the reference solution later cells use (function exercises).
        reference_from: computes the reference value(s) from the check's other arguments
            (value exercises); exactly one of ``reference`` / ``reference_from``.
        answers: names of the answer parameters; default the first parameter.
    """
    if (reference is None) == (reference_from is None):
        raise TypeError("exercise(): give exactly one of reference= and reference_from=")

    def wrap(judge_fn: Callable[..., CheckResult]) -> ExerciseCheck:
        params = list(inspect.signature(judge_fn).parameters)
        names = tuple(answers) if answers else (params[0],)
        missing = [n for n in names if n not in params]
        if missing:
            raise TypeError(f"exercise(): {judge_fn.__name__} has no parameter {missing}")
        check = ExerciseCheck(label, judge_fn, names, reference, reference_from,
                              judge_fn.__name__.removeprefix("check_"))
        functools.update_wrapper(check, judge_fn)  # type: ignore[arg-type]
        return check

    return wrap


def exercise_checks(module: Any) -> dict[str, ExerciseCheck]:
    """The exercise checks of a checks module, by attribute name."""
    return {name: value for name, value in vars(module).items()
            if isinstance(value, ExerciseCheck)}
