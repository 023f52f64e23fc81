"""The "Now on GPT-2 small / BERT" section at the end of each notebook.

Each notebook ends with one cell::

    from tutorial_utils.course.large_model import run_section
    RUN_LARGE = None   # None: run when the Hugging Face hub answers; True: run; False: skip
    large = run_section("01", run=RUN_LARGE)

Offline (CI, a laptop without network) that prints one line saying the section was skipped and
why, and returns ``None``. Online it loads the published model(s) (GPT-2 small; BERT-base for
context mixing), runs the notebook's analysis with the same library calls at a size that fits a
free Colab CPU, prints the numbers next to the published ones (labelled as such), and returns
them. The per-notebook functions (:data:`SECTION_FUNCTIONS`) take already-loaded models, so the
tests run them on random-weight checkpoints of GPT-2 small's and BERT-base's exact shapes
(:func:`build_random_checkpoint`, no download).

Sizes: every section has a size knob (``n_examples``, ``batch``, ...) whose default runs in
about a minute or two on a 2-core CPU (``benchmarks/bench_large_model_sections.py`` measures
time and peak memory); on a GPU pass larger values, e.g. ``run_section("03", run=True,
n_examples=64)``.

Nothing here assumes the offline model: layer and head counts come from ``model.cfg``, head
names from :func:`tutorial_utils.composition.head_name` / ``parse_head``, special tokens from the
tokenizer (GPT-2 has no ``<unk>``: its unknown, BOS and EOS token is ``<|endoftext|>``).
"""


from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ...models import load_encoder, load_model
from ...errors import TutorialError
from ...models import hub_reachable
from .checkpoints import build_random_checkpoint, task_counts
from .common import PUBLISHED, SECTIONS, no_progress_bars
from .nb00 import InductionSection, section_00
from .nb01 import BaselinesSection, section_01
from .nb02 import ContextMixingSection, section_02
from .nb03 import PatchingSection, section_03
from .nb04 import CompositionSection, section_04
from .nb05 import EdgeAttributionSection, section_05
from .nb06 import FeaturesSection, section_06

#: notebook id -> (the section function, the models it takes in order, hooks=True needed)
SECTION_FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[str, ...], bool]] = {
    "00": (section_00, ("decoder",), False),
    "01": (section_01, ("decoder",), False),
    "02": (section_02, ("encoder", "decoder"), False),
    "03": (section_03, ("decoder",), True),
    "04": (section_04, ("decoder",), True),
    "05": (section_05, ("decoder",), True),
    "06": (section_06, ("decoder",), False),
}


def run_section(notebook: str, run: bool | None = None, **kwargs: Any) -> Any:
    """Run notebook ``notebook``'s large-model section (see the module docstring).

    ``run=None`` runs it when :func:`~tutorial_utils.models.hub_reachable`, ``False`` skips,
    ``True`` runs (and fails loudly if the download fails). Extra keyword arguments go to the
    section (e.g. ``n_examples`` for a GPU), except ``decoder`` / ``encoder`` (default
    ``"gpt2"`` / ``"bert-base-uncased"``: a model name, a local checkpoint directory, or an
    already-loaded model) and ``device``, which choose what is loaded.
    """
    if notebook not in SECTIONS:
        raise TutorialError(f"unknown notebook {notebook!r}; valid: {sorted(SECTIONS)}")
    what, needs = SECTIONS[notebook]
    if run is None:
        run = hub_reachable()
        if not run:
            print(f"Skipped the large-model section ({what} on {' and '.join(needs)}): the "
                  "Hugging Face hub is not reachable here. Online (e.g. on Colab) it runs by itself.")
            return None
    if not run:
        print(f"Skipped the large-model section ({what} on {' and '.join(needs)}): RUN_LARGE = False.")
        return None

    fn, takes, hooks = SECTION_FUNCTIONS[notebook]
    sources = {"decoder": kwargs.pop("decoder", "gpt2"),
               "encoder": kwargs.pop("encoder", "bert-base-uncased")}
    device = kwargs.pop("device", None)
    models = []
    for kind in takes:
        src = sources[kind]
        if not isinstance(src, (str, Path)):
            models.append(src)  # already loaded
        elif kind == "decoder":
            models.append(load_model(str(src), device=device, hooks=hooks))
        else:
            models.append(load_encoder(str(src), device=device))
    with no_progress_bars(), torch.no_grad():
        return fn(*models, **kwargs)
