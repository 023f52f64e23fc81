"""How long a notebook takes a student, computed from the notebook itself.

An estimate an instructor can check, and that a test keeps honest (``tests/test_notebook_timing.py``):

* prose: the words of the markdown cells at :data:`WORDS_PER_MINUTE` (the words of a table are
  not counted: the table counts as a table);
* code a student must read: the non-blank lines of the code cells at
  :data:`CODE_LINES_PER_MINUTE`, except the setup cell (the same in every notebook), the
  ``# NBVAL_...`` markers, the exercise cells (their time is the exercise's), and the cells that
  only draw a figure (no printed output: the student looks at the figure, counted below);
* tables and figures, :data:`MINUTES_PER_TABLE` each: a markdown table, a saved figure (an image
  or an interactive view), and a printed table (a cell output of at least
  :data:`TABLE_MIN_LINES` lines);
* exercises: the minutes each exercise heading states (``#### Exercise 2.1 · ... · 4 min``).

**Sections.** A numbered heading ``## N. Title (M min)`` starts a section, ``## N. Bonus: ...`` a
bonus one. Inside a section, ``### Bonus: Title (M min)`` (optionally numbered, ``### 2.3 Bonus:
...``) starts a bonus part that runs to the next heading of level 1 to 3; after it the section
goes on. An unnumbered ``## Summary`` belongs to the section before it, and the notebook's
opening (title, objectives, imports, model) to the first section.

**Rounding rule.** A label states its part's computed minutes rounded *up* to a whole minute (at
least 1), so a label never understates; the header's core and bonus are the sums of the labels
(core: the parts of the numbered sections not labelled bonus).

``python -m tutorial_utils.course.timing notebooks/NAME.ipynb ...`` prints the estimate part by
part (``--cells`` adds every cell's cost); ``--write-labels`` rewrites the labels and the header
of the paired ``NAME.py`` source to what the rule asks (then run ``jupytext --to ipynb --update
notebooks/NAME.py``).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Part", "CellCost", "notebook_parts", "cell_costs", "budget", "header_minutes",
           "report", "write_labels", "main"]

WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 10
MINUTES_PER_TABLE = 1.0
MINUTES_PER_FIGURE = 1.0
TABLE_MIN_LINES = 5

SECTION = re.compile(r"^## (\d+)\. (Bonus: )?(.+?) \((\d+) min\)\s*$")
BONUS_PART = re.compile(r"^### (?:(\d+\.\d+) )?Bonus: (.+?) \((\d+) min\)\s*$")
HEADING = re.compile(r"^(#{1,3}) ")
EXERCISE = re.compile(r"^#### Exercise (\d+\.\d+) · .* · (\d+) min\s*$")
HEADER = re.compile(r"\*\*Estimated time: (\d+) minutes? core \+ (\d+) minutes? bonus\.\*\*")
SETUP_MARK = "# Setup: on Google Colab"
WORD = re.compile(r"\S*[A-Za-z0-9]\S*")
FIGURE_MIMES = ("image/png", "image/svg+xml", "image/jpeg", "text/html")


@dataclass
class Part:
    """A timed part of a notebook: a numbered section, or a bonus part inside one."""

    section: int
    title: str
    bonus: bool
    label: int  # the minutes its heading states
    subpart: bool = False  # a ``### Bonus:`` part inside a section
    words: int = 0
    code_lines: int = 0
    tables: int = 0
    figures: int = 0
    exercises: dict[str, int] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        return (self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE
                + self.tables * MINUTES_PER_TABLE + self.figures * MINUTES_PER_FIGURE
                + sum(self.exercises.values()))

    @property
    def rounded(self) -> int:
        """The label the rounding rule asks for: the computed minutes rounded up, at least 1."""
        return max(1, math.ceil(self.minutes - 1e-9))

    @property
    def name(self) -> str:
        where = f"{self.section}." if self.section else "(opening)"
        return f"{where}{' (part)' if self.subpart else ''} {'Bonus: ' if self.bonus else ''}{self.title}"


@dataclass
class CellCost:
    """What one cell (or one part of a markdown cell) adds to the part it belongs to."""

    index: int  # the cell's index in the notebook
    part: str
    words: int = 0
    code_lines: int = 0
    tables: int = 0
    figures: int = 0
    exercise_minutes: int = 0
    first_line: str = ""

    @property
    def minutes(self) -> float:
        return (self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE
                + (self.tables + self.figures) * MINUTES_PER_TABLE + self.exercise_minutes)


def _source(cell: Any) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _output_text(out: Any) -> str:
    text = out.get("text", "") if out.get("output_type") == "stream" else \
        out.get("data", {}).get("text/plain", "")
    return text if isinstance(text, str) else "".join(text)


def _is_figure(out: Any) -> bool:
    return any(m in out.get("data", {}) for m in FIGURE_MIMES)


def _walk(nb: Any) -> tuple[list[Part], list[CellCost]]:
    parts: list[Part] = []
    costs: list[CellCost] = []
    opening = Part(0, "(opening)", False, 0)
    section: Part = opening  # the numbered section we are in
    current: Part = opening  # where content goes: the section, or a bonus part inside it
    setup_seen = False

    def cost(index: int, first: str) -> CellCost:
        c = CellCost(index, current.name, first_line=first.strip()[:70])
        costs.append(c)
        return c

    for index, cell in enumerate(nb["cells"]):
        text = _source(cell)
        if cell["cell_type"] == "markdown":
            c = cost(index, text.splitlines()[0] if text else "")
            in_table = False
            for line in text.splitlines():
                sec, sub = SECTION.match(line), BONUS_PART.match(line)
                if sec:
                    section = current = Part(int(sec[1]), sec[3], bool(sec[2]), int(sec[4]))
                    parts.append(section)
                elif sub:
                    current = Part(section.section, sub[2], True, int(sub[3]), subpart=True)
                    parts.append(current)
                elif HEADING.match(line) and current is not section:
                    current = section  # a bonus part ends at the next heading of level <= 3
                if (sec or sub or HEADING.match(line)) and c.part != current.name:
                    c = cost(index, line)
                e = EXERCISE.match(line)
                if e:
                    current.exercises[e[1]] = int(e[2])
                    c.exercise_minutes += int(e[2])
                if line.lstrip().startswith("|"):
                    current.tables += not in_table
                    c.tables += not in_table
                    in_table = True
                    continue
                in_table = False
                n = len(WORD.findall(line))
                current.words += n
                c.words += n
        elif cell["cell_type"] == "code":
            if not setup_seen and text.startswith(SETUP_MARK):
                setup_seen = True
                continue
            c = cost(index, text.splitlines()[0] if text else "")
            outputs = cell.get("outputs", [])
            figures = sum(1 for o in outputs if _is_figure(o))
            printed = "".join(_output_text(o) for o in outputs
                              if not _is_figure(o) and o.get("name") != "stderr")
            figure_only = figures > 0 and not printed.strip()
            if "### BEGIN SOLUTION" not in text and not figure_only:
                n = sum(1 for ln in text.splitlines() if ln.strip() and not ln.startswith("# NBVAL_"))
                current.code_lines += n
                c.code_lines += n
            table = len(printed.strip().splitlines()) >= TABLE_MIN_LINES
            current.figures += figures
            current.tables += table
            c.figures += figures
            c.tables += table
    sections = [p for p in parts if not p.subpart]
    if sections:  # the opening is read as part of the first numbered section
        first = sections[0]
        for name in ("words", "code_lines", "tables", "figures"):
            setattr(first, name, getattr(first, name) + getattr(opening, name))
        first.exercises = {**opening.exercises, **first.exercises}
        for c in costs:
            if c.part == opening.name:
                c.part = first.name
    else:
        parts.insert(0, opening)
    return parts, costs


def notebook_parts(nb: Any) -> list[Part]:
    """The timed parts of ``nb`` (an nbformat notebook or its JSON dict), in order."""
    return _walk(nb)[0]


def cell_costs(nb: Any) -> list[CellCost]:
    """What each cell adds, and to which part (for deciding what to move into a bonus part)."""
    return _walk(nb)[1]


def budget(nb: Any) -> tuple[int, int]:
    """``(core, bonus)`` minutes by the rounding rule: the sums of the labels each part needs."""
    parts = notebook_parts(nb)
    return (sum(p.rounded for p in parts if not p.bonus), sum(p.rounded for p in parts if p.bonus))


def header_minutes(nb: Any) -> tuple[int, int] | None:
    """``(core, bonus)`` as the notebook's ``**Estimated time: ...**`` line states them."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = HEADER.search(_source(cell))
            if m:
                return int(m[1]), int(m[2])
    return None


def report(nb: Any, cells: bool = False) -> str:
    """A table of every part: counts, computed minutes, its label and the label it needs."""
    rows = [f"{'part':<60} {'words':>5} {'code':>4} {'tab':>3} {'fig':>3} {'ex.min':>6} "
            f"{'computed':>8} {'label':>5} {'needs':>5}"]
    for p in notebook_parts(nb):
        rows.append(f"{p.name[:60]:<60} {p.words:>5} {p.code_lines:>4} {p.tables:>3} "
                    f"{p.figures:>3} {sum(p.exercises.values()):>6} {p.minutes:>8.1f} "
                    f"{p.label:>5} {p.rounded:>5}" + ("" if p.label == p.rounded else "  <-"))
    core, bonus = budget(nb)
    stated = header_minutes(nb)
    rows.append(f"core {core} min + bonus {bonus} min (header says: "
                f"{'nothing' if stated is None else f'{stated[0]} + {stated[1]}'})")
    if cells:
        rows.append("")
        for c in cell_costs(nb):
            if not c.minutes:
                continue
            rows.append(f"  cell {c.index:>3} {c.minutes:5.1f} min  w{c.words:<4} c{c.code_lines:<3} "
                        f"t{c.tables} f{c.figures} e{c.exercise_minutes}  [{c.part[:28]}] "
                        f"{c.first_line}")
    return "\n".join(rows)


LABEL = re.compile(r"\((\d+) min\)\s*$")


def write_labels(source: Path, nb: Any) -> list[str]:
    """Rewrite, in the jupytext source ``source`` of notebook ``nb``, each part's ``(M min)`` and
    the ``**Estimated time: ...**`` header to what the rounding rule asks. Returns the changes."""
    parts = iter(notebook_parts(nb))
    core, bonus = budget(nb)
    changes, lines = [], source.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        text = line[2:] if line.startswith("# ") else line
        if SECTION.match(text.rstrip("\n")) or BONUS_PART.match(text.rstrip("\n")):
            part = next(parts)
            new = LABEL.sub(f"({part.rounded} min)", line.rstrip("\n")) + "\n"
            if new != line:
                changes.append(f"{part.name}: {part.label} -> {part.rounded} min")
                lines[i] = new
        elif HEADER.search(line):
            new = HEADER.sub(f"**Estimated time: {core} minute{'s' * (core != 1)} core + {bonus} "
                             f"minute{'s' * (bonus != 1)} bonus.**", line)
            if new != line:
                changes.append(f"header: {core} core + {bonus} bonus")
                lines[i] = new
    source.write_text("".join(lines), encoding="utf-8")
    return changes


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     allow_abbrev=False)
    parser.add_argument("notebooks", nargs="+", type=Path, help="solution notebooks (.ipynb)")
    parser.add_argument("--cells", action="store_true", help="also list every cell's cost")
    parser.add_argument("--write-labels", action="store_true",
                        help="rewrite the labels of the paired .py sources")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path}: not a notebook file (.ipynb)")
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.write_labels:
            for change in write_labels(path.with_suffix(".py"), nb):
                print(f"{path.with_suffix('.py').name}: {change}")
            continue
        print(f"== {path.name}")
        print(report(nb, cells=args.cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
