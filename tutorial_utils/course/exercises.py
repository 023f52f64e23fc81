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
Markers are comment lines on their own line in a *code* cell. Because they are
plain comments, the solution notebook runs unchanged.

``### BEGIN SOLUTION`` / ``### END SOLUTION``
    A code cell containing at least one such pair is an *exercise cell*. A cell
    may contain several pairs; pairs may not nest. In the student version the
    marker lines and every line between them are removed and replaced by one line
    ``raise NotImplementedError("Exercise: fill in this part")`` indented like the
    first non-blank removed line (or like the ``BEGIN`` marker if the block is
    empty). This works both inside a function body and at top level. Text after
    the marker on the same line (``### BEGIN SOLUTION  (part a)``) is allowed and
    ignored.

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

An unmatched ``BEGIN``/``END`` (or a stray ``HINT``) raises :class:`ValueError`
naming the notebook and the cell index (0-based, in the solution notebook). If an
exercise cell compiled as Python before the transformation but not after, that is
also a ``ValueError``.

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

from ..errors import TutorialError
from ..paths import REPO_ROOT

__all__ = [
    "RAISE_LINE",
    "SOLUTION_ONLY_MARKER",
    "make_student_notebook",
    "generate_all",
    "read_notebook",
    "render_notebook",
    "main",
]

RAISE_LINE = 'raise NotImplementedError("Exercise: fill in this part")'
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


def _transform_exercise_cell(source: str, source_name: str, cell_index: int) -> _ExerciseCell | None:
    """Split an exercise cell into its student code, its solution code and its hints.

    Returns ``None`` when the cell contains no markers at all (not an exercise).
    Raises ``ValueError`` on unmatched or nested markers, or hints outside an
    exercise cell.
    """
    lines = source.splitlines()
    if not any(_is_marker(line) for line in lines):
        return None

    student: list[str] = []
    solution: list[str] = []
    hints: list[str] = []
    n_blocks = 0
    # While inside a block: (line number of BEGIN, its indentation, removed lines).
    block: tuple[int, str, list[str]] | None = None

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
                    f"inside the block opened on line {block[0]} (blocks cannot nest; "
                    "missing '### END SOLUTION'?)"
                )
            block = (lineno, begin.group("indent"), [])
            continue
        if _END_RE.match(line):
            if block is None:
                raise TutorialError(
                    f"{_where(source_name, cell_index)}: '### END SOLUTION' on line {lineno} "
                    "without a matching '### BEGIN SOLUTION'"
                )
            _, begin_indent, removed = block
            non_blank = [r for r in removed if r.strip()]
            indent = _indent_of(non_blank[0]) if non_blank else begin_indent
            student.append(indent + RAISE_LINE)
            n_blocks += 1
            block = None
            continue
        solution.append(line)
        if block is not None:
            block[2].append(line)
        else:
            student.append(line)

    if block is not None:
        raise TutorialError(
            f"{_where(source_name, cell_index)}: '### BEGIN SOLUTION' on line {block[0]} "
            "has no matching '### END SOLUTION'"
        )
    if n_blocks == 0:
        raise TutorialError(
            f"{_where(source_name, cell_index)}: '### HINT:' line in a cell without a "
            "'### BEGIN SOLUTION' / '### END SOLUTION' block"
        )
    return _ExerciseCell("\n".join(student).rstrip(), "\n".join(solution).strip("\n"), hints)


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

    for index, original in enumerate(nb.cells):
        source = _source_text(original.get("source", ""))
        if source.lstrip().startswith(SOLUTION_ONLY_MARKER):
            continue
        cell = _clean_cell(original)
        if with_ids and not cell.get("id"):
            cell["id"] = _derived_id(source_name, f"cell-{index}")
        if cell.get("cell_type") != "code":
            cells.append(cell)
            continue
        exercise = _transform_exercise_cell(source, source_name, index)
        if exercise is None:
            cells.append(cell)
            continue
        if _compiles(source) and not _compiles(exercise.student_source):
            raise TutorialError(
                f"{_where(source_name, index)}: the student version of this exercise cell "
                "is not valid Python; move the solution markers so whole statements are removed"
            )
        cell["source"] = exercise.student_source
        cells.append(cell)
        help_cell = nbformat.v4.new_markdown_cell(_help_markdown(exercise))
        _set_id(help_cell, _derived_id(source_name, f"help-{index}"), with_ids)
        cells.append(help_cell)

    student.cells = cells
    return student


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
    from ..errors import TutorialError

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
        ValueError: with ``check=False``, if any solution notebook has marker errors
            (raised before anything is written).
    """
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
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
        problems = generate_all(args.notebooks_dir, out_dir, check=True)
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
