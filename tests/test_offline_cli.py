"""The offline-model command lines check their arguments and files before any work (issue 23):
a clear ``error: ...`` and exit status 2, never a traceback, never an hour of training first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tutorial_utils.course.offline_model import model_card, select, train, train_mlm
from tutorial_utils.errors import TutorialError
from tutorial_utils.paths import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
ATTN = DATA_DIR / "models" / "tiny-attn-tasks"


@pytest.fixture
def no_work(monkeypatch):
    """Any real work (building a model, scoring a snapshot, measuring a card) fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(train, "build_model", forbidden)
    monkeypatch.setattr(train, "corpus_vocab", forbidden)
    monkeypatch.setattr(train_mlm, "build_mlm", forbidden)
    monkeypatch.setattr(select, "score_snapshot", forbidden)
    monkeypatch.setattr(model_card, "measure_breakdown", forbidden)


def refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# --- train -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--steps", "-5"], "--steps must be an integer >= 1, got -5"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--eval-every", "0"], "--eval-every must be an integer >= 1, got 0"),
    (["--n-embd", "100", "--n-head", "8"], "--n-embd (100) must be a multiple of --n-head (8)"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "0"], "--lr must lie in (0, 1]"),
    (["--warmup", "500", "--steps", "100"], "--warmup (500) must be smaller than --steps (100)"),
    (["--n-ctx", "8"], "--n-ctx must be an integer >= 32"),
    (["--ioi-distractor", "1.5"], "--ioi-distractor must lie in [0, 1]"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
])
def test_train_refuses_bad_arguments_before_any_work(argv, message, tmp_path, capsys, no_work):
    out = tmp_path / "run"
    err = refused(train.main, [*argv, "--out", str(out)], capsys)
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_train_refuses_an_unwritable_out_before_training(tmp_path, capsys, no_work):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = refused(train.main, ["--steps", "1000", "--out", str(blocker / "run")], capsys)
    assert f"--out {blocker / 'run'} cannot be written" in err
    err = refused(train.main, ["--steps", "1000", "--out", str(blocker)], capsys)
    assert "is a file, not a folder" in err


def test_train_function_checks_too(tmp_path, no_work):
    """A Python caller of train() gets the same TutorialError, before any model is built."""
    with pytest.raises(TutorialError, match="--steps must be an integer >= 1"):
        train.train(train.TrainConfig(steps=0), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_misspelt_option_is_an_error(tmp_path, capsys, no_work):
    err = refused(train.main, ["--step", "10", "--out", str(tmp_path)], capsys)
    assert "unrecognized arguments: --step" in err


def test_train_mlm_refuses_bad_arguments_before_any_work(tmp_path, capsys, no_work):
    for argv, message in ((["--steps", "-5"], "--steps must be an integer >= 1"),
                          (["--p-mask", "0"], "--p-mask must be above 0"),
                          (["--d-model", "100", "--n-head", "3"], "must be a multiple of --n-head")):
        err = refused(train_mlm.main, [*argv, "--out", str(tmp_path / "mlm")], capsys)
        assert message in err
    assert not (tmp_path / "mlm").exists()


def test_train_entry_point_exits_2_with_a_message():
    """The real command, as a user types it: ``--steps -5`` used to train and save (exit 0)."""
    result = subprocess.run([sys.executable, "-m", "tutorial_utils.course.offline_model.train",
                             "--steps", "-5", "--out", "/nonexistent-dir-never-created/run"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "error: --steps must be an integer >= 1, got -5" in result.stderr
    assert "Traceback" not in result.stderr


# --- model_card --------------------------------------------------------------------------------

def test_model_card_refuses_a_misspelt_option(capsys, no_work):
    err = refused(model_card.main, [str(ATTN), "--measur"], capsys)
    assert "unrecognized arguments: --measur" in err


def test_model_card_refuses_the_masked_lm_folder(capsys, no_work):
    err = refused(model_card.main, [str(DATA_DIR / "models" / "tiny-bert-tasks")], capsys)
    assert "holds a 'bert' model" in err and "train_mlm" in err and "Traceback" not in err


def test_model_card_names_a_missing_folder_or_a_corrupt_record(tmp_path, capsys, no_work):
    err = refused(model_card.main, [str(tmp_path / "nothing")], capsys)
    assert f"model folder {tmp_path / 'nothing'} does not exist" in err
    copy = tmp_path / "model"
    shutil.copytree(ATTN, copy)
    (copy / "training_record.json").write_text('{"train_config": ')
    err = refused(model_card.main, [str(copy), "--measure"], capsys)
    assert f"{copy / 'training_record.json'} is not valid JSON" in err
    (copy / "training_record.json").write_text(json.dumps({"train_config": {}}))
    err = refused(model_card.main, [str(copy)], capsys)
    assert "lacks corpus_config" in err and "train_config.n_layer" in err


def test_model_card_measure_refuses_corrupt_weights_before_measuring(tmp_path, capsys, no_work):
    copy = tmp_path / "model"
    shutil.copytree(ATTN, copy)
    weights = load_file(str(copy / "model.safetensors"))
    name = next(k for k, t in weights.items() if t.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(copy / "model.safetensors"))
    err = refused(model_card.main, [str(copy), "--measure"], capsys)
    assert "holds NaN or inf weights" in err and str(copy / "model.safetensors") in err


def test_model_card_accepts_the_shipped_decoders():
    for name in ("tiny-attn-tasks", "tiny-gpt2-tasks"):
        assert model_card.check_model_dir(DATA_DIR / "models" / name)["train_config"]


# --- select ------------------------------------------------------------------------------------

def make_run(tmp_path: Path, steps=(500, 1000)) -> Path:
    """A finished run with real (shipped) snapshots."""
    run = tmp_path / "run"
    for step in steps:
        shutil.copytree(ATTN, run / "snapshots" / f"step-{step}")
    shutil.copy(ATTN / "training_record.json", run / "training_record.json")
    return run


def test_select_refuses_a_missing_run(tmp_path, capsys, no_work):
    err = refused(select.main, [str(tmp_path / "nothing"), "--out", str(tmp_path / "out")], capsys)
    assert "does not exist" in err


def test_select_names_a_corrupt_record_before_measuring(tmp_path, capsys, no_work):
    run = make_run(tmp_path)
    (run / "training_record.json").write_text("{not json")
    err = refused(select.main, [str(run), "--out", str(tmp_path / "out")], capsys)
    assert f"{run / 'training_record.json'} is not valid JSON" in err
    assert not (tmp_path / "out").exists()


def test_select_names_a_corrupt_score_cache(tmp_path, capsys, no_work):
    run = make_run(tmp_path)
    (run / "selection_scores.json").write_text("[1, 2")
    err = refused(select.main, [str(run), "--out", str(tmp_path / "out")], capsys)
    assert f"{run / 'selection_scores.json'} is not valid JSON" in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "nan"])
def test_select_names_a_corrupt_snapshot_before_measuring_any(damage, tmp_path, capsys, no_work):
    run = make_run(tmp_path)
    weights = run / "snapshots" / "step-1000" / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * weights.stat().st_size)
    else:
        tensors = load_file(str(weights))
        name = next(k for k, t in tensors.items() if t.is_floating_point())
        tensors[name][0] = float("nan")
        save_file(tensors, str(weights))
    err = refused(select.main, [str(run), "--out", str(tmp_path / "out")], capsys)
    assert str(weights) in err and "Traceback" not in err


def test_select_refuses_an_unwritable_out_before_measuring(tmp_path, capsys, no_work):
    run = make_run(tmp_path, steps=(500,))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = refused(select.main, [str(run), "--out", str(blocker / "out")], capsys)
    assert "cannot be written" in err
