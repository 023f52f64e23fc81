"""Exercise checks judge any answer and are fooled by none (issue 23), class by class: NaN never
passes, answers a check cannot use (None, a string, a result object) get a verdict instead of a
crash, and correct answers are accepted whatever their type (tensor, numpy, list, integer
masks). The root of each is in :mod:`tutorial_utils.course.grading`; these are the cases found
on the checks themselves."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tutorial_utils.course.checks import nb02, nb03, nb04, nb05
from tutorial_utils.course.solutions import nb02 as s02
from tutorial_utils.course.solutions import nb03 as s03
from tutorial_utils.course.solutions import nb04 as s04
from tutorial_utils.course.solutions import nb05 as s05

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.usefixtures("lenient_checks")


def _returning(value):
    return lambda *args, **kwargs: value


class TestNaNNeverPasses:
    def test_node_faithfulness_returning_nan(self, hooked_model):
        from tutorial_utils.tasks import make_greater_than

        ds = make_greater_than(hooked_model, n=8, seed=2)
        result = nb03.check_node_faithfulness.judge(_returning(float("nan")), hooked_model, ds,
                                                    ["embed", "m0"])
        assert not result.passed and "NaN" in result.message

    @pytest.mark.parametrize("check", [nb02.check_rollout, nb02.check_cue_share_per_layer,
                                       nb04.check_head_dla, nb05.check_ig_gradient,
                                       nb05.check_faithfulness_curve, nb03.check_upweight_score])
    def test_functions_returning_nan(self, check):
        result = check.judge(lambda *a, **k: torch.full((2,), float("nan")))
        assert not result.passed and "NaN" in result.message, result.message

    def test_faithfulness_of_nan_metrics(self):
        result = nb04.check_faithfulness.judge(_returning(float("nan")), 0.5, 1.0, 0.0, 0.5)
        assert not result.passed and "NaN" in result.message


class TestUnusableAnswersAreJudgedNotCrashedOn:
    @pytest.mark.parametrize("check", [nb02.check_rollout, nb02.check_cue_share_per_layer,
                                       nb05.check_faithfulness_curve, nb05.check_top_n_edges,
                                       nb04.check_copying_score, nb03.check_ablate_head])
    @pytest.mark.parametrize("value, words", [
        (None, "is None"), ("0.5", "a str"), (SimpleNamespace(faithfulness=0.5), "a SimpleNamespace"),
    ])
    def test_function_answers(self, check, value, words):
        result = check.judge(_returning(value))
        assert not result.passed and not result.not_done and words in result.message, \
            result.message

    @pytest.mark.parametrize("faithfulness, words", [(None, "is None"), ("high", "a str"),
                                                    (SimpleNamespace(), "a SimpleNamespace")])
    def test_sva_faithfulness_values(self, hooked_model, faithfulness, words):
        from tutorial_utils.tasks import make_sva

        sva = make_sva(hooked_model, n=8, seed=0)
        result = nb03.check_sva_faithfulness.judge(hooked_model, sva, ["embed", "m0"], faithfulness)
        assert not result.passed and words in result.message, result.message


class TestCorrectAnswersOfAnyTypeAreAccepted:
    @pytest.mark.parametrize("convert", [lambda t: t.numpy(), lambda t: t.tolist(),
                                         lambda t: t.double()], ids=["numpy", "list", "float64"])
    @pytest.mark.parametrize("check, reference", [
        (nb03.check_upweight_score, s03.upweight_score),
        (nb05.check_ig_gradient, s05.ig_gradient),
        (nb04.check_head_dla, s04.head_dla),
        (nb05.check_faithfulness_curve, s05.faithfulness_by_size),
        (nb02.check_rollout, s02.rollout),
        (nb02.check_cue_share_per_layer, s02.cue_share_per_layer),
    ])
    def test_float_answers(self, check, reference, convert):
        result = check.judge(lambda *a: convert(torch.as_tensor(reference(*a))))
        assert result.passed, result.message

    @pytest.mark.parametrize("convert", [
        lambda m: m.to(torch.uint8), lambda m: m.long(), lambda m: m.numpy(),
        lambda m: m.int().tolist()], ids=["uint8", "int64", "numpy", "list"])
    def test_integer_and_numpy_masks(self, convert):
        result = nb05.check_top_n_edges.judge(lambda *a: convert(s05.top_n_edges(*a)))
        assert result.passed, result.message

    def test_wrong_masks_still_fail(self):
        result = nb05.check_top_n_edges.judge(
            lambda s, r, n: s05.top_n_edges(s, r, n).to(torch.uint8) * 2)
        assert not result.passed and "True/False" in result.message
        result = nb05.check_top_n_edges.judge(lambda s, r, n: s05.top_n_edges(s.neg().exp(), r, n))
        assert not result.passed
