"""The "Now on GPT-2 small / BERT" section at the end of each notebook.

Each notebook ends with one cell::

    from tutorial_utils.large_model_sections import run_section
    RUN_LARGE = None   # None: run when the Hugging Face hub answers; True: run; False: skip
    large = run_section("01", run=RUN_LARGE)

Offline (CI, a laptop without network) that prints one line saying the section was skipped and
why, and returns ``None``. Online it loads the published model(s) (GPT-2 small; BERT-base for
context mixing), runs the notebook's analysis with the same library calls at a size that fits a
free Colab CPU, prints the numbers next to the published ones (labelled as such), and returns
them. The per-notebook functions take already-loaded models, so the tests run them on
random-weight checkpoints of GPT-2 small's and BERT-base's exact shapes (no download).
"""

from __future__ import annotations

from typing import Any

from .models import hub_reachable
from .validation import TutorialError

__all__ = ["SECTIONS", "run_section"]

#: notebook id -> (what runs, which published models it needs)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "00": ("the residual stream and induction heads", ("gpt2",)),
    "01": ("behaviour, probing and input attribution", ("gpt2",)),
    "02": ("context mixing", ("bert-base-uncased", "gpt2")),
    "03": ("activation patching, logit lens and DLA on Greater-Than", ("gpt2",)),
    "04": ("induction and IOI composition", ("gpt2",)),
    "05": ("EAP, EAP-IG and faithfulness on Greater-Than", ("gpt2",)),
}


def run_section(notebook: str, run: bool | None = None, **kwargs: Any) -> Any:
    """Run notebook ``notebook``'s large-model section (see the module docstring).

    ``run=None`` runs it when :func:`~tutorial_utils.models.hub_reachable`, ``False`` skips,
    ``True`` runs (and fails loudly if the download fails). Extra keyword arguments go to the
    section (e.g. ``n_examples`` for a GPU).
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
    raise NotImplementedError("large-model sections are being written (issue 12)")
