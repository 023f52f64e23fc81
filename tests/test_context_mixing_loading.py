"""Loading the original (unfolded) weights for the context-mixing methods prints no progress bar
(notebook 02 saves its outputs, and a frozen "Loading weights 0%" bar would be saved with them)."""

from __future__ import annotations

from tutorial_utils import context_mixing as cm


def test_original_weights_load_without_a_progress_bar(capfd):
    from tutorial_utils.context_mixing._weights import _CHECKPOINTS
    from tutorial_utils.models import load_course_model

    model = load_course_model("tiny-gpt2-tasks")
    _CHECKPOINTS.pop(model, None)
    capfd.readouterr()
    cm.original_hf_model(model)
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
