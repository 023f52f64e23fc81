"""Tests for the exercise-check core ``tutorial_utils.course.grading``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

from tutorial_utils.course.grading import CheckResult, check_value, compare_to_reference, report


def _reference_softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _make_inputs(generator: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.randn(4, 5, generator=generator),)


def test_str_formats() -> None:
    assert str(CheckResult("f", True, "3 trials")) == "✅ f: passed (3 trials)"
    assert str(CheckResult("f", False, "wrong shape")) == "❌ f: wrong shape"


def test_correct_function_passes() -> None:
    def student(x: torch.Tensor) -> torch.Tensor:
        e = (x - x.max(dim=-1, keepdim=True).values).exp()
        return e / e.sum(dim=-1, keepdim=True)

    result = compare_to_reference("softmax", student, _reference_softmax, _make_inputs)
    assert result.passed, result.message
    assert str(result).startswith("✅ softmax: passed (")


def test_wrong_function_fails_with_max_abs_error() -> None:
    result = compare_to_reference("softmax", lambda x: x.exp() / 10, _reference_softmax, _make_inputs)
    assert not result.passed
    match = re.search(r"max abs error ([0-9.e+-]+)", result.message)
    assert match, result.message
    # The reported error is the real one for the first trial's inputs.
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    true_err = (x.exp() / 10 - torch.softmax(x, -1)).abs().max().item()
    assert float(match.group(1)) == pytest.approx(true_err, rel=1e-2)
    assert "(4, 5)" in result.message and "seed 0" in result.message


def test_not_implemented_is_reported() -> None:
    def student(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("Exercise: fill in this part")

    result = compare_to_reference("softmax", student, _reference_softmax, _make_inputs)
    assert not result.passed
    assert "not implemented yet" in result.message


def test_other_exception_is_reported_not_raised() -> None:
    def student(x: torch.Tensor) -> torch.Tensor:
        return x @ torch.ones(3, 3)

    result = compare_to_reference("softmax", student, _reference_softmax, _make_inputs)
    assert not result.passed
    assert result.message.startswith("your function raised RuntimeError")


def test_broken_reference_or_inputs_reported() -> None:
    result = compare_to_reference("f", _reference_softmax, lambda x: 1 / 0, _make_inputs)
    assert not result.passed and "the check itself failed" in result.message
    assert "ZeroDivisionError" in result.message


def test_shape_mismatch_is_reported() -> None:
    result = compare_to_reference("softmax", lambda x: torch.softmax(x, -1).T, _reference_softmax, _make_inputs)
    assert not result.passed
    assert "shape (5, 4), expected shape (4, 5)" in result.message


def test_nested_outputs_and_kwargs() -> None:
    def make_inputs(generator: torch.Generator) -> dict:
        return {"x": torch.randn(3, generator=generator), "k": 2}

    def reference(x: torch.Tensor, k: int) -> dict:
        values, indices = x.topk(k)
        return {"top": (values, indices), "total": float(x.sum())}

    assert compare_to_reference("topk", reference, reference, make_inputs).passed

    def off_by_one(x: torch.Tensor, k: int) -> dict:
        values, indices = x.topk(k)
        return {"top": (values, indices + 1), "total": float(x.sum())}

    result = compare_to_reference("topk", off_by_one, reference, make_inputs)
    assert not result.passed
    assert "output['top'][1]" in result.message and "exact match expected" in result.message

    missing_key = compare_to_reference("topk", lambda x, k: {"top": None}, reference, make_inputs)
    assert "wrong keys" in missing_key.message


def test_inputs_are_fresh_per_function_and_seeded_per_trial() -> None:
    seen: list[float] = []

    def mutating_student(x: torch.Tensor) -> torch.Tensor:
        seen.append(float(x[0, 0]))
        x.mul_(0)  # must not leak into the reference's inputs (or vice versa)
        return _reference_softmax(torch.zeros_like(x) + 1)

    def reference(x: torch.Tensor) -> torch.Tensor:
        seen.append(float(x[0, 0]))
        return _reference_softmax(torch.ones_like(x))

    state = torch.random.get_rng_state()
    assert compare_to_reference("f", mutating_student, reference, _make_inputs, n_trials=2).passed
    assert torch.equal(state, torch.random.get_rng_state()), "caller's RNG state must be untouched"
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[0] != seen[2]


def test_check_value() -> None:
    assert check_value("logit diff", 2.5000001, 2.5).passed
    wrong = check_value("logit diff", 2.6, 2.5)
    assert not wrong.passed and "max abs error 0.1" in wrong.message
    assert check_value("count", 3, 3).passed
    assert not check_value("count", 4, 3).passed
    shape = check_value("t", torch.zeros(2, 3), torch.zeros(3))
    assert not shape.passed and "shape (2, 3), expected shape (3,)" in shape.message
    assert "not implemented yet" in check_value("t", ..., torch.zeros(3)).message
    np = pytest.importorskip("numpy")
    assert check_value("arr", np.array([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64)).passed


def test_dataclass_outputs() -> None:
    @dataclass
    class Out:
        scores: torch.Tensor
        label: str

    assert check_value("dc", Out(torch.ones(2), "a"), Out(torch.ones(2), "a")).passed
    result = check_value("dc", Out(torch.ones(2), "b"), Out(torch.ones(2), "a"))
    assert not result.passed and "value.label" in result.message


def test_report_prints_and_returns(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)
    failed = CheckResult("f", False, "bad")
    assert report(failed) is failed
    assert capsys.readouterr().out == "❌ f: bad\n"
    # Displayed as a cell's value after report(), it is not printed a second time.
    failed._ipython_display_()
    assert capsys.readouterr().out == ""
    CheckResult("g", True, "")._ipython_display_()
    assert capsys.readouterr().out == "✅ g: passed\n"
    with pytest.raises(AssertionError, match="f: bad"):
        report(failed, raise_on_fail=True)


def test_strict_env_makes_report_raise(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TUTORIAL_CHECKS_STRICT", "1")
    passed = CheckResult("f", True, "ok")
    assert report(passed) is passed
    with pytest.raises(AssertionError, match="❌ f: bad"):
        report(CheckResult("f", False, "bad"))
    assert "❌ f: bad" in capsys.readouterr().out


def test_each_verdict_prints_once_when_reported_twice(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``report(check(...))`` where the check already reports prints one line, and displaying
    the returned result as a cell's value prints nothing more."""
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)
    result = CheckResult("f", True, "ok")
    report(report(result))
    result._ipython_display_()
    assert capsys.readouterr().out == "✅ f: passed (ok)\n"
    shown = CheckResult("g", False, "bad")
    shown._ipython_display_()
    report(shown)
    assert capsys.readouterr().out == "❌ g: bad\n"


_SCRIPT = ("from tutorial_utils.course.grading import CheckResult, report\n"
           "def check():\n"
           "    return report(CheckResult('once', True, 'ok'))\n"
           "report(check())\n")


def test_verdict_prints_once_in_plain_python() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         check=True, env={"PATH": "", "TUTORIAL_CHECKS_STRICT": "0"}).stdout
    assert out.count("once: passed") == 1, out


def test_verdict_prints_once_under_nbconvert_execution() -> None:
    """As ``jupyter nbconvert --execute`` runs a notebook: an IPython kernel, the result the
    last expression of the cell."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_SCRIPT),
                nbformat.v4.new_code_cell("r = CheckResult('bare', False, 'no'); r")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    texts = []
    for cell in nb.cells:
        for o in cell.outputs:
            texts.append(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values()))
    joined = "\n".join(texts)
    assert joined.count("once: passed") == 1, joined
    assert joined.count("bare: no") == 1, joined


def test_raised_names_a_stub_and_other_errors():
    from tutorial_utils.course.grading import raised

    stub = raised("x", NotImplementedError())
    assert not stub.passed and stub.message.startswith("not implemented yet")
    other = raised("x", IndexError("index 5 is out of bounds"))
    assert not other.passed and "IndexError: index 5 is out of bounds" in other.message


# --- answers a check cannot be fooled by, by class (issue 23) ---------------------------------

import math  # noqa: E402

from tutorial_utils.course.grading import (InvalidAnswer, as_mask, as_number, as_tensor,  # noqa: E402
                                           close, guard_answer_function)


class TestNaNNeverPasses:
    @pytest.mark.parametrize("value, expected", [
        (float("nan"), 1.0), (float("nan"), float("nan")),
        (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0])),
        (torch.full((2,), float("nan")), torch.full((2,), float("nan"))),
        ([1.0, float("nan")], torch.tensor([1.0, 2.0])),
    ])
    def test_check_value(self, value, expected):
        result = check_value("x", value, expected)
        assert not result.passed and "NaN" in result.message

    def test_compare_to_reference(self):
        result = compare_to_reference("softmax", lambda x: x * float("nan"), _reference_softmax,
                                      _make_inputs)
        assert not result.passed and "NaN" in result.message

    def test_close_and_coercion(self):
        assert not close(float("nan"), float("nan"))
        with pytest.raises(InvalidAnswer, match="NaN"):
            as_number(torch.tensor(float("nan")))
        with pytest.raises(InvalidAnswer, match="NaN"):
            as_tensor([0.0, math.nan])

    def test_guarded_function_refuses_nan_before_any_comparison(self):
        """A check written as ``if abs(got - 1) > tol: fail`` would pass NaN: the guard makes
        the function raise before the check compares anything."""
        guarded = guard_answer_function(lambda: {"a": (1.0, torch.tensor([math.nan]))})
        with pytest.raises(InvalidAnswer, match=r"\['a'\]\[1\] is NaN"):
            guarded()
        assert guard_answer_function(lambda: torch.ones(2))().sum() == 2


class TestBoolIsNotANumber:
    @pytest.mark.parametrize("value, expected", [
        (True, 1.0), (False, 0.0), (True, 1), (1.0, True),
        (torch.tensor([True, False]), torch.tensor([1.0, 0.0])),
        (torch.tensor([1.0, 0.0]), torch.tensor([True, False])),
    ])
    def test_rejected(self, value, expected):
        assert not check_value("x", value, expected).passed

    def test_integer_masks_match_boolean_ones(self):
        np = pytest.importorskip("numpy")
        want = torch.tensor([[True, False], [False, True]])
        for mask in (want.to(torch.uint8), want.long(), want.numpy(), want.int().tolist()):
            assert check_value("mask", mask, want).passed, type(mask)
        assert not check_value("mask", torch.tensor([[2, 0], [0, 1]]), want).passed
        assert as_mask(np.array([1, 0], dtype=np.uint8)).dtype == torch.bool
        with pytest.raises(InvalidAnswer, match="other than True/False"):
            as_mask(torch.tensor([0.5, 1.0]))

    def test_as_number_refuses_bools(self):
        with pytest.raises(InvalidAnswer, match="truth value"):
            as_number(True)
        with pytest.raises(InvalidAnswer, match="truth value"):
            as_number(torch.tensor(True))


class TestAnyReasonableTypeIsJudged:
    def test_lists_and_numpy_where_a_tensor_is_expected(self):
        np = pytest.importorskip("numpy")
        want = torch.tensor([[0.5, 1.5], [2.0, -1.0]])
        for answer in (want.tolist(), want.numpy(), want.double(), tuple(want.tolist())):
            assert check_value("x", answer, want).passed, type(answer)
        assert check_value("x", [torch.tensor(0.5), torch.tensor(1.5)], want[0]).passed
        assert check_value("x", np.array(2.0), 2.0).passed
        assert as_tensor(np.float32(2.0)).item() == 2.0
        assert as_number([3.0]) == 3.0 and as_number(np.int64(4)) == 4.0

    @pytest.mark.parametrize("answer, words", [
        (None, "is None"), ("0.5", "a str '0.5'"), (object(), "a object"),
        ({"a": 1}, "a dict"), ([1.0, "x"], "a list of length 2"),
    ])
    def test_unusable_answers_are_refused_with_a_message(self, answer, words):
        with pytest.raises(InvalidAnswer, match=re.escape(words)):
            as_tensor(answer, "your answer")
        result = check_value("x", answer, torch.ones(2))
        assert not result.passed

    def test_shape_and_many_numbers(self):
        with pytest.raises(InvalidAnswer, match=r"shape \(2,\): return one number"):
            as_number(torch.ones(2))
        with pytest.raises(InvalidAnswer, match="expected"):
            as_mask(torch.ones(3, dtype=torch.bool), shape=(2,))


# --- ExerciseCheck: what later cells use --------------------------------------------------------

from tutorial_utils.course.answers import CONTINUING, exercise  # noqa: E402


def _reference(x):
    return x + 1


@exercise("9.1", reference=_reference)
def _check_plus_one(fn):
    return compare_to_reference("plus_one", fn, _reference,
                                lambda g: (torch.randn(3, generator=g),))


@exercise("9.2", reference_from=lambda data: float(sum(data)), answers=("total",))
def _check_total(data, total):
    return check_value("total", as_number(total), float(sum(data)))


class TestExerciseCheck:
    @pytest.fixture(autouse=True)
    def _lenient(self, monkeypatch):
        monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)

    def test_a_passing_answer_is_used_as_written(self, capsys):
        def mine(x):
            return 1 + x

        assert _check_plus_one(mine) is mine
        assert capsys.readouterr().out.startswith("✅ plus_one: passed")

    def test_a_stub_is_not_done_once_and_never_passes(self, capsys):
        def stub(x):
            raise NotImplementedError("Exercise: fill in this part")

        assert _check_plus_one(stub) is _reference
        out = capsys.readouterr().out
        assert out == f"⏭ Exercise 9.1 not done: {CONTINUING}.\n"
        result = _check_plus_one.judge(stub)
        assert result.not_done and not result.passed
        assert _check_total([1, 2], ...) == 3  # a value left as ... is a stub too
        assert f"Exercise 9.2 not done: {CONTINUING}" in capsys.readouterr().out

    def test_a_failure_says_why_and_continues_on_the_reference(self, capsys):
        assert _check_plus_one(lambda x: x + 2) is _reference
        out = capsys.readouterr().out
        assert out.startswith("❌ plus_one: output differs") and f"Exercise 9.1: {CONTINUING}" in out
        assert _check_total([1, 2], 4) == 3

    @pytest.mark.parametrize("answer, words", [
        (lambda x: None, "returned is None"), (lambda x: "abc", "a str 'abc'"),
        (lambda x: x * float("nan"), "is NaN"), (lambda x: 1 / 0, "ZeroDivisionError"),
    ])
    def test_unjudgeable_answers_fail_without_raising(self, answer, words):
        result = _check_plus_one.judge(answer)
        assert not result.passed and not result.not_done and words in result.message

    def test_value_answers_of_any_kind_are_judged(self):
        np = pytest.importorskip("numpy")
        assert _check_total.judge([1, 2], np.float64(3.0)).passed
        assert _check_total.judge([1, 2], torch.tensor([3.0])).passed
        for bad, words in ((None, "is None"), ("3", "a str"), (True, "truth value"),
                           (float("nan"), "NaN")):
            result = _check_total.judge([1, 2], bad)
            assert not result.passed and words in result.message

    def test_a_broken_check_is_reported_not_raised(self):
        @exercise("9.3", reference=_reference)
        def check_broken(fn):
            raise KeyError("oops")

        result = check_broken.judge(_reference)
        assert not result.passed and "could not judge" in result.message

    def test_student_errors_that_escape_a_check_are_the_students(self):
        @exercise("9.4", reference=_reference)
        def check_careless(fn):
            return check_value("x", fn(1), 2)

        result = check_careless.judge(lambda x: [][0])
        assert not result.passed and "your function raised IndexError" in result.message

    def test_strict_mode_raises_after_printing(self, monkeypatch, capsys):
        monkeypatch.setenv("TUTORIAL_CHECKS_STRICT", "1")
        with pytest.raises(AssertionError, match="not done"):
            _check_plus_one(lambda x: (_ for _ in ()).throw(NotImplementedError()))
        with pytest.raises(AssertionError, match="plus_one"):
            _check_plus_one(lambda x: x)

        def correct(x):
            return x + 1

        assert _check_plus_one(correct) is correct
        assert "not done" in capsys.readouterr().out

    def test_rerunning_the_check_on_the_reference_it_gave_is_still_not_done(self, capsys):
        """Run the stub's check, then the check cell again without re-running the exercise
        cell: the name now holds the reference, and that is not the student's answer."""
        def stub(x):
            raise NotImplementedError

        handed = _check_plus_one(stub)
        assert _check_plus_one(handed) is _reference
        values = _check_total([1, 2], ...)
        assert _check_total([1, 2], values) == 3
        out = capsys.readouterr().out
        assert "passed" not in out
        assert out.count("Exercise 9.1 not done") == 2 and out.count("Exercise 9.2 not done") == 2
        assert _check_plus_one.judge(_reference).passed  # judging the reference itself passes

    def test_decorator_arguments_are_checked(self):
        with pytest.raises(TypeError, match="exactly one"):
            exercise("1.1")(lambda fn: None)
        with pytest.raises(TypeError, match="no parameter"):
            exercise("1.1", reference=_reference, answers=("nope",))(lambda fn: None)
