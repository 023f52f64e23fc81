"""Argument and file checks of the offline-model command lines, run before any work.

Training takes an hour and selection minutes per snapshot, so every command checks what it was
given first (numbers in range, an output folder it can write, records and weights that parse)
and stops with one clear :class:`~tutorial_utils.errors.TutorialError` that names the argument
or the file and the fix. Each command's ``main`` hands that error to ``parser.error``: a usage
line, ``error: ...`` on stderr and exit status 2, as for argparse's own errors, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from ... import validation
from ...errors import TutorialError

__all__ = ["check_int", "check_number", "check_writable_dir", "config_from_args", "read_json",
           "check_weights"]


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """The option ``name`` as an integer >= ``minimum`` (:func:`tutorial_utils.validation.check_int`,
    with the option's flag in the message)."""
    return validation.check_int(value, _flag(name), minimum)


def check_number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False) -> float:
    """The option ``name`` as a finite number in ``[low, high]`` (``(low, high]`` with
    ``low_open``), the interval named in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TutorialError(f"{_flag(name)} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise TutorialError(f"{_flag(name)} must lie in {bounds}, got {value!r}")
    return float(value)


def config_from_args(parser: argparse.ArgumentParser, config_cls: type, argv: Any,
                     check_config: Callable[[Any], Any]) -> tuple[Any, Path]:
    """``(config, out folder)`` from the command line: one option per field of the dataclass
    ``config_cls`` (booleans as ``--x/--no-x``, a tuple of strings as ``--x A B ...``), every
    value and the ``--out`` folder checked before any work; a bad one stops the program with
    ``error: ...`` (exit 2)."""
    for name, field in config_cls.__dataclass_fields__.items():
        if isinstance(field.default, bool):
            parser.add_argument(_flag(name), action=argparse.BooleanOptionalAction,
                                default=field.default)
        elif isinstance(field.default, tuple):
            parser.add_argument(_flag(name), nargs="+", type=str, default=field.default,
                                metavar=name.upper())
        else:
            parser.add_argument(_flag(name), type=type(field.default), default=field.default)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    cfg = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    try:
        check_config(cfg)
        check_writable_dir(out)
    except TutorialError as err:
        parser.error(str(err))
    return cfg, out


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
