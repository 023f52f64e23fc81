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
