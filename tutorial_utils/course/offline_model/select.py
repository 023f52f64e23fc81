"""Choose the shipped checkpoint among a training run's snapshots, on task metrics *and* on the
composition evidence the course needs.

    python -m tutorial_utils.course.offline_model.train --out runs/v6 ... --snapshots
    python -m tutorial_utils.course.offline_model.select runs/v6 --out data/models/tiny-attn-tasks

Why a second step: the trainer's own selection scores task metrics only (cheap, every 500
steps), but a checkpoint can meet them with a circuit the course cannot teach from. In the v6
runs, held-out IOI first rose with a name mover (a late head that attends from the final
position to the indirect object and copies it, its query fed by heads that attend to the
repeated subject, as in Wang et al. 2023) and then the model drifted towards other solutions.

Score of a snapshot (every term capped, so one cannot buy another):

* ``selection_score`` of :mod:`.train` on the *validation* draw (seed 1, 100 prompts per task,
  at most 7);
* :func:`composition_score` of :func:`.evaluate.composition_evidence` on canonical IOI prompts
  drawn with seed 1 (the card measures seed 0), at most 3:
  name mover copying / 0.8 + induction K-composition share / 0.5 + strongest head -> head
  edge / 0.10.

The chosen snapshot is copied to ``--out`` with the run's ``training_record.json``, whose
``selected_step`` becomes that snapshot's step, ``selection`` holds every snapshot's scores, and
``final_metrics``/``bar`` are re-measured on the held-out test draw (seed 0, 200 prompts).
Scores are cached in ``RUN/selection_scores.json`` (per step, with the snapshot file's time), so
running ``select`` again, or while training still writes snapshots, measures only new ones.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ...errors import TutorialError
from .cli_checks import check_weights, check_writable_dir, read_json
from ...models import load_model
from .evaluate import composition_evidence, evaluate_model
from .train import selection_score


#: Below this clean - corrupted IOI logit difference the IOI terms count 0.
MIN_IOI_GAP = 1.0


def composition_score(evidence: dict[str, Any]) -> float:
    """How much of the composition bar a checkpoint shows, in [0, 3]:

    ``min(c / 0.8, 1) + min(k / 0.5, 1) + min(e / 0.10, 1)`` with ``c`` the copying score of the
    strongest *name mover* (a head with a direct effect on the IOI logit difference that attends
    from END more to IO than to S2; 0 if none), ``k`` the share of the induction effect removed by
    patching the previous-token heads into the induction heads' keys alone (negative counts 0),
    ``e`` the largest ``|effect|`` of a head -> head edge into a query, key or value input. The
    IOI terms (``c``, ``e``) count 0 when the clean - corrupted logit difference is below
    ``MIN_IOI_GAP``: they are shares of that gap, and a model that does not do IOI yet makes
    them noise.
    """
    ioi = evidence["ioi"]
    gap = ioi["logit_diff_clean"] - ioi["logit_diff_corrupted"]
    if gap < MIN_IOI_GAP:  # the IOI shares are fractions of this gap: noise when it is small
        ioi = {"name_movers": [], "head_to_head_edges": []}
    movers = [m for m in ioi["name_movers"]
              if m["attention_end_to_io"] > m["attention_end_to_s2"]]
    copy = max((m["copying_score"] for m in movers), default=0.0)
    k = max(evidence["induction"]["effect_removed_via"]["k"], 0.0)
    edge = max((abs(e["effect"]) for e in ioi["head_to_head_edges"]), default=0.0)
    return min(copy / 0.8, 1.0) + min(k / 0.5, 1.0) + min(edge / 0.10, 1.0)


def snapshot_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``run_dir/snapshots/step-N``, by step."""
    found = []
    for p in (Path(run_dir) / "snapshots").glob("step-*"):
        m = re.fullmatch(r"step-(\d+)", p.name)
        if m and (p / "model.safetensors").exists():
            found.append((int(m.group(1)), p))
    if not found:
        raise TutorialError(f"no snapshots under {Path(run_dir) / 'snapshots'}: train with "
                            "--snapshots")
    return sorted(found)


def score_snapshot(path: Path) -> dict[str, Any]:
    """Validation metrics, composition evidence (seed 1) and the two scores of one snapshot."""
    from transformers import AutoTokenizer, GPT2LMHeadModel


    hf = GPT2LMHeadModel.from_pretrained(str(path), attn_implementation="eager").eval()
    metrics = evaluate_model(hf, AutoTokenizer.from_pretrained(str(path)), n=100, seed=1)
    evidence = composition_evidence(load_model(str(path), device="cpu", hooks=True,
                                               verbose=False), seed=1)
    return {"task_score": round(selection_score(metrics), 4), "metrics": metrics.as_dict(),
            "evidence": evidence}


def summarise(measured: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's scores from what :func:`score_snapshot` measured."""
    ev = measured["evidence"]
    comp = composition_score(ev)
    gap = ev["ioi"]["logit_diff_clean"] - ev["ioi"]["logit_diff_corrupted"]
    movers = [m for m in ev["ioi"]["name_movers"]
              if m["attention_end_to_io"] > m["attention_end_to_s2"] and gap >= MIN_IOI_GAP]
    return {"task_score": measured["task_score"], "composition_score": round(comp, 4),
            "total": round(measured["task_score"] + comp, 4),
            "name_movers": [m["head"] for m in movers],
            "name_mover_copying": max((m["copying_score"] for m in movers), default=0.0),
            "induction_k": ev["induction"]["effect_removed_via"]["k"],
            "ioi_gap": round(gap, 4)}


def choose(scores: dict[int, dict[str, Any]]) -> int:
    """The step with the highest total score (the later step on a tie)."""
    if not scores:
        raise TutorialError("no snapshot scores to choose from")
    return max(scores, key=lambda step: (scores[step]["total"], step))


def check_run(run_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Everything :func:`select` reads or writes, checked before any snapshot is measured: the
    run's record and score cache parse, every snapshot's config parses and its weights read and
    are finite, and ``out`` can be written. Returns the score cache (``{}`` if none yet)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TutorialError(f"run folder {run_dir} does not exist: give the --out folder of a "
                            "training run (offline_model.train --snapshots)")
    if not (run_dir / "training_record.json").exists():
        raise TutorialError(f"{run_dir / 'training_record.json'} is missing: the training run "
                            "has not finished (select reads its record)")
    record = read_json(run_dir / "training_record.json", "the training record")
    if not isinstance(record, dict):
        raise TutorialError(f"{run_dir / 'training_record.json'} is not a training record (a "
                            "JSON object written by offline_model.train)")
    cache_path = run_dir / "selection_scores.json"
    cache = read_json(cache_path, "the score cache") if cache_path.exists() else {}
    if not isinstance(cache, dict):
        raise TutorialError(f"the score cache {cache_path} is not a JSON object: delete it "
                            "(every snapshot is then measured again)")
    for _, path in snapshot_dirs(run_dir):  # raises if the run saved no snapshots
        read_json(path / "config.json", "the snapshot's config")
        check_weights(path)
    check_writable_dir(Path(out))
    return cache


def select(run_dir: str | Path, out: str | Path, log=print) -> dict[str, Any]:
    from transformers import AutoTokenizer, GPT2LMHeadModel


    run_dir, out = Path(run_dir), Path(out)
    cache = check_run(run_dir, out)  # before any measuring
    cache_path = run_dir / "selection_scores.json"  # scores already measured, by step
    scores = {}
    for step, path in snapshot_dirs(run_dir):
        stamp = (path / "model.safetensors").stat().st_mtime
        hit = cache.get(str(step))
        if not (isinstance(hit, dict) and hit.get("mtime") == stamp
                and {"task_score", "metrics", "evidence"} <= hit.keys()):  # stale or malformed
            try:
                cache[str(step)] = {**score_snapshot(path), "mtime": stamp}
            except Exception as err:  # name the snapshot: one bad file should not be a riddle
                raise TutorialError(f"measuring the snapshot {path} failed ({type(err).__name__}: "
                                    f"{err}); delete or restore it and run select again") from err
            cache_path.write_text(json.dumps(cache, indent=1) + "\n")
        scores[step] = summarise(cache[str(step)])
        s = scores[step]
        log(f"step {step}: task {s['task_score']:.3f} + composition "
            f"{s['composition_score']:.3f} = {s['total']:.3f} (name movers {s['name_movers']}, "
            f"induction k {s['induction_k']:.2f})")
    best = choose(scores)
    src = run_dir / "snapshots" / f"step-{best}"
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy2(f, out / f.name)
    record = read_json(run_dir / "training_record.json", "the training record")
    hf = GPT2LMHeadModel.from_pretrained(str(out), attn_implementation="eager").eval()
    final = evaluate_model(hf, AutoTokenizer.from_pretrained(str(out)), n=200)
    record.update({
        "selected_step": best,
        "selection": {"command": f"python -m tutorial_utils.course.offline_model.select RUN --out "
                                 f"{out}",
                      "scores": {str(k): s for k, s in scores.items()}},
        "final_metrics": final.as_dict(), "bar": final.meets_bar(),
    })
    record.pop("composition", None)  # re-measured by model_card --measure on this checkpoint
    record.pop("breakdown", None)
    (out / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"selected step {best} (total {scores[best]['total']:.3f}); wrote {out}")
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:  # the run's files and the output folder, before any snapshot is measured
        check_run(args.run_dir, args.out)
    except TutorialError as err:
        p.error(str(err))
    select(args.run_dir, args.out)


if __name__ == "__main__":
    main()
