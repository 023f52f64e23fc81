"""A student who solves no exercise can still follow a live session: every student notebook in
``notebooks/exercises/``, executed as generated (every exercise left as its stub), runs to its
last cell without an error, and each exercise's check says once "Exercise N not done:
continuing with the reference solution" (never "passed"), so that the cells after it run on the
reference solution (:mod:`tutorial_utils.course.answers`).

Run without ``TUTORIAL_CHECKS_STRICT`` (which makes a check raise: that is for the solution
notebooks under nbval) and with the shipped offline models.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from tutorial_utils.course.answers import CONTINUING
from tutorial_utils.course.exercises import RAISE_LINE, TOP_LEVEL_STUB_COMMENT

ROOT = Path(__file__).resolve().parents[1]
STUDENT_NOTEBOOKS = sorted((ROOT / "notebooks" / "exercises").glob("[0-9]*.ipynb"))
HEADING = re.compile(r"^#### Exercise (\d+\.\d+) ·", re.M)


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for k, v in out.get("data", {}).items() if k == "text/plain")
    return "".join(parts)


def _exercises(nb: nbformat.NotebookNode) -> list[tuple[str, int]]:
    """(label, index of its check cell) for every stubbed exercise cell, in order: the label
    from the last ``#### Exercise N ·`` heading before it, the check cell the next code cell."""
    found, label = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            labels = HEADING.findall(cell.source)
            label = labels[-1] if labels else label
            continue
        if cell.cell_type == "code" and (RAISE_LINE in cell.source
                                         or TOP_LEVEL_STUB_COMMENT in cell.source):
            check = next(j for j in range(i + 1, len(nb.cells))
                         if nb.cells[j].cell_type == "code")
            found.append((label, check))
    return found


def _exercises_of_solution(path: Path) -> list[tuple[str, str]]:
    """(heading label, check function as written, e.g. "nb00.check_induction_score") for every
    exercise cell of a solution notebook."""
    from tutorial_utils.course.exercise_cells import check_call

    nb = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not c.source.lstrip().startswith("# SOLUTION ONLY")]
    found, label = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            labels = HEADING.findall(cell.source)
            label = labels[-1] if labels else label
        elif "### BEGIN SOLUTION" in cell.source:
            following = next(c for j, c in code if j > i)
            found.append((label, check_call(following.source).function))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")),
                         ids=lambda p: p.stem)
def test_each_check_names_the_exercise_it_follows(path):
    """The check's label (what "Exercise N not done" says) is the number of the heading above
    it, and its fallback is a reference solution of the package."""
    import importlib

    from tutorial_utils.course.answers import ExerciseCheck

    for label, function in _exercises_of_solution(path):
        module, name = function.split(".")
        check = getattr(importlib.import_module(f"tutorial_utils.course.checks.{module}"), name)
        assert isinstance(check, ExerciseCheck), function
        assert check.label == label, f"{path.name}: {function} is labelled {check.label}, " \
                                     f"the heading above it says Exercise {label}"
        fallback = check.reference or check.reference_from
        assert fallback.__module__.startswith("tutorial_utils.course."), function


def test_every_notebook_has_a_student_version():
    solutions = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert [p.name for p in STUDENT_NOTEBOOKS] == solutions


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.stem)
def test_unsolved_student_notebook_runs_to_the_end(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)
    for name, value in {"TUTORIAL_MODEL": "offline", "TUTORIAL_ENCODER": "offline",
                        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
        monkeypatch.setenv(name, value)
    # the kernel imports this checkout's tutorial_utils, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(path, as_version=4)
    exercises = _exercises(nb)
    headings = HEADING.findall("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    assert [label for label, _ in exercises] == headings, "one stubbed exercise per heading"

    start = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    elapsed = time.perf_counter() - start

    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(nb.cells)
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: cells raised {errors}"
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in code), "not every cell ran"

    every_output = "".join(_text(c) for c in nb.cells)
    for label, check in exercises:
        said = f"Exercise {label} not done: {CONTINUING}"
        assert every_output.count(said) == 1, f"{path.name}: {said!r} must appear once"
        verdict = _text(nb.cells[check])
        assert said in verdict, f"{path.name}: the check of Exercise {label} did not say so"
        assert "passed" not in verdict, f"{path.name}: a check passed a stub: {verdict!r}"
    assert "❌" not in every_output, f"{path.name}: a check failed on the reference solution"
    print(f"{path.name}: {len(exercises)} exercises not done, ran to the end in {elapsed:.0f} s")


LABEL = re.compile(r"^# #### Exercise (\d+\.\d+) · .+? (⭐{1,3}) 🔵{1,3} · \d+ min$", re.M)
SOLUTION = re.compile(r"### BEGIN SOLUTION[^\n]*\n(.*?)### END SOLUTION", re.S)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_difficulty_labels_match_the_solution_size(path):
    """A one-line solution is ⭐ and one of up to three lines at most ⭐⭐ (issue 21: a one-liner
    was labelled ⭐⭐, a two-liner ⭐⭐⭐)."""
    text = path.read_text(encoding="utf-8")
    labels = LABEL.findall(text)
    cells = [c.source for c in nbformat.read(path.with_suffix(".ipynb"), as_version=4).cells
             if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    assert len(labels) == len(cells)
    for (number, stars), cell in zip(labels, cells):
        lines = sum(1 for block in SOLUTION.findall(cell) for ln in block.splitlines()
                    if ln.strip() and not ln.strip().startswith("#"))
        most = 1 if lines <= 1 else 2 if lines <= 3 else 3
        assert len(stars) <= most, f"{path.name}: Exercise {number} is {lines} lines of code, " \
                                   f"labelled {stars}"
