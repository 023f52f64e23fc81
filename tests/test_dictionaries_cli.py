"""The dictionary-training command line checks its arguments before any work: a misspelt
``--only`` name or ``--steps 0`` stops with ``error: ...`` (exit 2) before the model is loaded,
and a partial ``--only`` run keeps the whole run's recorded wall time."""

from __future__ import annotations

import json

import pytest

from tutorial_utils.course import dictionaries
from tutorial_utils.course.dictionaries import RunConfig, main, specs, total_wall_time
from tutorial_utils.errors import TutorialError


@pytest.fixture
def no_work(monkeypatch):
    """Loading the model or computing task features fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(dictionaries.UnfoldedGPT2, "from_pretrained", forbidden)
    monkeypatch.setattr(dictionaries, "add_task_features", forbidden)


def refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--only", "transcoder_m9"], "--only: no dictionary named 'transcoder_m9'"),
    (["--only", "sae_resid3_topk", "sae_resid3_tpok"], "no dictionary named 'sae_resid3_tpok'"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--steps", "-5"], "--steps must be an integer >= 1, got -5"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--train-docs", "0"], "--train-docs must be an integer >= 1, got 0"),
    (["--task-n", "1"], "--task-n must be an integer >= 2, got 1"),
    (["--sae-k", "2000"], "--sae-k (2000) must be at most --sae-width (1024)"),
    (["--transcoder-k", "0"], "--transcoder-k must be an integer >= 1, got 0"),
    (["--lr", "0"], "--lr must lie in (0, 1]"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--sae-l1", "-1"], "--sae-l1 must lie in [0, inf]"),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, tmp_path, capsys, no_work):
    out = tmp_path / "dicts"
    err = refused([*argv, "--out", str(out)], capsys)
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_the_error_for_a_misspelt_name_lists_the_names(tmp_path, capsys, no_work):
    err = refused(["--only", "transcoder_3", "--out", str(tmp_path / "d")], capsys)
    for spec in specs(RunConfig()):
        assert spec.name in err


def test_a_misspelt_option_is_an_error(tmp_path, capsys, no_work):
    assert "unrecognized arguments: --step" in refused(["--step", "5", "--out", str(tmp_path)],
                                                       capsys)


def test_task_features_only_needs_trained_saes(tmp_path, capsys, no_work):
    err = refused(["--task-features-only", "--out", str(tmp_path)], capsys)
    assert "holds no trained SAE" in err


def test_run_checks_its_config_too(tmp_path, no_work):
    """A Python caller of run() gets the same TutorialError, before the model is loaded."""
    with pytest.raises(TutorialError, match="--steps must be an integer >= 1"):
        dictionaries.run(RunConfig(steps=0), tmp_path / "d")
    with pytest.raises(TutorialError, match="no dictionary named 'x'"):
        dictionaries.run(RunConfig(only=("x",)), tmp_path / "d")


def test_only_names_select_the_dictionaries():
    names = [s.name for s in specs(RunConfig(only=("transcoder_m1", "sae_resid3_topk")))]
    assert names == ["sae_resid3_topk", "transcoder_m1"]
    assert len(specs(RunConfig())) == 6


def test_a_partial_run_keeps_the_whole_runs_wall_time(tmp_path):
    full = RunConfig()
    partial = RunConfig(only=("transcoder_m1",))
    every = RunConfig(only=tuple(s.name for s in specs(full)))
    assert total_wall_time(full, tmp_path, 123.0) == 123.0
    assert total_wall_time(every, tmp_path, 7.0) == 7.0
    assert total_wall_time(partial, tmp_path, 5.0) is None            # nothing recorded yet
    (tmp_path / "replacement.json").write_text(json.dumps({"total_wall_time_s": 3600.0}))
    assert total_wall_time(partial, tmp_path, 5.0) == 3600.0
    assert total_wall_time(full, tmp_path, 4000.0) == 4000.0
