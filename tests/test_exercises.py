"""Tests for the student-notebook generator ``tutorial_utils.course.exercises``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from tutorial_utils.course.exercises import (RAISE_LINE, TOP_LEVEL_STUB_COMMENT, generate_all, main,
                                             make_student_notebook, render_notebook)

EXERCISE_SOURCE = """\
import math

def softmax(x):
    ### HINT: subtract the max before exponentiating
    ### BEGIN SOLUTION
    m = max(x)
    exps = [math.exp(v - m) for v in x]
    ### END SOLUTION
    total = sum(exps)
    ### BEGIN SOLUTION
    return [e / total for e in exps]
    ### END SOLUTION

### HINT: the outputs sum to `1`
"""

TOP_LEVEL_SOURCE = """\
values = [1.0, 2.0]
### BEGIN SOLUTION
answer = sum(values)
### END SOLUTION
"""

SOFTMAX_CHECK = "softmax = checks.check_softmax(softmax)"
ANSWER_CHECK = "answer = checks.check_answer(answer, values)\nprint(answer)"


def _solution_notebook() -> nbformat.NotebookNode:
    nb = v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    plain = v4.new_code_cell("print('hello')", execution_count=3)
    plain.outputs = [v4.new_output("stream", name="stdout", text="hello\n")]
    plain.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    exercise = v4.new_code_cell(EXERCISE_SOURCE, execution_count=4)
    exercise.outputs = [v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=4)]
    nb.cells = [
        v4.new_markdown_cell("# Softmax\n\nLearning objectives: ...\n\n#### Exercise 1.1 · softmax"),
        exercise,
        v4.new_code_cell("# SOLUTION ONLY\nassert softmax([0.0]) == [1.0]"),
        v4.new_code_cell(SOFTMAX_CHECK),
        plain,
        v4.new_markdown_cell("#### Exercise 1.2 · a sum"),
        v4.new_code_cell(TOP_LEVEL_SOURCE),
        v4.new_code_cell(ANSWER_CHECK),
    ]
    return nb


def _sources(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells]


def test_header_and_cell_layout() -> None:
    student = make_student_notebook(_solution_notebook(), "01_softmax.ipynb")
    types = [cell.cell_type for cell in student.cells]
    # header, markdown, exercise, help, check (SOLUTION ONLY dropped), plain, markdown,
    # top-level exercise, help, check
    assert types == ["markdown", "markdown", "code", "markdown", "code", "code", "markdown", "code",
                     "markdown", "code"]
    assert student.cells[0].source == (
        "Student version generated from `notebooks/01_softmax.ipynb` by "
        "`python -m tutorial_utils.course.exercises`; do not edit by hand."
    )
    assert not any("SOLUTION ONLY" in src for src in _sources(student))
    assert student.metadata["kernelspec"]["name"] == "python3"


def test_exercise_cell_is_stubbed_with_correct_indentation() -> None:
    student = make_student_notebook(_solution_notebook(), "01_softmax.ipynb")
    code = student.cells[2].source
    lines = code.splitlines()
    assert lines == [
        "import math",
        "",
        "def softmax(x):",
        f"    {RAISE_LINE}",
        "    total = sum(exps)",
        f"    {RAISE_LINE}",
    ]
    assert "###" not in code
    assert "math.exp" not in code and "e / total" not in code
    compile(code, "<student cell>", "exec")
    namespace: dict = {}
    exec(code, namespace)
    with pytest.raises(NotImplementedError, match="Exercise: fill in this part"):
        namespace["softmax"]([1.0, 2.0])


def test_top_level_block_is_stubbed() -> None:
    student = make_student_notebook(_solution_notebook(), "01_softmax.ipynb")
    code = student.cells[7].source
    assert code.splitlines() == ["values = [1.0, 2.0]", f"answer = ...  {TOP_LEVEL_STUB_COMMENT}"]
    namespace: dict = {}
    exec(code, namespace)  # runs: the stub is a value, not a raise
    assert namespace["answer"] is Ellipsis


def test_hints_and_solution_follow_exercise() -> None:
    student = make_student_notebook(_solution_notebook(), "01_softmax.ipynb")
    help_md = student.cells[3].source
    hint1 = "<details><summary>💡 Hint</summary>\n\nsubtract the max before exponentiating\n\n</details>"
    hint2 = "<details><summary>💡 Hint</summary>\n\nthe outputs sum to `1`\n\n</details>"
    assert help_md.index(hint1) < help_md.index(hint2) < help_md.index("<details><summary>✅ Solution</summary>")
    solution = help_md.split("```python\n", 1)[1].split("\n```", 1)[0]
    # The full original cell minus every marker line, and it runs.
    expected = "\n".join(line for line in EXERCISE_SOURCE.splitlines() if not line.lstrip().startswith("###"))
    assert solution == expected.strip("\n")
    namespace: dict = {}
    exec(solution, namespace)
    assert namespace["softmax"]([0.0, 0.0]) == [0.5, 0.5]
    # A cell without hints still gets the solution block, and no hint block.
    top_help = student.cells[8].source
    assert "Hint" not in top_help and "answer = sum(values)" in top_help


def test_outputs_cleared_and_input_untouched() -> None:
    nb = _solution_notebook()
    before = json.dumps(nb, sort_keys=True)
    student = make_student_notebook(nb, "01_softmax.ipynb")
    assert json.dumps(nb, sort_keys=True) == before, "make_student_notebook must not modify its input"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
            assert "execution" not in cell.metadata
    plain = student.cells[5]
    assert plain.source == "print('hello')"
    nbformat.validate(student)


def test_deterministic_and_idempotent() -> None:
    nb = _solution_notebook()
    first = render_notebook(make_student_notebook(nb, "01_softmax.ipynb"))
    reread = nbformat.reads(nbformat.writes(nb), as_version=4)
    second = render_notebook(make_student_notebook(reread, "01_softmax.ipynb"))
    assert first == second
    assert first.endswith("\n")
    ids = [cell["id"] for cell in json.loads(first)["cells"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "no matching '### END SOLUTION'"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "cannot nest"),
        ("### HINT: stray\nx = 1\n", "without a '### BEGIN SOLUTION'"),
    ],
)
def test_unmatched_markers_raise_naming_cell(source: str, fragment: str) -> None:
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("intro"), v4.new_code_cell("x = 0"), v4.new_code_cell(source)]
    with pytest.raises(ValueError, match="broken.ipynb: cell 2") as info:
        make_student_notebook(nb, "broken.ipynb")
    assert fragment in str(info.value)


def _write(path: Path, nb: nbformat.NotebookNode) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_generate_all_check_reports_stale_then_passes(tmp_path: Path) -> None:
    notebooks, out = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    _write(notebooks / "01_softmax.ipynb", _solution_notebook())
    _write(notebooks / "_scratch.ipynb", v4.new_notebook())  # skipped: leading underscore

    problems = generate_all(notebooks, out, check=True)
    assert problems == [f"{out / '01_softmax.ipynb'}: missing"]

    written = generate_all(notebooks, out, check=False)
    assert written == [str(out / "01_softmax.ipynb")]
    assert sorted(p.name for p in out.iterdir()) == ["01_softmax.ipynb"]
    assert generate_all(notebooks, out, check=True) == []
    assert generate_all(notebooks, out, check=False) == []  # nothing changed, nothing rewritten

    # Edit the solution: the student version is now stale.
    nb = _solution_notebook()
    nb.cells[0].source = "# Softmax (revised)"
    _write(notebooks / "01_softmax.ipynb", nb)
    assert generate_all(notebooks, out, check=True) == [f"{out / '01_softmax.ipynb'}: out of date"]
    generate_all(notebooks, out, check=False)
    assert generate_all(notebooks, out, check=True) == []
    on_disk = nbformat.read(out / "01_softmax.ipynb", as_version=4)
    assert on_disk.cells[1].source == "# Softmax (revised)"


def test_generate_all_reports_marker_errors_and_orphans(tmp_path: Path) -> None:
    notebooks, out = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    bad = v4.new_notebook()
    bad.cells = [v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n")]
    _write(notebooks / "02_bad.ipynb", bad)
    _write(out / "99_orphan.ipynb", v4.new_notebook())

    problems = generate_all(notebooks, out, check=True)
    assert any("02_bad.ipynb: cell 0" in p for p in problems)
    assert any("99_orphan.ipynb: no solution notebook" in p for p in problems)
    with pytest.raises(ValueError, match="02_bad.ipynb: cell 0"):
        generate_all(notebooks, out, check=False)
    assert not (out / "02_bad.ipynb").exists()


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebooks = tmp_path / "notebooks"
    _write(notebooks / "01_softmax.ipynb", _solution_notebook())
    args = ["--notebooks-dir", str(notebooks)]
    assert main([*args, "--check"]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("OK")


# --- the exercise / check-cell contract -------------------------------------------------------

def _two_cells(exercise: str, check: str | None) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("#### Exercise 1.1 · x"), v4.new_code_cell(exercise)]
    if check is not None:
        nb.cells.append(v4.new_code_cell(check))
    return nb


FUNCTION_EXERCISE = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"


@pytest.mark.parametrize(("exercise", "check", "fragment"), [
    (FUNCTION_EXERCISE, None, "must be followed by its check cell"),
    (FUNCTION_EXERCISE, "checks.check_f(f)", "must rebind the exercise's answer"),
    (FUNCTION_EXERCISE, "print(f(1))", "`f = nbXX.check_f(f, ...)`"),
    (FUNCTION_EXERCISE, "g = checks.check_f(f)", "`f` holds a solution but its check"),
    (FUNCTION_EXERCISE, "f, g = checks.check_f(f, g)", "does not define inside a solution block"),
    (FUNCTION_EXERCISE, "f = checks.check_f(lambda x: f(x))", "pass `f`"),
    (FUNCTION_EXERCISE + "print(f(1))\n", "f = checks.check_f(f)", "uses `f` outside its solution"),
    ("### BEGIN SOLUTION\nanswer = 2\n### END SOLUTION\nprint(answer)\n",
     "answer = checks.check_a(answer)", "uses `answer` outside its solution"),
    ("### BEGIN SOLUTION\nkept = 3\nanswer = kept\n### END SOLUTION\nprint(kept)\n",
     "answer = checks.check_a(answer)", "uses `kept` outside its solution"),
    ("### BEGIN SOLUTION\nother = 2\n### END SOLUTION\n", "answer = checks.check_a(answer)",
     "binds none of the names its check cell rebinds"),
    ("for i in range(3):\n    ### BEGIN SOLUTION\n    x = i\n    ### END SOLUTION\n",
     "x = checks.check_x(x)", "indented but not inside a function"),
])
def test_exercise_and_check_cells_must_follow_the_contract(exercise, check, fragment):
    with pytest.raises(ValueError, match="c.ipynb: cell 1") as info:
        make_student_notebook(_two_cells(exercise, check), "c.ipynb")
    assert fragment in str(info.value)


def test_contract_accepts_several_answers_and_solution_only_cells_in_between():
    nb = _two_cells("### BEGIN SOLUTION\nkept = [1, 2]\nnodes = kept\nscore = 0.5\n"
                    "### END SOLUTION\n", "nodes, score = checks.check_c(model, nodes, score)")
    nb.cells.insert(2, v4.new_code_cell("# SOLUTION ONLY\nassert score == 0.5"))
    student = make_student_notebook(nb, "c.ipynb")
    assert student.cells[2].source.splitlines() == [f"nodes = ...  {TOP_LEVEL_STUB_COMMENT}",
                                                    f"score = ...  {TOP_LEVEL_STUB_COMMENT}"]


def _run_student(student: nbformat.NotebookNode, namespace: dict) -> list[str]:
    """Execute the student version's code cells in order; return what was printed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in student.cells:
            if cell.cell_type == "code":
                exec(cell.source, namespace)
    return out.getvalue().splitlines()


def test_unsolved_student_version_runs_on_the_references(monkeypatch):
    """The generator's stubs and the checks' fallback together: with nothing solved the
    student version runs to its end, each exercise says "not done" once, and later cells get
    the reference solutions; in the solution notebook the answers pass and are used as written."""
    import math
    from types import SimpleNamespace

    from tutorial_utils.course.answers import exercise
    from tutorial_utils.course.grading import CheckResult, compare_to_reference

    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)

    def reference_softmax(x):
        exps = [math.exp(v - max(x)) for v in x]
        return [e / sum(exps) for e in exps]

    @exercise("1.1", reference=reference_softmax)
    def check_softmax(fn):
        return compare_to_reference("softmax", fn, reference_softmax,
                                    lambda g: ([float(v) for v in range(4)],))

    @exercise("1.2", reference_from=lambda values: sum(values))
    def check_answer(answer, values):
        return CheckResult("answer", answer == sum(values), "the sum")

    checks = SimpleNamespace(check_softmax=check_softmax, check_answer=check_answer)
    namespace = {"checks": checks}
    printed = _run_student(make_student_notebook(_solution_notebook(), "01_softmax.ipynb"),
                           namespace)
    assert printed == ["⏭ Exercise 1.1 not done: continuing with the reference solution.",
                       "hello",
                       "⏭ Exercise 1.2 not done: continuing with the reference solution.",
                       "3.0"]
    assert namespace["softmax"] is reference_softmax and namespace["answer"] == 3.0

    solution = _solution_notebook()
    solution.cells = [c for c in solution.cells
                      if c.cell_type == "code" and "SOLUTION ONLY" not in c.source]
    namespace = {"checks": checks}
    printed = _run_student(solution, namespace)
    assert printed[0].startswith("✅ softmax: passed") and printed[2] == "✅ answer: passed (the sum)"
    assert namespace["softmax"] is not reference_softmax and printed[-1] == "3.0"


def test_cli_refuses_a_missing_or_empty_notebooks_folder(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["--notebooks-dir", str(missing)]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["--notebooks-dir", str(missing), "--check"]) == 1
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--notebooks-dir", str(tmp_path / "empty"), "--check"]) == 1
    assert "no solution notebook" in capsys.readouterr().err
