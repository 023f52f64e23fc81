"""The layout of ARCHITECTURE.md, checked on the code itself (read as text and syntax trees; no
module is imported except to read a public function's annotations).

* imports point down the floors and draw no cycle; no package import hides in a function;
* the library never imports the course;
* no module is over 700 lines;
* one module (``names``) writes TransformerLens hook strings;
* no bare ``ValueError`` is raised (the package raises ``TutorialError``);
* public functions of the library carry jaxtyping shapes wherever they take or return tensors.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tutorial_utils"
MAX_LINES = 700

#: floor of each module (dotted path under tutorial_utils, matched by longest prefix); a module
#: may import modules of its own floor or below, never above (ARCHITECTURE.md)
FLOORS: dict[str, int] = {
    "errors": 0, "paths": 0,
    "validation": 1, "stats": 1, "names": 1, "gpt2_tokenizer": 1,
    "model_checks": 2, "checkpoints": 2,
    "models": 3,
    "tasks": 4,
    "graph": 5,
    "interchange": 6,
    # the methods
    "patching": 7, "path_patching": 7, "faithfulness": 7, "circuits": 7, "logit_lens": 7,
    "dla": 7, "readout": 7, "input_attribution": 7, "attribution": 7, "probing": 7,
    "concept_erasure": 7, "composition": 7, "induction": 7, "context_mixing": 7, "features": 7,
    "plotting": 7, "sanity_checks": 7, "randomization": 7,
    "course": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _floor(mod: str) -> int:
    best = None
    for prefix, floor in FLOORS.items():
        if mod == prefix or mod.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, floor)
    if best is None:
        raise AssertionError(f"tutorial_utils.{mod} has no floor: give it one in ARCHITECTURE.md "
                             "and in FLOORS here")
    return best[1]


def _resolve(mod: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The package modules an ``import from`` names (``from .x import y`` may import the module
    ``x.y``)."""
    if node.level == 0:
        if not (node.module or "").startswith("tutorial_utils"):
            return []
        base = node.module.split(".")[1:]
    else:
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        pkg = [p for p in pkg if p]
        base = pkg[: len(pkg) - (node.level - 1)] + ((node.module or "").split(".") if node.module else [])
    target = ".".join(p for p in base if p)
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        out.append(sub if sub in MODULES else target)
    return [t for t in out if t]


def _imports(mod: str, path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(mod, path, node)
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".", 1)[1] for a in node.names
                       if a.name.startswith("tutorial_utils.")]
        if not targets:
            continue
        if _in_type_checking(tree, node):
            continue  # annotations only: no runtime import, no cycle
        if node.col_offset > 0:
            nested += [(node.lineno, t) for t in targets]
        else:
            top.update(targets)
    return top, nested


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            if any(n is node for n in ast.walk(stmt)):
                return True
    return False


GRAPH = {mod: _imports(mod, path) for mod, path in MODULES.items()}


def test_no_package_import_hides_inside_a_function():
    hidden = [f"tutorial_utils.{mod}:{line} imports {t}" for mod, (_, nested) in GRAPH.items()
              for line, t in nested]
    assert not hidden, "imports inside functions (move them to the top of the file):\n" + \
        "\n".join(hidden)


def test_imports_point_down_and_the_library_never_imports_the_course():
    up = []
    for mod, (top, _) in GRAPH.items():
        for t in top:
            if t == mod or t not in MODULES:
                continue
            if _floor(t) > _floor(mod):
                up.append(f"tutorial_utils.{mod} (floor {_floor(mod)}) imports "
                          f"tutorial_utils.{t} (floor {_floor(t)})")
    assert not up, "imports that run back up:\n" + "\n".join(sorted(up))


def test_the_import_graph_has_no_cycle():
    edges = {m: {t for t in top if t in MODULES and t != m} for m, (top, _) in GRAPH.items()}
    # a package's __init__ importing its own submodules is its face, not a cycle
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if t.startswith(m + "."):
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_module_is_over_700_lines(mod):
    n = len(MODULES[mod].read_text().splitlines())
    assert n <= MAX_LINES, f"tutorial_utils.{mod} has {n} lines (> {MAX_LINES}): split it by concept"


#: A hook name or a piece of one: ``hook_z``, ``blocks.3.attn``, and the constant parts of a
#: name built from pieces (``f"blocks.{l}.attn"`` holds ``"blocks."``, ``"hook_" + site`` holds
#: ``"hook_"``).
_HOOK_RE = re.compile(r"(^|[^\w])(hook_([a-z%]|$)|blocks\.(\{?\w|%|$))")


@pytest.mark.parametrize("source", ['f"blocks.{l}.attn"', '"hook_" + site',
                                    '"blocks.%d.mlp" % l', '"blocks." + str(l) + ".attn.W_Q"',
                                    '"blocks.0.hook_resid_pre"', '"hook_z"'])
def test_the_hook_string_rule_sees_names_built_from_pieces(source):
    assert any(" " not in t.strip() and _HOOK_RE.search(t)
               for _, t in _strings(ast.parse(f"name = {source}")))


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            out.append((n.lineno, n.value))
    return out


def test_hook_strings_are_written_in_one_module():
    """Only ``names`` spells TransformerLens hook names (``hook_z``, ``blocks.{l}...``); prose
    for a reader (an error message, an exercise hint) may mention one."""
    found = []
    for mod, path in MODULES.items():
        if mod == "names":
            continue
        for line, text in _strings(ast.parse(path.read_text())):
            # a hook string has no space (prose that names a hook for a reader is not one)
            if " " not in text.strip() and _HOOK_RE.search(text):
                found.append(f"tutorial_utils.{mod}:{line}: {text[:70]!r}")
    assert not found, "hook strings outside tutorial_utils.names:\n" + "\n".join(found)


def test_no_bare_value_error_is_raised():
    found = []
    for mod, path in MODULES.items():
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Raise) and n.exc is not None:
                call = n.exc.func if isinstance(n.exc, ast.Call) else n.exc
                if isinstance(call, ast.Name) and call.id == "ValueError":
                    found.append(f"tutorial_utils.{mod}:{n.lineno}")
    assert not found, "raise TutorialError (tutorial_utils.errors) instead of ValueError:\n" + \
        "\n".join(found)


_JAX = re.compile(r"\b(Float|Int|Bool|Num|Shaped|Real|Integer|Inexact)\[\s*(torch\.)?Tensor\b")


def _bare_tensor(annotation: str) -> bool:
    """True when ``annotation`` names a Tensor without a jaxtyping shape."""
    without = _JAX.sub("", annotation)
    return re.search(r"\bTensor\b", without) is not None


def _public_functions():
    for mod in sorted(MODULES):
        if mod.startswith("course") or mod == "" or any(p.startswith("_") for p in mod.split(".")):
            continue  # the course, and private modules (their names start with "_")
        module = importlib.import_module(f"tutorial_utils.{mod}" if mod else "tutorial_utils")
        # every public function or class the module defines, listed in __all__ or not
        for name, obj in vars(module).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                yield f"{mod}.{name}", obj
            elif inspect.isclass(obj) and obj.__module__ == module.__name__:
                for meth_name, meth in vars(obj).items():
                    if meth_name.startswith("_"):
                        continue
                    fn = meth.__func__ if isinstance(meth, (staticmethod, classmethod)) else meth
                    if inspect.isfunction(fn):
                        yield f"{mod}.{name}.{meth_name}", fn


def test_public_functions_carry_shapes():
    """Every tensor a public function takes or returns is annotated with its shape
    (``Float[Tensor, "batch pos vocab"]``), not a bare ``Tensor``."""
    bare = []
    for qual, fn in _public_functions():
        for pname, ann in fn.__annotations__.items():
            if isinstance(ann, str) and _bare_tensor(ann):
                bare.append(f"{qual}: {pname}: {ann}")
    assert not bare, f"{len(bare)} bare Tensor annotations:\n" + "\n".join(bare)


def test_one_engine_runs_every_patched_forward():
    """In the library, only ``interchange`` calls the bridge's ``run_with_hooks`` (through
    :func:`~tutorial_utils.interchange.stacked_forward`); the course's reference solutions may
    write hooks by hand, as students do."""
    found = []
    for mod, path in MODULES.items():
        if mod == "interchange" or mod.startswith("course"):
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and \
                    n.func.attr == "run_with_hooks":
                found.append(f"tutorial_utils.{mod}:{n.lineno}")
    assert not found, "patched forwards outside the engine (use interchange.stacked_forward):\n" \
        + "\n".join(found)


def _builds_node_name(node: ast.JoinedStr) -> bool:
    """``f"a{l}.h{h}..."`` or ``f"m{l}..."``: a head's or an MLP's node name spelled by hand."""
    v = node.values
    if len(v) < 2 or not (isinstance(v[0], ast.Constant) and isinstance(v[1], ast.FormattedValue)):
        return False
    if v[0].value == "m":
        return True
    return (v[0].value == "a" and len(v) >= 3 and isinstance(v[2], ast.Constant)
            and str(v[2].value).startswith(".h"))


@pytest.mark.parametrize("source,builds", [('f"a{l}.h{h}"', True), ('f"m{l}"', True),
                                           ('f"a{l}.h{h}.{c}"', True), ('f"a{x} b"', False),
                                           ('f"mean {x}"', False)])
def test_the_node_name_rule_sees_hand_built_names(source, builds):
    found = [n for n in ast.walk(ast.parse(f"name = {source}")) if isinstance(n, ast.JoinedStr)]
    assert _builds_node_name(found[0]) is builds


def test_node_names_are_written_in_one_module():
    """Only ``names`` spells node names (``aL.hH``, ``mL``, ``aL.hH.q``); every other module
    calls :func:`~tutorial_utils.names.head_name`, ``mlp_name``, ``receiver_name``..."""
    found = []
    for mod, path in MODULES.items():
        if mod == "names":
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.JoinedStr) and _builds_node_name(n):
                found.append(f"tutorial_utils.{mod}:{n.lineno}")
    assert not found, "node names built outside tutorial_utils.names:\n" + "\n".join(found)


def test_caches_are_taken_where_the_architecture_says():
    """``run_with_cache`` (a plain read-only cache) only in ``readout`` and ``probing``, which
    need ``stop_at_layer`` or a padding mask; everything else records through
    :func:`~tutorial_utils.interchange.capture`. Raw torch hooks only where a method works on
    the Hugging Face modules themselves (Value Zeroing)."""
    allowed = {"run_with_cache": {"readout", "probing"},
               "register_forward_hook": {"context_mixing.value_zeroing"},
               "add_hook": set()}
    found = []
    for mod, path in MODULES.items():
        if mod.startswith("course"):
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and \
                    n.func.attr in allowed and mod not in allowed[n.func.attr]:
                found.append(f"tutorial_utils.{mod}:{n.lineno}: {n.func.attr}")
    assert not found, "activations recorded outside the places ARCHITECTURE.md names:\n" + \
        "\n".join(found)
