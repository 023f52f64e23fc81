"""Figures name context-mixing methods readably: every method of the library has a name."""

from __future__ import annotations

import pytest

from tutorial_utils import context_mixing as cm
from tutorial_utils import plotting
from tutorial_utils.context_mixing.evaluation import DECOMPX_PREDICTION
from tutorial_utils.errors import TutorialError


def test_every_method_has_a_readable_name():
    for method in [*cm.METHODS, DECOMPX_PREDICTION]:
        name = plotting.mixing_method_name(method)
        assert name != method and "_" not in name, method
    names = [plotting.mixing_method_name(m) for m in [*cm.METHODS, DECOMPX_PREDICTION]]
    assert len(set(names)) == len(names)  # no two methods share a name


def test_unknown_names_fall_back_and_bad_input_is_refused():
    assert plotting.mixing_method_name("my_new_method") == "my new method"
    with pytest.raises(TutorialError, match="string"):
        plotting.mixing_method_name(3)
