"""Reading an exercise's two cells as Python: what the student-version generator
(:mod:`tutorial_utils.course.exercises`) needs to know to emit stubs that never break the
notebook, and to refuse exercise cells that would.

* :func:`check_call` finds the check cell's ``answer = nbXX.check_y(answer, ...)`` statement
  and returns the names it rebinds (the exercise's *answers*);
* :func:`functions_by_line` says which top-level function each line of a cell belongs to (a
  solution block inside a function is stubbed by a ``raise``);
* :func:`bound_names` lists the names a top-level solution block binds (each answer among them
  is stubbed by ``name = ...``);
* :func:`names_used_at_top_level` lists the names a cell reads outside function bodies (the
  student version of an exercise cell must not read its own answers: they are stubs there).

Only the standard library's :mod:`ast`; cells that do not parse (IPython magics) give ``None``
or empty sets, and the generator then checks what it can.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["CheckCall", "bound_names", "check_call", "functions_by_line",
           "names_used_at_top_level"]


@dataclass(frozen=True)
class CheckCall:
    """The statement ``targets = module.check_name(arguments)`` of a check cell."""

    targets: tuple[str, ...]   # the names it rebinds, in order
    arguments: frozenset[str]  # the plain names passed to the call (positional or keyword)
    function: str              # e.g. "nb00.check_induction_score"


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _target_names(target: ast.expr) -> list[str] | None:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [_target_names(t) for t in target.elts]
        if any(n is None or len(n) != 1 for n in names):
            return None
        return [n[0] for n in names]  # type: ignore[index]
    return None


def check_call(source: str) -> CheckCall | None:
    """The first top-level ``a, b = x.check_y(...)`` (or ``a = check_y(...)``) of a cell, where
    every target is a plain name; ``None`` when there is none."""
    module = _parse(source)
    if module is None:
        return None
    for stmt in module.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.value, ast.Call)):
            continue
        func = stmt.value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if not name.startswith("check_"):
            continue
        targets = _target_names(stmt.targets[0])
        if not targets:
            continue
        args = [*stmt.value.args, *(k.value for k in stmt.value.keywords)]
        passed = frozenset(a.id for a in args if isinstance(a, ast.Name))
        return CheckCall(tuple(targets), passed, ast.unparse(func))
    return None


def functions_by_line(source: str) -> dict[int, str] | None:
    """``{line number: name of the top-level function whose definition spans it}`` (1-based),
    or ``None`` when the cell does not parse."""
    module = _parse(source)
    if module is None:
        return None
    lines: dict[int, str] = {}
    for stmt in module.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([stmt.lineno, *(d.lineno for d in stmt.decorator_list)])
            for line in range(first, (stmt.end_lineno or stmt.lineno) + 1):
                lines[line] = stmt.name
    return lines


def _store_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def bound_names(code: str) -> set[str]:
    """The names that top-level code binds at module level (assignments, loop and ``with``
    targets, imports, definitions); empty when it does not parse."""
    module = _parse(code)
    if module is None:
        return set()
    names: set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        else:
            names.update(_store_names(stmt))
    return names


class _TopLevelLoads(ast.NodeVisitor):
    """Names loaded outside function, lambda and class bodies."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for d in node.decorator_list:
            self.visit(d)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for d in node.decorator_list:
            self.visit(d)


def names_used_at_top_level(source: str) -> set[str]:
    """The names a cell reads when it runs (outside function, lambda and class bodies); empty
    when it does not parse."""
    module = _parse(source)
    if module is None:
        return set()
    visitor = _TopLevelLoads()
    visitor.visit(module)
    return visitor.names
