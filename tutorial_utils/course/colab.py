"""The first cell of every course notebook, kept in one place.

On Google Colab it clones the course and installs it with ``pip install -e`` (every pin comes
from ``pyproject.toml``; none is copied into notebooks); anywhere else it does nothing. It cannot
import this package (it runs before the package is installed), so notebooks carry its text and
``tests/test_notebooks_meta.py`` checks that each notebook's first code cell equals
:data:`COLAB_SETUP_CELL` exactly. Update the notebooks with :func:`set_setup_cell`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLAB_SETUP_CELL", "REPO_URL", "set_setup_cell"]

#: Where the course is published; change it here (and re-run set_setup_cell) if it moves.
REPO_URL = "https://github.com/interp-course/transformer-interp-course"

COLAB_SETUP_CELL = f'''# Setup: on Google Colab, install the course (all pins come from its pyproject.toml).
# Anywhere else this cell does nothing: install with `pip install -e .` from the repository.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run(["git", "clone", "--depth", "1", "{REPO_URL}", "/content/course"], check=False)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course"], check=True)
    sys.path.insert(0, "/content/course")

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
