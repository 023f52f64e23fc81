"""Every exercise's reference solution (:mod:`tutorial_utils.course.solutions`), the code the
cells after an unsolved exercise run on, passes its own check on the course's models."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.course.answers import exercise_checks
from tutorial_utils.course.checks import nb00, nb01, nb02, nb03, nb04, nb05

pytestmark = pytest.mark.usefixtures("lenient_checks")


def test_every_check_falls_back_on_a_reference_solution():
    for module in (nb00, nb01, nb02, nb03, nb04, nb05):
        for name, check in exercise_checks(module).items():
            fallback = check.reference or check.reference_from
            assert fallback is not None, name
            if check.reference is not None:
                assert check.reference.__module__ == module.__name__.replace("checks", "solutions")


def _passes(check, *args, **kwargs):
    result = check.judge(check.reference, *args, **kwargs)
    assert result.passed, f"{check!r}: {result.message}"


@pytest.mark.parametrize("check", [nb00.check_induction_score, nb01.check_train_probe,
                                   nb01.check_control_task, nb01.check_inlp, nb02.check_rollout,
                                   nb02.check_cue_share_per_layer, nb03.check_ablate_head,
                                   nb03.check_upweight_score, nb04.check_composition_score,
                                   nb04.check_patch_key_input, nb04.check_copying_score,
                                   nb04.check_head_dla, nb05.check_eap_all_edges,
                                   nb05.check_ig_gradient, nb05.check_top_n_edges,
                                   nb05.check_faithfulness_curve], ids=repr)
def test_reference_passes_its_check(check):
    _passes(check)


def test_reference_faithfulness_passes():
    _passes(nb04.check_faithfulness, 0.5, 1.0, 0.0, 0.5)


@pytest.mark.parametrize("check", [nb00.check_residual_sum, nb01.check_gradient_x_input,
                                   nb01.check_integrated_gradients, nb01.check_occlusion],
                         ids=repr)
def test_reference_passes_on_the_decoder(check, model):
    _passes(check, model)


def test_references_pass_on_the_encoder():
    from tutorial_utils.models import load_encoder

    with torch.no_grad():
        encoder = load_encoder("tiny-bert-tasks")
        tokens = encoder.to_tokens("The keys on the cabinet [MASK] red.")
        for check in (nb02.check_attention_norm, nb02.check_alti_layer,
                      nb02.check_value_zeroing_one_token):
            _passes(check, encoder, tokens)


def test_references_pass_on_the_circuit_model(hooked_model):
    from tutorial_utils.tasks import make_greater_than, make_sva

    ds = make_greater_than(hooked_model, n=8, seed=2)
    with torch.no_grad():
        _passes(nb03.check_head_sweep, hooked_model, ds, layer=0)
        _passes(nb03.check_patch_edge, hooked_model, ds, [("embed", "a0.h0.v"),
                                                          ("a0.h1", "a1.h0.k")])
        _passes(nb03.check_node_faithfulness, hooked_model, ds, ["embed", "a0.h0", "m0", "m3"])
        sva = make_sva(hooked_model, n=8, seed=0)
        circuit, faithfulness = nb03.check_sva_faithfulness.reference_from(hooked_model, sva)
        result = nb03.check_sva_faithfulness.judge(hooked_model, sva, circuit, faithfulness)
        assert result.passed, result.message
