"""Conventions every course notebook follows (GUIDE.md section 4)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tutorial_utils.course.exercises import generate_all
from tutorial_utils.course.colab import COLAB_SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == COLAB_SETUP_CELL, "first code cell must be the Colab setup cell"
    assert nb.cells[0].cell_type == "markdown" and "Learning objectives" in nb.cells[0].source
    counts = [c.execution_count for c in code if c.source.strip()]
    assert None not in counts, "saved with unexecuted cells"
    assert counts == sorted(counts), "cells were run out of order"
    for c in code:
        for out in c.get("outputs", []):
            assert out.output_type != "error", f"error output saved in cell: {c.source[:60]}"
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in code for o in c.get("outputs", [])), "no saved figure"
    assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in code), \
        "no cell's numbers are checked by nbval"
    for c in code:
        if "NBVAL_SKIP" in c.source:
            assert "because" in c.source.lower(), "an NBVAL_SKIP cell must say why"


def test_student_versions_are_up_to_date():
    problems = generate_all(ROOT / "notebooks", ROOT / "notebooks" / "exercises", check=True)
    assert not problems, problems


# --- exercise labels (issue 15) and the closing section; the time budget is
# tests/test_notebook_timing.py (issue 21) -----------------------------------------------------
import re  # noqa: E402

from tutorial_utils.course import timing  # noqa: E402

SOURCES = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
EXERCISE = re.compile(r"^# #### Exercise (\d+\.\d+) · (.+?) (⭐{1,3}) (🔵{1,3}) · (\d+) min$", re.M)
OLD_EXERCISE = re.compile(r"\*\*Exercise|### Exercise \d+ \(|#### Exercise \d+ ·")
SOLUTION = re.compile(r"### BEGIN SOLUTION[^\n]*\n(.*?)### END SOLUTION", re.S)


def _exercise_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]


def _substantive(cell: str) -> bool:
    """At least three lines of real code inside the solution blocks of one exercise cell."""
    lines = [ln.strip() for block in SOLUTION.findall(cell) for ln in block.splitlines()]
    return sum(1 for ln in lines if ln and not ln.startswith("#")) >= 3


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_large_model_section_closes_the_notebook(path):
    parts = timing.notebook_parts(nbformat.read(path.with_suffix(".ipynb"), as_version=4))
    assert parts and parts[-1].bonus and not parts[-1].subpart, \
        f"{path.name}: the last timed section must be a bonus section"
    assert parts[-1].title.startswith("Now on"), f"{path.name}: the last section is the large-model bonus"
    assert f'run_section("{path.stem[:2]}", run=RUN_LARGE)' in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_exercises_follow_the_label_scheme(path):
    text = path.read_text(encoding="utf-8")
    assert not OLD_EXERCISE.search(text), f"{path.name}: an exercise heading in an old style"
    headings = EXERCISE.findall(text)
    cells = _exercise_cells(path.with_suffix(".ipynb"))
    assert len(headings) == len(cells), f"{path.name}: {len(headings)} exercise headings, {len(cells)} exercise cells"
    for cell in cells:
        assert "### HINT:" in cell, f"{path.name}: an exercise without a hint: {cell[:80]!r}"


def test_most_exercises_are_substantive():
    cells = [c for p in SOURCES for c in _exercise_cells(p.with_suffix(".ipynb"))]
    share = sum(map(_substantive, cells)) / len(cells)
    assert share >= 0.6, f"only {share:.0%} of the course's {len(cells)} exercises have students implement a method"
