"""Snapshot selection of the offline decoder (:mod:`tutorial_utils.course.offline_model.select`): the
composition score reads the evidence the way the issue's bar states it, and the choice is the
best total."""

from __future__ import annotations

import pytest

from tutorial_utils.errors import TutorialError
from tutorial_utils.course.offline_model.select import (choose, composition_score, select,
                                                 snapshot_dirs)


def evidence(movers=(), k=0.0, edges=(), gap=5.0):
    return {"ioi": {"name_movers": list(movers), "head_to_head_edges": list(edges),
                    "logit_diff_clean": gap - 2.0, "logit_diff_corrupted": -2.0},
            "induction": {"effect_removed_via": {"q": 0.0, "k": k, "v": 0.0}}}


def mover(copy, io, s2, head="a3.h6"):
    return {"head": head, "direct_effect": 0.4, "copying_score": copy,
            "attention_end_to_io": io, "attention_end_to_s2": s2}


def test_a_model_meeting_the_whole_bar_scores_three():
    ev = evidence([mover(0.85, 0.7, 0.05)], k=0.6, edges=[{"effect": 0.3}])
    assert composition_score(ev) == pytest.approx(3.0)


def test_terms_are_capped_shares_of_their_targets():
    ev = evidence([mover(0.4, 0.7, 0.05)], k=0.25, edges=[{"effect": -0.05}])
    assert composition_score(ev) == pytest.approx(0.5 + 0.5 + 0.5)


def test_a_head_attending_to_the_subject_is_not_a_name_mover():
    """A head that attends END -> S2 and happens to copy does not count: name movers attend to IO."""
    ev = evidence([mover(0.9, 0.1, 0.8)], k=0.0)
    assert composition_score(ev) == 0.0
    ev = evidence([mover(0.9, 0.1, 0.8, "a1.h5"), mover(0.4, 0.6, 0.0)])
    assert composition_score(ev) == pytest.approx(0.5)


def test_ioi_terms_count_zero_when_the_model_does_not_do_ioi():
    """Shares of a clean - corrupted gap near 0 are noise (an untrained model's edges can read
    +1.0); only the induction term remains."""
    ev = evidence([mover(0.9, 0.7, 0.0)], k=0.5, edges=[{"effect": 0.9}], gap=0.3)
    assert composition_score(ev) == pytest.approx(1.0)


def test_negative_k_share_counts_zero():
    assert composition_score(evidence(k=-0.3)) == 0.0


def test_choose_takes_the_best_total_and_the_later_step_on_a_tie():
    scores = {500: {"total": 5.0}, 1000: {"total": 7.5}, 1500: {"total": 7.5}, 2000: {"total": 6}}
    assert choose(scores) == 1500
    with pytest.raises(ValueError):
        choose({})


def test_a_run_without_snapshots_says_how_to_get_them(tmp_path):
    with pytest.raises(TutorialError, match="--snapshots"):
        snapshot_dirs(tmp_path)
    for step in (1000, 500, 10000):
        d = tmp_path / "snapshots" / f"step-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"")
    (tmp_path / "snapshots" / "step-x").mkdir()
    assert [s for s, _ in snapshot_dirs(tmp_path)] == [500, 1000, 10000]


def test_select_refuses_an_unfinished_run_before_measuring(tmp_path):
    d = tmp_path / "snapshots" / "step-500"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"not a model")  # would fail if it were read
    with pytest.raises(TutorialError, match="has not finished"):
        select(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
