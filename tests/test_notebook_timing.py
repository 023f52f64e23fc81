"""Cores that fit a 30-minute slot, by an estimate computed from each notebook (issue 21).

``tutorial_utils.course.timing`` reads a notebook (prose at 200 words a minute, code a student
reads at 10 lines a minute, a minute per table or figure, plus each exercise's stated minutes);
these tests check the estimator on notebooks whose answer is known, then hold every course
notebook to it: each part's ``(M min)`` label is its computed time rounded up, the header's core
and bonus are the sums, the core is at most 30 minutes, and the README's table says the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tutorial_utils.course import timing
from tutorial_utils.course.colab import COLAB_SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
CORE_LIMIT = 30


def words(n: int) -> str:
    return " ".join(["word"] * n)


def code_cell(source: str, text: str | None = None, figure: bool = False):
    cell = nbformat.v4.new_code_cell(source)
    if text is not None:
        cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
    if figure:
        cell.outputs.append(nbformat.v4.new_output("display_data", data={"image/png": "AA==",
                                                                         "text/plain": "<Figure>"}))
    return cell


def toy_notebook():
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# Title\n\n**Estimated time: 9 minutes core + 6 minutes bonus.**\n\n{words(92)}"),
        code_cell(COLAB_SETUP_CELL, "tutorial_utils 0.1.0\n"),       # not counted
        md(f"## 1. First (5 min)\n{words(96)}"),                       # 100 words with the opening's
        code_cell("\n".join(f"x{i} = {i}" for i in range(20)) + "\n\n", "1\n2\n3\n4\n5\n"),  # 20 lines + a table
        code_cell("plot()\nplot()\nplot()", figure=True),             # figure only: 1 min, no lines
        md("#### Exercise 1.1 · do it ⭐ 🔵🔵 · 3 min\nWrite it."),
        code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"),  # exercise: 0
        md(f"### Bonus: more (3 min)\n{words(196)}\n\n| a | b |\n| --- | --- |\n| 1 | 2 |"),
        code_cell("# NBVAL_CHECK_OUTPUT\ny = 1\nprint(y)", "1\n"),     # 2 lines (marker not counted)
        md(f"### Back in section 1\n{words(45)}"),
        md(f"## 2. Bonus: Second (3 min)\n{words(395)}"),
        md(f"## Summary\n{words(199)}"),                              # belongs to section 2
    ]
    return nb


def test_the_estimate_of_a_known_notebook():
    parts = timing.notebook_parts(toy_notebook())
    assert [(p.name, p.bonus) for p in parts] == [
        ("1. First", False), ("1. (part) Bonus: more", True), ("2. Bonus: Second", True)]
    first, more, second = parts
    # the opening (title 1 word, header 8, 92) is read with section 1 (heading 4 + 96), with the
    # exercise's heading and text (8) and the words after the bonus part (4 + 45)
    assert first.words == 101 + 100 + 8 + 49 and first.code_lines == 20
    assert (first.tables, first.figures, first.exercises) == (1, 1, {"1.1": 3})
    assert first.minutes == pytest.approx(258 / 200 + 2.0 + 1 + 1 + 3)
    assert (more.words, more.code_lines, more.tables) == (200, 2, 1)
    assert more.minutes == pytest.approx(1.0 + 0.2 + 1)
    assert second.words == 400 + 200 and second.minutes == pytest.approx(3.0)
    assert [p.rounded for p in parts] == [9, 3, 3]  # rounded up: 8.29 -> 9, 2.2 -> 3, 3.0 -> 3
    assert timing.budget(toy_notebook()) == (9, 6)
    assert timing.header_minutes(toy_notebook()) == (9, 6)


def test_rounding_is_up_and_at_least_one_minute():
    part = timing.Part(1, "t", False, 1, words=1)
    assert part.rounded == 1
    part.words = 201
    assert part.rounded == 2
    part.words = 200
    assert part.rounded == 1


def test_write_labels_rewrites_the_source(tmp_path):
    nb = toy_notebook()
    source = tmp_path / "toy.py"
    source.write_text("# ---\n# **Estimated time: 7 minutes core + 6 minutes bonus.**\n"
                      "# ## 1. First (5 min)\n# ### Bonus: more (3 min)\n"
                      "# ## 2. Bonus: Second (3 min)\n", encoding="utf-8")
    changes = timing.write_labels(source, nb)
    text = source.read_text(encoding="utf-8")
    assert "# ## 1. First (9 min)\n" in text and "# ### Bonus: more (3 min)\n" in text
    assert "**Estimated time: 9 minutes core + 6 minutes bonus.**" in text
    assert len(changes) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_each_label_states_the_computed_time(path):
    nb = nbformat.read(path, as_version=4)
    wrong = [f"{p.name}: labelled {p.label} min, computed {p.minutes:.1f} -> {p.rounded} min"
             for p in timing.notebook_parts(nb) if p.label != p.rounded]
    assert not wrong, (f"{path.name}: labels disagree with the estimate (fix the text, or run "
                       f"python -m tutorial_utils.course.timing --write-labels {path}):\n"
                       + "\n".join(wrong))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_core_fits_a_30_minute_slot(path):
    nb = nbformat.read(path, as_version=4)
    core, bonus = timing.budget(nb)
    assert core <= CORE_LIMIT, (f"{path.name}: the core takes {core} min by the estimate; move "
                                f"material into a labelled bonus part or tighten the prose:\n"
                                + timing.report(nb))
    assert timing.header_minutes(nb) == (core, bonus), f"{path.name}: header != sum of the labels"
    row = next(ln for ln in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
               if ln.startswith(f"| {path.stem[:2]} |"))
    assert f"| {core} min (+{bonus} bonus) |" in row, \
        f"README's row for {path.stem[:2]} must say '{core} min (+{bonus} bonus)'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_prose_line_is_taken_for_a_table(path):
    """A markdown line starting with '|' counts as a table: only real tables may do so."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("|"):
                block = [ln for ln in lines[max(0, i - 1):i + 2] if ln.lstrip().startswith("|")]
                assert len(block) >= 2 or re.match(r"^\s*\|.*\|\s*$", line), \
                    f"{path.name}: a prose line starts with '|': {line!r}"
