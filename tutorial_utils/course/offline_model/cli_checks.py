"""Argument and file checks of the offline-model command lines, run before any work.

Training takes an hour and selection minutes per snapshot, so every command checks what it was
given first (numbers in range, an output folder it can write, records and weights that parse)
and stops with one clear :class:`~tutorial_utils.errors.TutorialError` that names the argument
or the file and the fix. Each command's ``main`` hands that error to ``parser.error``: a usage
line, ``error: ...`` on stderr and exit status 2, as for argparse's own errors, not a traceback.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ...errors import TutorialError

__all__ = ["check_int", "check_number", "check_writable_dir", "read_json", "check_weights"]


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TutorialError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got "
                            f"{value!r}")
    return value


def check_number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TutorialError(f"{flag} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise TutorialError(f"{flag} must lie in {bounds}, got {value!r}")
    return float(value)


def check_writable_dir(path: Path, name: str = "out") -> Path:
    """Create ``path`` if needed and prove a file can be written there (then remove it)."""
    flag = f"--{name.replace('_', '-')}"
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TutorialError(f"{flag} {path} is a file, not a folder: give a folder to write into")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise TutorialError(f"{flag} {path} cannot be written ({err.strerror or err}): choose a "
                            "folder you can write to") from err
    return path


def read_json(path: Path, what: str) -> Any:
    """The parsed JSON file ``path``; a missing or corrupt file is named in the error."""
    path = Path(path)
    if not path.is_file():
        raise TutorialError(f"{what} {path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TutorialError(f"{what} {path} is not valid JSON ({err}): restore or regenerate "
                            "the file") from err


def check_weights(folder: Path) -> None:
    """``folder/model.safetensors`` reads completely and every tensor in it is finite."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise TutorialError(f"{path} is missing")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for a corrupt file
        raise TutorialError(f"{path} cannot be read as safetensors ({err}): the file is "
                            "corrupt or truncated; delete that checkpoint or restore it") from err
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise TutorialError(f"{path} holds NaN or inf weights (e.g. {bad[0]}): the checkpoint "
                            "diverged or is corrupt; delete it or restore it")
