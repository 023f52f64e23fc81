"""The first cell of every course notebook, kept in one place.

On Google Colab it clones the course and installs it with ``pip install -e`` (every pin comes
from ``pyproject.toml``; none is copied into notebooks); anywhere else it does nothing. It cannot
import this package (it runs before the package is installed), so notebooks carry its text and
``tests/test_notebooks_meta.py`` checks that each notebook's first code cell equals
:data:`COLAB_SETUP_CELL` exactly. Update the notebooks with :func:`set_setup_cell`.

Two environment variables, read by the cell, point it elsewhere: ``TUTORIAL_REPO_URL`` (a copy
of the repository, for a fork or a mirror; ``tests/test_colab_setup.py`` points it at a local
clone) and ``TUTORIAL_COURSE_DIR`` (where the clone goes, ``/content/course`` by default). A
clone that fails, or a ``pip install`` that fails, stops the cell with a message that says what
to do; a clone already there (the cell run twice) is reused.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLAB_SETUP_CELL", "REPO_URL", "set_setup_cell"]

#: Where the course is published; change it here (and re-run set_setup_cell) if it moves.
REPO_URL = "https://github.com/interp-course/transformer-interp-course"

COLAB_SETUP_CELL = f'''# Setup: on Google Colab, install the course (all pins come from its pyproject.toml).
# Anywhere else this cell does nothing: install with `pip install -e .` from the repository.
import os
import sys

if "google.colab" in sys.modules:
    import subprocess

    repo = os.environ.get("TUTORIAL_REPO_URL", "{REPO_URL}")
    course = os.environ.get("TUTORIAL_COURSE_DIR", "/content/course")
    if not os.path.isdir(os.path.join(course, ".git")):  # not cloned yet
        run = subprocess.run(["git", "clone", "--depth", "1", repo, course], capture_output=True, text=True,
                             env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))  # fail, never ask for a password
        if run.returncode != 0:
            raise RuntimeError(f"Could not clone the course from {{repo}}:\\n{{run.stderr.strip()}}\\n"
                               "Check that this runtime has internet access and that the address is right "
                               "(for another copy of the course, run `%env TUTORIAL_REPO_URL=<its git URL>`), "
                               "then run this cell again.")
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", course], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pip could not install the course from {{course}}:\\n{{run.stderr.strip()[-2000:]}}\\n"
                           "Restart the session (Runtime > Restart session) and run this cell again.")
    sys.path.insert(0, course)

from importlib.metadata import version

print("tutorial_utils", version("tutorial_utils"))'''


def set_setup_cell(nb: Any) -> Any:
    """Make the first code cell of notebook ``nb`` (an nbformat node) the setup cell."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.source.startswith("# Setup: on Google Colab"):
                cell.source = COLAB_SETUP_CELL
                return nb
            break
    nb.cells.insert(0, nbformat.v4.new_code_cell(COLAB_SETUP_CELL))
    return nb
