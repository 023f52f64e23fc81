"""Train the dictionaries notebook 06 ships, on the course corpus, and write their cards.

    python -m tutorial_utils.course.dictionaries --out data/dictionaries

On ``tiny-gpt2-tasks`` (read on its own, unfolded weights): two sparse autoencoders on the
residual stream before block 3 (ReLU + L1, Bricken et al. 2023; TopK, Gao et al. 2024) and one
transcoder per MLP (Dunefsky et al. 2024), trained on activations of seeded documents of the
corpus the model was trained on (:mod:`tutorial_utils.course.offline_model.corpus`, another
seed), then evaluated on other documents and on held-out task prompts. Each dictionary is saved
as ``NAME.safetensors`` (float16) + ``NAME.json`` (config, metrics, command, wall time) +
``NAME.md`` (its card); ``README.md`` tabulates them. The figures on the cards are measured on
the saved (float16) weights.

Why resid_pre 3: at the answer position the subject's number of an agreement prompt is read
linearly from it at 0.975 accuracy on held-out prompts (difference of class means), against
0.82 before block 2 (:func:`number_probe`), so a feature tied to it is worth looking for there.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..features.dictionary import DictionaryConfig, SparseDictionary, load_dictionary
from ..features.evaluation import reconstruction_stats, splice_stats, splice_edit
from ..features.reading import edit_feature_metric, feature_correlations, feature_task_scores
from ..features.replacement import ReplacementModel
from ..features.training import TrainConfig, train_dictionary
from ..features.unfolded import UnfoldedGPT2
from ..errors import TutorialError
from ..paths import DATA_DIR
from ..tasks import make_task
from .offline_model.cli_checks import check_int, check_number, config_from_args
from .offline_model.corpus import CorpusGenerator

MODEL = "tiny-gpt2-tasks"
SAE_LAYER = 3


@dataclass
class Spec:
    """One dictionary to train."""

    name: str
    kind: str
    layer: int
    activation: str
    n_features: int
    k: int | None = None
    l1_coeff: float = 0.0
    seed: int = 0

    def config(self, d_model: int) -> DictionaryConfig:
        sites = ("resid_pre", "resid_pre") if self.kind == "sae" else ("ln2_out", "mlp_out")
        return DictionaryConfig(kind=self.kind, d_in=d_model, d_out=d_model,
                                n_features=self.n_features, activation=self.activation, k=self.k,
                                layer=self.layer, site_in=sites[0], site_out=sites[1],
                                model=MODEL)


@dataclass
class RunConfig:
    """Data and optimisation settings of the shipped run (the defaults). ``only``: train only
    these dictionaries (names as in :func:`specs`; empty = all six); ``task_features_only``:
    train nothing, only (re)compute the SAEs' task features in ``--out`` and rewrite the cards."""

    train_docs: int = 2000
    eval_docs: int = 200
    corpus_seed: int = 2024
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    task_n: int = 200
    sae_width: int = 1024
    sae_k: int = 16
    sae_l1: float = 0.15
    transcoder_width: int = 1024
    transcoder_k: int = 16
    only: tuple[str, ...] = ()
    task_features_only: bool = False


def specs(cfg: RunConfig) -> list[Spec]:
    """The shipped dictionaries (those named in ``cfg.only``, if any)."""
    out = [Spec("sae_resid3_relu", "sae", SAE_LAYER, "relu", cfg.sae_width, l1_coeff=cfg.sae_l1,
                seed=10),
           Spec("sae_resid3_topk", "sae", SAE_LAYER, "topk", cfg.sae_width, k=cfg.sae_k, seed=11)]
    out += [Spec(f"transcoder_m{l}", "transcoder", l, "topk", cfg.transcoder_width,
                 k=cfg.transcoder_k, seed=20 + l) for l in range(4)]
    return [s for s in out if not cfg.only or s.name in cfg.only]


def check_run_config(cfg: RunConfig) -> RunConfig:
    """Refuse a run that cannot train or would train nothing, before the model is loaded:
    counts and sizes integers >= 1 (``k`` at most the width), the learning rate in (0, 1], the
    L1 coefficient >= 0, and every ``--only`` name one of :func:`specs`."""
    for name in ("train_docs", "eval_docs", "steps", "batch_size", "sae_width", "transcoder_width"):
        check_int(getattr(cfg, name), name)
    check_int(cfg.task_n, "task_n", 2)
    check_int(cfg.corpus_seed, "corpus_seed", 0)
    for k, width in (("sae_k", "sae_width"), ("transcoder_k", "transcoder_width")):
        check_int(getattr(cfg, k), k)
        if getattr(cfg, k) > getattr(cfg, width):
            raise TutorialError(f"--{k.replace('_', '-')} ({getattr(cfg, k)}) must be at most "
                                f"--{width.replace('_', '-')} ({getattr(cfg, width)})")
    check_number(cfg.lr, "lr", 0.0, 1.0, low_open=True)
    check_number(cfg.sae_l1, "sae_l1", 0.0)
    known = [s.name for s in specs(RunConfig())]
    unknown = [n for n in cfg.only if n not in known]
    if unknown:
        raise TutorialError(f"--only: no dictionary named {', '.join(map(repr, unknown))}; the "
                            f"names are {', '.join(known)}")
    return cfg


def trains_everything(cfg: RunConfig) -> bool:
    """Whether ``cfg`` trains every shipped dictionary (a partial ``--only`` run does not)."""
    return {s.name for s in specs(cfg)} == {s.name for s in specs(RunConfig())}


def corpus_tokens(lm: UnfoldedGPT2, n_docs: int, seed: int) -> torch.Tensor:
    """``[n_docs, 64]`` documents of the course corpus (BOS first), from ``seed``.

    The vocabulary is passed in id order: a fast tokenizer's ``get_vocab()`` returns its
    entries in an arbitrary order that changes from call to call, and the generator draws the
    tokens of its random (induction) spans from that order."""
    vocab = dict(sorted(lm.tokenizer.get_vocab().items(), key=lambda kv: kv[1]))
    gen = CorpusGenerator(seed=seed)
    return torch.tensor(gen.batch(vocab, n_docs), dtype=torch.long)


def task_datasets(lm: UnfoldedGPT2, n: int) -> dict[str, object]:
    """Held-out prompts of the two tasks the features are read against (as on the model card)."""
    return {
        "greater_than": make_task("greater_than", lm.tokenizer, n=n, frames_split="heldout",
                                  nouns="heldout", years="heldout", seed=0),
        "sva": make_task("sva", lm.tokenizer, n=n, frames_split="heldout", nouns="heldout",
                         seed=0),
    }


@torch.no_grad()
def sae_task_metric(lm: UnfoldedGPT2, d: SparseDictionary, dataset) -> tuple[float, float]:
    """The task metric of the model and with the SAE's reconstruction spliced in."""
    edit, mlp = splice_edit(d, "spliced")
    toks = dataset.clean_tokens
    return (float(dataset.metric(lm.run(toks).logits)),
            float(dataset.metric(lm.run(toks, resid_edit=edit, mlp_override=mlp).logits)))


@torch.no_grad()
def number_probe(lm: UnfoldedGPT2, n: int = 400) -> dict[str, float]:
    """Held-out accuracy of a difference-of-means read-out of the subject's number at the
    answer position, before each block (the reason for the SAE's site)."""
    train = make_task("sva", lm.tokenizer, n=n, frames_split="train", seed=3)
    test = make_task("sva", lm.tokenizer, n=n // 2, frames_split="heldout", nouns="heldout",
                     seed=4)
    names = tuple(f"resid_pre.{l}" for l in range(lm.w.n_layers))
    out = {}

    def at_answer(ds):
        acts = lm.activations(ds.clean_tokens, names)
        return {k: v[torch.arange(len(ds)), ds.answer_pos] for k, v in acts.items()}
    a, b = at_answer(train), at_answer(test)
    y, yt = torch.tensor(train.meta["plural"]), torch.tensor(test.meta["plural"])
    for k in names:
        mu1, mu0 = a[k][y].mean(0), a[k][~y].mean(0)
        out[k] = float((((b[k] - (mu1 + mu0) / 2) @ (mu1 - mu0) > 0) == yt).float().mean())
    return out


@torch.no_grad()
def sae_task_features(lm: UnfoldedGPT2, sae: SparseDictionary, n: int = 200,
                      steer: tuple[float, ...] = (10.0, 20.0, 40.0)) -> dict:
    """The SAE feature most tied to each task variable, chosen on training-frame prompts and
    tested on held-out prompts (held-out frames and nouns):

    * agreement: the feature with the largest mean activation difference at the answer position
      between plural and singular subjects; ablated (set to 0) on plural-subject prompts, and
      its unit decoder direction added ``alpha`` times on singular-subject prompts (share of
      prompts the model got right whose metric turns negative: it now prefers the plural verb);
    * Greater-Than: the feature whose activation correlates most (in absolute value) with the
      start year's two digits; ablated on every prompt.
    """
    out: dict = {}
    train = make_task("sva", lm.tokenizer, n=n, frames_split="train", seed=3)
    test = make_task("sva", lm.tokenizer, n=n, frames_split="heldout", nouns="heldout", seed=4)
    score = feature_task_scores(lm, sae, train, train.meta["plural"])
    feat = int(score.argmax())
    plural = [i for i, p in enumerate(test.meta["plural"]) if p]
    singular = [i for i, p in enumerate(test.meta["plural"]) if not p]
    pl, sg = test.subset(plural), test.subset(singular)
    base_pl = edit_feature_metric(lm, sae, pl, feat, scale=None)
    abl_pl = edit_feature_metric(lm, sae, pl, feat, scale=0.0)
    base_sg = edit_feature_metric(lm, sae, sg, feat, scale=None)
    flips = {}
    right = base_sg > 0
    for a in steer:
        m = edit_feature_metric(lm, sae, sg, feat, scale=None, add=a)
        flips[str(a)] = {"metric": float(m.mean()),
                         "flip_rate": float(((m < 0) & right).float().sum() / right.sum())}
    held = feature_task_scores(lm, sae, test, test.meta["plural"])
    out["sva"] = {"feature": feat, "train_score": float(score[feat]),
                  "heldout_score": float(held[feat]), "heldout_rank": int((held > held[feat]).sum()),
                  "plural_metric": float(base_pl.mean()), "plural_metric_ablated": float(abl_pl.mean()),
                  "singular_metric": float(base_sg.mean()), "steer_singular": flips}
    gtr = make_task("greater_than", lm.tokenizer, n=n, frames_split="train", seed=3)
    gte = make_task("greater_than", lm.tokenizer, n=n, frames_split="heldout", nouns="heldout",
                    years="heldout", seed=4)
    corr = feature_correlations(lm, sae, gtr, gtr.meta["yy"])
    feat = int(corr.abs().argmax())
    held = feature_correlations(lm, sae, gte, gte.meta["yy"])
    top5 = corr.abs().argsort(descending=True)[:5].tolist()
    base = edit_feature_metric(lm, sae, gte, feat, scale=None)
    abl = edit_feature_metric(lm, sae, gte, feat, scale=0.0)
    abl5 = edit_feature_metric(lm, sae, gte, top5, scale=0.0)
    out["greater_than"] = {"feature": feat, "train_corr": float(corr[feat]),
                           "heldout_corr": float(held[feat]), "metric": float(base.mean()),
                           "metric_ablated": float(abl.mean()), "top5": top5,
                           "top5_corr": [float(corr[i]) for i in top5],
                           "metric_top5_ablated": float(abl5.mean())}
    return out


def _card(name: str, meta: dict) -> str:
    c = meta["config"]
    m = meta["metrics"]
    kind = "Sparse autoencoder" if c["kind"] == "sae" else "Transcoder"
    act = f"TopK (k = {c['k']})" if c["activation"] == "topk" else \
        f"ReLU + L1 (coefficient {meta['train']['l1_coeff']})"
    reads = ("the residual stream before block {l} (`resid_pre`, the model's own numbers)"
             if c["kind"] == "sae" else
             "the MLP's input of block {l} (the `ln_2` output) and predicts the MLP's output")
    lines = [f"# {name}: {kind.lower()} of `{c['model']}`, layer {c['layer']}", "",
             f"{kind} with {c['n_features']:,} features, {act}; it reads "
             + reads.format(l=c["layer"]) + ". Decoder columns have unit norm.", "",
             "## Measured (float16 weights as shipped)", "",
             "| metric | value |", "| --- | --- |",
             f"| L0 (active features per token, corpus) | {m['l0']:.1f} |",
             f"| fraction of variance explained | {m['fve']:.3f} |",
             f"| dead features (never active on {m['n_tokens']:,} tokens) | {m['dead_fraction']:.1%} |",
             f"| next-token loss clean / spliced / site zeroed | {m['loss_clean']:.3f} / "
             f"{m['loss_spliced']:.3f} / {m['loss_zero']:.3f} |",
             f"| loss recovered | {m['loss_recovered']:.3f} |"]
    for task, v in meta["tasks"].items():
        lines.append(f"| {task}: metric model / spliced (kept) | {v['model']:.3f} / "
                     f"{v['spliced']:.3f} ({v['kept']:.2f}) |")
    if m["loss_zero"] - m["loss_clean"] < 0.1:
        lines.append(f"\nZeroing this site costs only {m['loss_zero'] - m['loss_clean']:.3f} nats per "
                     "token, so the loss-recovered ratio divides by a small number: read the "
                     "losses themselves (a ratio above 1 means the spliced model's loss is below "
                     "the model's).")
    tf = meta.get("task_features")
    if tf:
        sv, gt = tf["sva"], tf["greater_than"]
        steer = "; ".join(f"+{a}: metric {v['metric']:.3f}, flipped {v['flip_rate']:.0%}"
                          for a, v in sv["steer_singular"].items())
        lines += ["", "## Features tied to task variables (held-out prompts)", "",
                  f"* Agreement: feature {sv['feature']} (plural minus singular activation at the "
                  f"answer position {sv['train_score']:.2f} on training frames, "
                  f"{sv['heldout_score']:.2f} held out). Ablated on plural-subject prompts, the "
                  f"agreement metric goes {sv['plural_metric']:.3f} -> "
                  f"{sv['plural_metric_ablated']:.3f}. Its direction added to singular-subject "
                  f"prompts (metric {sv['singular_metric']:.3f}; flipped = share of the prompts "
                  f"the model got right that now prefer the plural verb): {steer}.",
                  f"* Greater-Than: feature {gt['feature']} (correlation with the start year "
                  f"{gt['train_corr']:.2f} on training frames, {gt['heldout_corr']:.2f} held out). "
                  f"Ablated: metric {gt['metric']:.3f} -> {gt['metric_ablated']:.3f}; the five "
                  f"features most correlated with the year ({', '.join(map(str, gt['top5']))}) "
                  f"ablated together: {gt['metric_top5_ablated']:.3f}."]
    t = meta["train"]
    lines += ["", "## Training", "",
              f"{t['steps']} Adam steps, batch {t['batch_size']} tokens, learning rate {t['lr']}, "
              f"seed {t['seed']}, on {meta['data']['train_tokens']:,} tokens of "
              f"{meta['data']['train_docs']} corpus documents (corpus seed "
              f"{meta['data']['corpus_seed']}); evaluated on {meta['data']['eval_docs']} other "
              f"documents (seed {meta['data']['corpus_seed'] + 1}) and 200 held-out prompts per "
              "task.", "",
              f"Wall time: {meta['wall_time_s']:.0f} s on {meta['machine']}.", "",
              f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def _readme(out: Path, metas: dict[str, dict], extra: dict) -> None:
    lines = ["# Shipped dictionaries of `tiny-gpt2-tasks` (notebook 06)", "",
             "Trained by `python -m tutorial_utils.course.dictionaries --out data/dictionaries` "
             "(`tutorial_utils/course/dictionaries.py`); load one with "
             "`tutorial_utils.features.dictionary.load_dictionary('data/dictionaries/NAME')`. "
             "All figures are measured on the shipped float16 weights; each `NAME.md` is the card.",
             "", "| name | site | width | L0 | variance explained | loss recovered | "
             "Greater-Than kept | agreement kept |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, meta in metas.items():
        c, m, t = meta["config"], meta["metrics"], meta["tasks"]
        site = f"{c['site_in']} {c['layer']}" + ("" if c["kind"] == "sae" else f" -> mlp_out {c['layer']}")
        lines.append(f"| {name} | {site} | {c['n_features']} | {m['l0']:.1f} | {m['fve']:.3f} | "
                     f"{m['loss_recovered']:.3f} | {t['greater_than']['kept']:.2f} | "
                     f"{t['sva']['kept']:.2f} |")
    if "replacement" in extra:
        lines += ["", "## The replacement model (all four transcoders, no error nodes)", "",
                  "| task | metric of the model | metric of the replacement model | kept | "
                  "L0 per layer |", "| --- | --- | --- | --- | --- |"]
        for task, v in extra["replacement"].items():
            lines.append(f"| {task} | {v['model']:.3f} | {v['replacement']:.3f} | "
                         f"{v['kept']:.2f} | {', '.join(f'{x:.1f}' for x in v['l0'])} |")
    if "total_wall_time_s" in extra:
        lines += ["", f"The whole run (six dictionaries, their evaluation and this table) took "
                  f"{extra['total_wall_time_s'] / 60:.0f} minutes on a shared 2-core CPU, one "
                  "torch thread; each card gives its own training time."]
    if "number_probe" in extra:
        lines += ["", "Subject-number read-out accuracy at the answer position (difference of "
                  "means, held-out prompts), the reason for the SAE's site: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in extra["number_probe"].items()) + "."]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def run(cfg: RunConfig, out: Path, log=print) -> dict[str, dict]:
    """Train, evaluate and save every dictionary of :func:`specs`; returns their metadata.
    ``replacement.json`` gets the run's total wall time only when every dictionary was trained
    (a partial ``--only`` run keeps the previous total)."""
    check_run_config(cfg)
    torch.set_num_threads(1)
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    lm = UnfoldedGPT2.from_pretrained(DATA_DIR / "models" / MODEL)
    d_model = lm.w.d_model
    train_tok = corpus_tokens(lm, cfg.train_docs, cfg.corpus_seed)
    eval_tok = corpus_tokens(lm, cfg.eval_docs, cfg.corpus_seed + 1)
    tasks = task_datasets(lm, cfg.task_n)
    command = "python -m tutorial_utils.course.dictionaries " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, 1 torch thread, torch {torch.__version__}"
    metas: dict[str, dict] = {}
    for spec in specs(cfg):
        t0 = time.time()
        c = spec.config(d_model)
        names = (f"{c.site_in}.{c.layer}", f"{c.site_out}.{c.layer}")
        acts = lm.activations(train_tok, names)
        x = acts[names[0]].reshape(-1, d_model)
        y = acts[names[1]].reshape(-1, d_model)
        tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           l1_coeff=spec.l1_coeff, seed=spec.seed)
        d = SparseDictionary(c, seed=spec.seed)
        log(f"[{spec.name}] training on {x.shape[0]:,} tokens ({names[0]} -> {names[1]})")
        train_dictionary(d, x, y, tcfg, progress=lambda row: log(
            f"[{spec.name}] step {row['step']} fvu {row['fvu']:.4f} l0 {row['l0']:.1f} "
            f"dead {row['dead']:.2f} ({row['elapsed_s']:.0f}s)"))
        wall = time.time() - t0
        d.save(out / spec.name, dtype=torch.float16)
        d = load_dictionary(out / spec.name)              # evaluate what ships
        ev = lm.activations(eval_tok, names)
        rec = reconstruction_stats(d, ev[names[0]].reshape(-1, d_model),
                                   ev[names[1]].reshape(-1, d_model))
        spl = splice_stats(lm, d, eval_tok)
        task_rows = {}
        for tname, ds in tasks.items():
            if c.kind == "sae":
                m_model, m_spliced = sae_task_metric(lm, d, ds)
            else:
                kept = ReplacementModel(lm, {c.layer: d}).task_kept(ds)
                m_model, m_spliced = kept.metric_model, kept.metric_replacement
            task_rows[tname] = {"model": m_model, "spliced": m_spliced,
                                "kept": m_spliced / m_model}
        task_feats = sae_task_features(lm, d, cfg.task_n) if c.kind == "sae" else None
        meta = {"config": asdict(c),
                "metrics": {**rec.as_dict(), **spl.as_dict()},
                "tasks": task_rows,
                "train": {**asdict(tcfg)},
                "data": {"train_docs": cfg.train_docs, "eval_docs": cfg.eval_docs,
                         "corpus_seed": cfg.corpus_seed, "train_tokens": int(x.shape[0])},
                "wall_time_s": wall, "machine": machine, "command": command}
        if task_feats is not None:
            meta["task_features"] = task_feats
        d.save(out / spec.name, metadata={k: v for k, v in meta.items() if k != "config"},
               dtype=torch.float16)
        (out / f"{spec.name}.md").write_text(_card(spec.name, meta))
        metas[spec.name] = meta
        log(f"[{spec.name}] done in {wall:.0f}s: " + json.dumps(
            {k: round(v, 4) for k, v in meta["metrics"].items()}) + " tasks " + json.dumps(
            {k: round(v["kept"], 3) for k, v in task_rows.items()}))
    extra: dict = {}
    tcs = {}
    for l in range(lm.w.n_layers):
        p = out / f"transcoder_m{l}.json"
        if p.exists():
            tcs[l] = load_dictionary(p)
    if len(tcs) == lm.w.n_layers:
        rm = ReplacementModel(lm, tcs)
        extra["replacement"] = {}
        for tname, ds in tasks.items():
            k = rm.task_kept(ds)
            extra["replacement"][tname] = {"model": k.metric_model,
                                           "replacement": k.metric_replacement,
                                           "kept": k.kept, "l0": k.l0_per_layer}
        log("replacement model without error nodes: " + json.dumps(extra["replacement"]))
    extra["number_probe"] = number_probe(lm)
    total = total_wall_time(cfg, out, time.time() - t_start)
    if total is not None:
        extra["total_wall_time_s"] = total
    (out / "replacement.json").write_text(json.dumps(extra, indent=1) + "\n")
    write_cards(out)
    log(f"all done in {time.time() - t_start:.0f}s")
    return metas


def total_wall_time(cfg: RunConfig, out: Path, elapsed_s: float) -> float | None:
    """The whole run's wall time for ``replacement.json``: ``elapsed_s`` when ``cfg`` trained
    every dictionary, else the total already recorded in ``out`` (None if there is none)."""
    if trains_everything(cfg):
        return elapsed_s
    path = out / "replacement.json"
    return json.loads(path.read_text()).get("total_wall_time_s") if path.exists() else None


def write_cards(out: Path) -> None:
    """(Re)write every ``NAME.md`` card and ``README.md`` from the saved metadata."""
    metas = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))
             if p.stem != "replacement"}
    metas = {k: v for k, v in metas.items() if "metrics" in v}
    for name, meta in metas.items():
        (out / f"{name}.md").write_text(_card(name, meta))
    extra_path = out / "replacement.json"
    extra = json.loads(extra_path.read_text()) if extra_path.exists() else {}
    _readme(out, metas, extra)


def add_task_features(out: Path, n: int = 200, log=print) -> None:
    """Compute :func:`sae_task_features` for the SAEs already in ``out``, then rewrite every
    card (for a run made before this analysis existed)."""
    lm = UnfoldedGPT2.from_pretrained(DATA_DIR / "models" / MODEL)
    for p in sorted(out.glob("sae_*.json")):
        d = load_dictionary(p)
        meta = json.loads(p.read_text())
        meta["task_features"] = sae_task_features(lm, d, n)
        p.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        log(f"[{p.stem}] task features: " + json.dumps(meta["task_features"]))
    write_cards(out)


def main(argv: list[str] | None = None) -> None:
    """The command line: one option per :class:`RunConfig` field (``--only NAME ...`` and
    ``--task-features-only`` among them), all checked before the model is loaded; a bad one
    stops with ``error: ...`` and exit status 2."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--out", type=Path, default=DATA_DIR / "dictionaries")
    cfg, out = config_from_args(p, RunConfig, argv, check_run_config)
    log = lambda s: print(s, flush=True)  # noqa: E731
    if cfg.task_features_only:
        if not any(out.glob("sae_*.json")):
            p.error(f"--task-features-only: {out} holds no trained SAE (sae_*.json); train them "
                    "first or give their folder with --out")
        add_task_features(out, cfg.task_n, log)
        return
    run(cfg, out, log=log)


if __name__ == "__main__":
    main()
