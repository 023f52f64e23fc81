"""Checks of a local checkpoint, before and after its weights are read (issue 23).

* :func:`check_checkpoint` (before): every ``*.json`` parses (the message names the file), a
  tokenizer is there (transformers would blame a missing ``sentencepiece``), no
  ``*.safetensors`` file is truncated.
* :class:`LoadReport` + :func:`check_loaded` (after): the parameters the config describes
  against those in the file, as transformers' own load report lists them (missing,
  unexpected, mismatched), and every weight finite. TransformerLens sets the ``transformers``
  logger to ERROR at import, which hides that report; :func:`transformers_level` is the level
  to restore.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import TutorialError

__all__ = ["LoadReport", "TOKENIZER_FILES", "check_checkpoint", "check_loaded",
           "transformers_level", "user_stacklevel"]


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package and
    TransformerLens (the student's line), counted from the function that calls ``warn``."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("tutorial_utils", "transformer_lens")):
            return level
        frame, level = frame.f_back, level + 1
    return 2


#: A local checkpoint needs one of these for its tokenizer (fast ``tokenizer.json``, or the files
#: of a slow WordPiece, BPE or SentencePiece tokenizer).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


def check_checkpoint(path: str | Path) -> None:
    """Refuse a local checkpoint whose files are missing or unreadable, naming the file: a
    ``*.json`` that is not JSON (``config.json``, ``tokenizer.json``, ...), no tokenizer at all
    (:data:`TOKENIZER_FILES`; transformers would blame a missing ``sentencepiece``), or a
    ``*.safetensors`` file shorter than its header says (truncated by an interrupted copy).

    What the weights hold is checked after they are read (:func:`check_loaded`): the
    parameters the config describes against the file's, and every weight finite."""
    path = Path(path)
    for f in sorted(path.glob("*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TutorialError(f"checkpoint file {f} is not valid JSON ({exc}); copy or "
                                "save the checkpoint again") from None
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        raise TutorialError(
            f"checkpoint {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save "
            "it beside the weights with tokenizer.save_pretrained(directory)")
    if (path / "vocab.json").exists() and not (path / "tokenizer.json").exists() \
            and not (path / "merges.txt").exists():
        raise TutorialError(f"checkpoint {path} has vocab.json but no merges.txt (a BPE "
                            "tokenizer needs both); save it with tokenizer.save_pretrained()")
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        with f.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise TutorialError(f"checkpoint file {f} is truncated ({size} bytes); copy "
                                    "or save the checkpoint again")
            n = struct.unpack("<Q", head)[0]
            try:
                header = json.loads(fh.read(n)) if n <= size else None
            except ValueError:
                header = None
        if not isinstance(header, dict):
            raise TutorialError(f"checkpoint file {f} is truncated or corrupt (bad header); "
                                "copy or save the checkpoint again")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                  default=0)
        if size < 8 + n + end:
            raise TutorialError(f"checkpoint file {f} is truncated: {size} bytes, its header "
                                f"needs {8 + n + end}; copy or save the checkpoint again")


def transformers_level() -> int:
    """The level the ``transformers`` logger has when TransformerLens has not touched it: its
    level now if TransformerLens is not imported yet, else transformers' default
    (``$TRANSFORMERS_VERBOSITY`` or WARNING). TransformerLens sets it to ERROR at import."""
    if "transformer_lens" not in sys.modules:
        return logging.getLogger("transformers").getEffectiveLevel()
    from transformers.utils import logging as hf_logging

    return hf_logging._get_default_logging_level()


class LoadReport:
    """Capture what transformers reports about loading a checkpoint (its ``LoadStateDictInfo``:
    missing, unexpected and mismatched keys), while the context is active."""

    def __init__(self) -> None:
        self.infos: list[Any] = []
        self._module: Any = None
        self._original: Any = None

    def __enter__(self) -> "LoadReport":
        try:
            import transformers.modeling_utils as mu
        except ImportError:  # pragma: no cover
            return self
        original = getattr(mu, "log_state_dict_report", None)
        if original is None:  # another transformers version: nothing to capture
            return self

        def capture(*args: Any, **kwargs: Any) -> Any:
            info = kwargs.get("loading_info")
            if info is not None:
                self.infos.append(info)
            return original(*args, **kwargs)

        self._module, self._original = mu, original
        mu.log_state_dict_report = capture
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._module is not None:
            self._module.log_state_dict_report = self._original

    def keys(self, kind: str) -> list[str]:
        out: list[str] = []
        for info in self.infos:
            out += sorted(str(k) for k in (getattr(info, kind, None) or ()))
        return out


def check_loaded(source: str, bridge: Any, report: LoadReport) -> None:
    """After the weights were read: refuse parameters of the model body that the checkpoint
    does not hold or holds but the config does not use (a ``config.json`` that says 3 or 5
    layers over 4 layers of weights), and any non-finite weight. Missing *head* weights (a
    sentence encoder's checkpoint booted with a masked-LM head) are initialised at random by
    transformers: a warning says so."""
    hf = getattr(bridge, "original_model", None)
    prefix = str(getattr(hf, "base_model_prefix", "") or "")
    base = getattr(hf, prefix, None) if prefix else hf
    body_parts = {name for name, _ in base.named_children()} if base is not None else set()
    missing, unexpected = report.keys("missing_keys"), report.keys("unexpected_keys")

    def in_body(key: str) -> bool:
        """A parameter of the transformer body (embeddings, blocks, final norm), named with or
        without the base model's prefix; heads (a masked-LM head, a pooler the model does not
        have) are not."""
        k = key[len(prefix) + 1:] if prefix and key.startswith(prefix + ".") else key
        return k.split(".")[0] in body_parts

    body = [k for k in missing + unexpected if in_body(k)]
    if body:
        n_layers = getattr(getattr(hf, "config", None), "num_hidden_layers", None)
        n_missing = len(set(body) & set(missing))
        raise TutorialError(
            f"checkpoint {source} does not match its config.json: the config describes "
            f"{n_layers} layers and these parameters are "
            f"{'missing from the weights' if n_missing else 'in the weights but not in the config'}"
            f": {body[:6]}{' ...' if len(body) > 6 else ''} ({n_missing} missing, "
            f"{len(body) - n_missing} unexpected). Loading it would run a model with random or "
            "ignored layers; fix config.json (n_layer / num_hidden_layers, sizes) or save the "
            "checkpoint again")
    head = [k for k in missing if not in_body(k)]
    if head:
        warnings.warn(f"checkpoint {source} has no weights for {head[:4]}"
                      f"{' ...' if len(head) > 4 else ''}: transformers initialised them at "
                      "random, so use the model's internals, not its predictions",
                      stacklevel=user_stacklevel())
    for name, p in (hf.named_parameters() if hf is not None else bridge.named_parameters()):
        if p.device.type == "meta" or not p.dtype.is_floating_point:
            continue
        if not bool(torch.isfinite(p).all()):
            n_bad = int((~torch.isfinite(p)).sum())
            raise TutorialError(
                f"checkpoint {source}: weight {name!r} holds {n_bad} non-finite value(s) (NaN "
                f"or inf) of {p.numel()}; every output would be NaN. The training run diverged "
                "or the file was damaged: use another checkpoint")
