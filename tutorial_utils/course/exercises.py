"""Generate student versions of the solution notebooks.

An instructor edits a notebook's text in its paired jupytext percent-format source
``notebooks/NAME.py`` and runs ``jupytext --to ipynb --update notebooks/NAME.py``, which
updates the solution notebook ``notebooks/NAME.ipynb`` while keeping its saved outputs (see README,
"Editing a notebook"); ``tests/test_notebook_sources.py`` fails when a pair is out of sync.
The solution notebooks are executed, saved with outputs and run by nbval. This module
derives the student versions ``notebooks/exercises/<same name>.ipynb`` from the solution
notebooks::

    python -m tutorial_utils.course.exercises           # (re)write the student notebooks
    python -m tutorial_utils.course.exercises --check   # CI: fail if any is missing or stale

Marker contract (what notebook authors write)
---------------------------------------------
An exercise is two code cells of the solution notebook: the **exercise cell** and, as the
next code cell (``# SOLUTION ONLY`` cells in between are skipped), its **check cell**. The
student version, executed with no exercise solved, must run to its last cell: each check says
"Exercise N not done: continuing with the reference solution" once and later cells run on the
reference (:mod:`tutorial_utils.course.answers`). So::

    def induction_score(patterns, seq_len):          # exercise cell
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    induction_score = nb00.check_induction_score(induction_score)   # check cell

    ### BEGIN SOLUTION                                # exercise cell, top level
    sva_circuit = ...
    sva_faith = ...
    ### END SOLUTION

    sva_circuit, sva_faith = nb03.check_sva_faithfulness(model, sva, sva_circuit, sva_faith)

Markers are comment lines on their own line in a *code* cell. Because they are plain
comments, the solution notebook runs unchanged.

``### BEGIN SOLUTION`` / ``### END SOLUTION``
    A code cell containing at least one such pair is an *exercise cell*. A cell
    may contain several pairs; pairs may not nest. In the student version the
    marker lines and every line between them are removed and replaced by:

    * inside a function: one line ``raise NotImplementedError("Exercise: fill in this
      part")`` (:data:`RAISE_LINE`) indented like the first non-blank removed line (or
      like the ``BEGIN`` marker if the block is empty);
    * at top level (the ``BEGIN`` marker in column 0): one line ``name = ...  # Exercise:
      replace ... with your answer`` for each answer (below) the block binds, in the
      check's order; a top-level block that binds no answer is an error.

    A block that is indented but not inside a function is an error. Text after the
    marker on the same line (``### BEGIN SOLUTION  (part a)``) is allowed and ignored.

The check cell
    Its first top-level statement of the form ``a = x.check_y(...)`` or
    ``a, b = x.check_y(...)`` (plain names as targets) names the exercise's *answers*:
    the targets, which the check's :class:`~tutorial_utils.course.answers.ExerciseCheck`
    returns (the answer when it passes, else the reference). It must hold that

    * every top-level function of the exercise cell that holds a solution block is a
      target, and every target is such a function or a name a top-level block binds;
    * every target is passed to the check (it judges what it returns);
    * the student version of the exercise cell reads no answer and no name a top-level
      block binds, outside function bodies (they are stubs until the check has run:
      print them in the check cell or after it).

    A violation is an error naming the cell. (An exercise cell that does not parse as
    Python, e.g. one with IPython magics, is stubbed without these checks.)

``### HINT: text``
    Allowed anywhere in an exercise cell (inside or outside a solution block).
    Hint lines are removed from the student code. Right after the exercise cell
    the student version gets one markdown cell holding, in order, one
    ``<details><summary>💡 Hint</summary>`` block per hint, then a
    ``<details><summary>✅ Solution</summary>`` block with the whole original cell
    (all ``###`` marker lines stripped) in a ``python`` code fence. The solution
    block is added even when the cell has no hints. A hint in a cell without a
    solution block is an error (it usually means a forgotten ``BEGIN``).

``# SOLUTION ONLY``
    A cell (of any type) whose source starts with this line is dropped from the
    student version, e.g. instructor notes or cells that assert on the reference.

Everything else is copied as is. In the student version all code-cell outputs are
cleared and execution counts set to ``None`` (the ``execution`` timing metadata is
dropped too), the notebook metadata is kept, and a markdown cell is prepended
saying the file is generated and must not be edited by hand.

An unmatched ``BEGIN``/``END`` (or a stray ``HINT``), or a break of the check-cell
contract, raises :class:`~tutorial_utils.errors.TutorialError` (a ``ValueError``)
naming the notebook and the cell index (0-based, in the solution notebook). If an
exercise cell compiled as Python before the transformation but not after, that is
also an error. ``--notebooks-dir`` must be a folder holding solution notebooks.

Output is deterministic: the same solution notebook always gives byte-identical
JSON (nbformat's layout, ``indent=1``, sorted keys, trailing newline; cell ids of
inserted cells are derived from the notebook name and cell index), which is what
``--check`` relies on. Files under the output folder and files whose name starts
with ``_`` are not treated as solution notebooks.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from . import exercise_cells as _cells
from ..errors import TutorialError
from ..paths import REPO_ROOT

__all__ = [
    "RAISE_LINE",
    "TOP_LEVEL_STUB_COMMENT",
    "SOLUTION_ONLY_MARKER",
    "make_student_notebook",
    "generate_all",
    "read_notebook",
    "render_notebook",
    "main",
]

RAISE_LINE = 'raise NotImplementedError("Exercise: fill in this part")'
TOP_LEVEL_STUB_COMMENT = "# Exercise: replace ... with your answer"
SOLUTION_ONLY_MARKER = "# SOLUTION ONLY"

_BEGIN_RE = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\b")
_END_RE = re.compile(r"^\s*### END SOLUTION\b")
_HINT_RE = re.compile(r"^\s*### HINT:[ \t]?(?P<text>.*?)\s*$")

_HEADER_TEMPLATE = (
    "Student version generated from `notebooks/{name}` by "
    "`python -m tutorial_utils.course.exercises`; do not edit by hand."
)


@dataclass
class _ExerciseCell:
    """Result of transforming one exercise cell."""

    student_source: str
    solution_source: str
    hints: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)     # top-level defs holding a block
    stubbed: list[str] = field(default_factory=list)       # answers stubbed by `name = ...`
    top_level_names: set[str] = field(default_factory=set)  # every name top-level blocks bind


def _source_text(source: str | list[str]) -> str:
    """Return a cell source as one string (nbformat allows a list of lines)."""
    return "".join(source) if isinstance(source, list) else source


def _indent_of(line: str) -> str:
    """Leading whitespace of ``line``."""
    return line[: len(line) - len(line.lstrip())]


def _is_marker(line: str) -> bool:
    """Whether ``line`` is one of the ``###`` marker lines."""
    return bool(_BEGIN_RE.match(line) or _END_RE.match(line) or _HINT_RE.match(line))


def _has_markers(source: str) -> bool:
    """Whether any line of ``source`` is a marker line."""
    return any(_is_marker(line) for line in source.splitlines())


def _where(source_name: str, cell_index: int) -> str:
    return f"{source_name}: cell {cell_index}"


_END = "\0end of a solution block"  # a sentinel item (compared by identity)


@dataclass
class _Block:
    """One ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of an exercise cell."""

    begin: int          # 1-based line number of the BEGIN marker
    indent: str         # the BEGIN marker's indentation
    removed: list[str]  # the solution lines between the markers
    top_level: bool = False


def _parse_blocks(source: str, source_name: str, cell_index: int
                  ) -> tuple[list[tuple[str, _Block | None]], list[_Block], list[str]] | None:
    """Split a cell into items, its blocks and its hints; ``None`` when the cell has no marker
    at all. An item is ``(line, None)`` for a line outside the blocks, ``(line, block)`` for a
    solution line and ``(END, block)`` where a block closes. Raises :class:`TutorialError` on
    unmatched or nested markers and on hints without a solution block."""
    lines = source.splitlines()
    if not any(_is_marker(line) for line in lines):
        return None
    items: list[tuple[str, _Block | None]] = []
    blocks: list[_Block] = []
    hints: list[str] = []
    block: _Block | None = None
    for lineno, line in enumerate(lines, start=1):
        hint = _HINT_RE.match(line)
        if hint:
            hints.append(hint.group("text"))
            continue
        begin = _BEGIN_RE.match(line)
        if begin:
            if block is not None:
                raise TutorialError(
                    f"{_where(source_name, cell_index)}: '### BEGIN SOLUTION' on line {lineno} "
                    f"inside the block opened on line {block.begin} (blocks cannot nest; "
                    "missing '### END SOLUTION'?)"
                )
            block = _Block(lineno, begin.group("indent"), [])
            continue
        if _END_RE.match(line):
            if block is None:
                raise TutorialError(
                    f"{_where(source_name, cell_index)}: '### END SOLUTION' on line {lineno} "
                    "without a matching '### BEGIN SOLUTION'"
                )
            blocks.append(block)
            items.append((_END, block))
            block = None
            continue
        if block is not None:
            block.removed.append(line)
        items.append((line, None) if block is None else (line, block))
    if block is not None:
        raise TutorialError(
            f"{_where(source_name, cell_index)}: '### BEGIN SOLUTION' on line {block.begin} "
            "has no matching '### END SOLUTION'"
        )
    if not blocks:
        raise TutorialError(
            f"{_where(source_name, cell_index)}: '### HINT:' line in a cell without a "
            "'### BEGIN SOLUTION' / '### END SOLUTION' block"
        )
    return items, blocks, hints


def _transform_exercise_cell(source: str, source_name: str, cell_index: int,
                             answers: tuple[str, ...] = ()) -> _ExerciseCell | None:
    """Split an exercise cell into its student code, its solution code and its hints.

    A block inside a function becomes :data:`RAISE_LINE`; a top-level block becomes one
    ``name = ...`` line for each of ``answers`` (the names the check cell rebinds) that it
    binds. Returns ``None`` when the cell contains no markers at all (not an exercise).
    Raises :class:`TutorialError` on unmatched or nested markers, hints outside an exercise
    cell, an indented block outside a function, or a top-level block that binds no answer.
    """
    parsed = _parse_blocks(source, source_name, cell_index)
    if parsed is None:
        return None
    items, blocks, hints = parsed
    where = _where(source_name, cell_index)
    functions = _cells.functions_by_line(source)
    exercise = _ExerciseCell("", "", hints)
    for block in blocks:
        block.top_level = block.indent == ""
        if block.top_level:
            continue
        if functions is not None:
            if block.begin not in functions:
                raise TutorialError(f"{where}: the solution block on line {block.begin} is "
                                    "indented but not inside a function: put it at top level "
                                    "or in a `def`")
            if functions[block.begin] not in exercise.functions:
                exercise.functions.append(functions[block.begin])
    student: list[str] = []
    solution: list[str] = []
    for line, block in items:
        if line is not _END:
            solution.append(line)
            if block is None:
                student.append(line)
            continue
        assert block is not None
        if not block.top_level:
            non_blank = [r for r in block.removed if r.strip()]
            indent = _indent_of(non_blank[0]) if non_blank else block.indent
            student.append(indent + RAISE_LINE)
            continue
        bound = _cells.bound_names("\n".join(block.removed))
        exercise.top_level_names.update(bound)
        names = [n for n in answers if n in bound and n not in exercise.stubbed]
        if not names:
            raise TutorialError(f"{where}: the top-level solution block on line {block.begin} "
                                f"binds none of the names its check cell rebinds "
                                f"({', '.join(answers) or 'none'}): the student version would "
                                "leave the answer undefined")
        exercise.stubbed.extend(names)
        student.extend(f"{name} = ...  {TOP_LEVEL_STUB_COMMENT}" for name in names)
    exercise.student_source = "\n".join(student).rstrip()
    exercise.solution_source = "\n".join(solution).strip("\n")
    return exercise


def _compiles(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec")
    except SyntaxError:
        return False
    return True


def _code_fence(code: str) -> str:
    """A backtick fence longer than any backtick run inside ``code``."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def _help_markdown(exercise: _ExerciseCell) -> str:
    """Markdown with one ``<details>`` block per hint and one with the solution."""
    parts = [f"<details><summary>💡 Hint</summary>\n\n{hint}\n\n</details>" for hint in exercise.hints]
    fence = _code_fence(exercise.solution_source)
    parts.append(
        "<details><summary>✅ Solution</summary>\n\n"
        f"{fence}python\n{exercise.solution_source}\n{fence}\n\n</details>"
    )
    return "\n\n".join(parts)


def _uses_cell_ids(nb: nbformat.NotebookNode) -> bool:
    """Cell ids are part of the format from nbformat 4.5 on."""
    return (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)


def _derived_id(source_name: str, key: str) -> str:
    """A deterministic, valid cell id for a generated cell."""
    digest = hashlib.sha1(f"{Path(source_name).name}\0{key}".encode()).hexdigest()
    return f"gen-{digest[:16]}"


def _clean_cell(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Copy of ``cell`` with outputs, execution count and timing metadata removed."""
    cell = copy.deepcopy(cell)
    cell["source"] = _source_text(cell.get("source", ""))
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    cell.get("metadata", {}).pop("execution", None)
    return cell


def make_student_notebook(nb: nbformat.NotebookNode, source_name: str) -> nbformat.NotebookNode:
    """Return the student version of the solution notebook ``nb`` (``nb`` is not modified).

    Args:
        nb: the solution notebook (nbformat v4).
        source_name: file name of the solution notebook, e.g. ``"04_patching.ipynb"``;
            used in the generated header (as ``notebooks/<file name>``), in error
            messages and to derive deterministic ids for inserted cells.

    Returns:
        A new notebook: exercise cells stubbed, a hint/solution markdown cell after
        each one, ``# SOLUTION ONLY`` cells dropped, outputs cleared, a "generated,
        do not edit" markdown cell first. See the module docstring for the contract.

    Raises:
        ValueError: unmatched or nested ``BEGIN``/``END`` markers, a ``HINT`` in a
            cell without a solution block, or an exercise cell that no longer
            compiles after stubbing; the message names ``source_name`` and the cell
            index.
    """
    with_ids = _uses_cell_ids(nb)
    student = copy.deepcopy(nb)
    cells: list[nbformat.NotebookNode] = []

    header = nbformat.v4.new_markdown_cell(_HEADER_TEMPLATE.format(name=Path(source_name).name))
    _set_id(header, _derived_id(source_name, "header"), with_ids)
    cells.append(header)

    kept = [(index, original, _source_text(original.get("source", "")))
            for index, original in enumerate(nb.cells)
            if not _source_text(original.get("source", "")).lstrip().startswith(SOLUTION_ONLY_MARKER)]
    code_after = {}  # index of a kept code cell -> the next kept code cell's source
    previous = None
    for index, original, source in kept:
        if original.get("cell_type") == "code":
            if previous is not None:
                code_after[previous] = (index, source)
            previous = index

    for index, original, source in kept:
        cell = _clean_cell(original)
        if with_ids and not cell.get("id"):
            cell["id"] = _derived_id(source_name, f"cell-{index}")
        if cell.get("cell_type") != "code":
            cells.append(cell)
            continue
        if not _has_markers(source):
            cells.append(cell)
            continue
        _parse_blocks(source, source_name, index)  # marker errors first
        check = _check_cell_of(source, code_after.get(index), source_name, index)
        exercise = _transform_exercise_cell(source, source_name, index,
                                            check.targets if check else ())
        assert exercise is not None
        if _compiles(source) and not _compiles(exercise.student_source):
            raise TutorialError(
                f"{_where(source_name, index)}: the student version of this exercise cell "
                "is not valid Python; move the solution markers so whole statements are removed"
            )
        if check is not None:
            _check_contract(exercise, check, source_name, index)
        cell["source"] = exercise.student_source
        cells.append(cell)
        help_cell = nbformat.v4.new_markdown_cell(_help_markdown(exercise))
        _set_id(help_cell, _derived_id(source_name, f"help-{index}"), with_ids)
        cells.append(help_cell)

    student.cells = cells
    return student


def _check_cell_of(source: str, following: tuple[int, str] | None, source_name: str,
                   index: int) -> _cells.CheckCall | None:
    """The check statement of the code cell after exercise cell ``index``; a
    :class:`TutorialError` when there is none. ``None`` only when the exercise cell itself does
    not parse as Python (IPython syntax), where the contract cannot be read."""
    if _cells.functions_by_line(source) is None:
        return None
    where = _where(source_name, index)
    if following is None:
        raise TutorialError(f"{where}: an exercise cell must be followed by its check cell, "
                            "`answer = nbXX.check_answer(answer, ...)`; there is no code cell "
                            "after it")
    check_index, check_source = following
    check = _cells.check_call(check_source)
    if check is None:
        defs = sorted(set((_cells.functions_by_line(source) or {}).values()))
        answer = defs[0] if defs else "answer"
        raise TutorialError(f"{where}: the code cell after an exercise (cell {check_index}) "
                            "must rebind the exercise's answer to what its check returns, e.g. "
                            f"`{answer} = nbXX.check_{answer}({answer}, ...)`, so that later "
                            "cells run on the reference solution when the exercise is not done")
    return check


def _check_contract(exercise: _ExerciseCell, check: _cells.CheckCall, source_name: str,
                    index: int) -> None:
    """The exercise cell and its check agree: the check rebinds every function that holds a
    solution and every stubbed top-level answer, passes each answer to the check, and the
    student version of the exercise cell never reads an answer (a stub there)."""
    where = _where(source_name, index)
    answers = set(exercise.functions) | set(exercise.stubbed)
    missing = [f for f in exercise.functions if f not in check.targets]
    if missing:
        raise TutorialError(f"{where}: `{missing[0]}` holds a solution but its check "
                            f"`{check.function}(...)` does not rebind it: write "
                            f"`{missing[0]} = {check.function}({missing[0]}, ...)`")
    extra = [t for t in check.targets if t not in answers]
    if extra:
        raise TutorialError(f"{where}: the check rebinds `{extra[0]}`, which the exercise cell "
                            "does not define inside a solution block")
    not_passed = [t for t in check.targets if t not in check.arguments]
    if not_passed:
        raise TutorialError(f"{where}: the check must be given the answer it judges: pass "
                            f"`{not_passed[0]}` to `{check.function}(...)`")
    read = _cells.names_used_at_top_level(exercise.student_source) & (
        answers | exercise.top_level_names)
    if read:
        raise TutorialError(f"{where}: the exercise cell uses `{sorted(read)[0]}` outside its "
                            "solution; in the student version that is a stub. Move that code "
                            "after the check cell")


def _set_id(cell: nbformat.NotebookNode, cell_id: str, with_ids: bool) -> None:
    """Give a new cell a deterministic id, or none for notebooks older than 4.5."""
    if with_ids:
        cell["id"] = cell_id
    else:
        cell.pop("id", None)


def render_notebook(nb: nbformat.NotebookNode) -> str:
    """Serialise ``nb`` exactly as written to disk (nbformat JSON, indent 1, trailing newline)."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def _solution_notebooks(notebooks_dir: Path, out_dir: Path) -> list[Path]:
    """Solution notebooks directly in ``notebooks_dir``, sorted by name."""
    out_resolved = out_dir.resolve()
    found = []
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        if path.name.startswith("_"):
            continue
        if out_resolved == path.resolve().parent or out_resolved in path.resolve().parents:
            continue
        found.append(path)
    return found


def read_notebook(path: Path) -> Any:
    """The notebook at ``path``, or a :class:`TutorialError` naming the file when it is not a
    readable notebook (truncated or hand-edited JSON, not nbformat 4)."""
    try:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - json, nbformat and OS errors alike
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TutorialError(f"{path}: not a readable notebook ({reason}); restore it with "
                            f"`git checkout -- {path.name}` or re-create it from its paired source "
                            f"with `jupytext --to ipynb {path.with_suffix('.py').name}` and "
                            "re-execute it") from None
    if not isinstance(nb.get("cells"), list):
        raise TutorialError(f"{path}: not a notebook (no list of cells)")
    return nb


def generate_all(notebooks_dir: Path, out_dir: Path, check: bool) -> list[str]:
    """Generate (or, with ``check``, verify) the student notebook of every solution notebook.

    Args:
        notebooks_dir: folder holding the solution notebooks (``*.ipynb``, not recursive;
            names starting with ``_`` and anything inside ``out_dir`` are skipped).
        out_dir: folder for the student notebooks (same file names).
        check: if true, write nothing and report problems instead.

    Returns:
        With ``check=False``: the paths of the student notebooks written (only those
        whose content changed). With ``check=True``: one human-readable line per
        problem (a student notebook missing or out of date, one with no solution
        notebook, or a solution notebook with marker errors); empty means all up to
        date.

    Raises:
        ValueError: (a :class:`TutorialError`) ``notebooks_dir`` is not a folder or holds no
            solution notebook; with ``check=False``, any solution notebook has marker or
            contract errors (raised before anything is written).
    """
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
    if not notebooks_dir.is_dir():
        raise TutorialError(f"--notebooks-dir {notebooks_dir}: no such folder; give the folder "
                            "that holds the solution notebooks (default: notebooks/ of the "
                            "repository)")
    if not _solution_notebooks(notebooks_dir, out_dir):
        raise TutorialError(f"--notebooks-dir {notebooks_dir}: no solution notebook (*.ipynb) in "
                            "this folder; give the folder that holds them")
    problems: list[str] = []
    rendered: dict[Path, str] = {}
    for path in _solution_notebooks(notebooks_dir, out_dir):
        try:
            nb = read_notebook(path)
            rendered[out_dir / path.name] = render_notebook(make_student_notebook(nb, path.name))
        except ValueError as error:
            if not check:
                raise
            problems.append(f"{path}: {error}")

    if check:
        for target, text in rendered.items():
            if not target.exists():
                problems.append(f"{target}: missing")
            elif target.read_text(encoding="utf-8") != text:
                problems.append(f"{target}: out of date")
        expected_names = {p.name for p in _solution_notebooks(notebooks_dir, out_dir)}
        if out_dir.is_dir():
            for orphan in sorted(out_dir.glob("*.ipynb")):
                if orphan.name not in expected_names:
                    problems.append(f"{orphan}: no solution notebook {notebooks_dir / orphan.name}")
        return problems

    written = []
    for target, text in rendered.items():
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
        written.append(str(target))
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    repo_root = REPO_ROOT
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils.course.exercises",
        description="Generate student notebooks from the solution notebooks.",
    )
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 if anything is stale")
    parser.add_argument("--notebooks-dir", type=Path, default=repo_root / "notebooks")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: <notebooks-dir>/exercises")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else args.notebooks_dir / "exercises"

    if args.check:
        try:
            problems = generate_all(args.notebooks_dir, out_dir, check=True)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if problems:
            print("Student notebooks need attention (run `python -m tutorial_utils.course.exercises`):")
            for problem in problems:
                print(f"  {problem}")
            return 1
        print(f"OK: student notebooks in {out_dir} are up to date.")
        return 0

    try:
        written = generate_all(args.notebooks_dir, out_dir, check=False)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} student notebook(s) updated in {out_dir}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
