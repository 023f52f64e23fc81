"""The "Now on GPT-2 small / BERT" section at the end of each notebook.

Each notebook ends with one cell::

    from tutorial_utils.course.large_model_sections import run_section
    RUN_LARGE = None   # None: run when the Hugging Face hub answers; True: run; False: skip
    large = run_section("01", run=RUN_LARGE)

Offline (CI, a laptop without network) that prints one line saying the section was skipped and
why, and returns ``None``. Online it loads the published model(s) (GPT-2 small; BERT-base for
context mixing), runs the notebook's analysis with the same library calls at a size that fits a
free Colab CPU, prints the numbers next to the published ones (labelled as such), and returns
them. The per-notebook functions (:data:`SECTION_FUNCTIONS`) take already-loaded models, so the
tests run them on random-weight checkpoints of GPT-2 small's and BERT-base's exact shapes
(:func:`build_random_checkpoint`, no download).

Sizes: every section has a size knob (``n_examples``, ``batch``, ...) whose default runs in
about a minute or two on a 2-core CPU (``benchmarks/bench_large_model_sections.py`` measures
time and peak memory); on a GPU pass larger values, e.g. ``run_section("03", run=True,
n_examples=64)``.

Nothing here assumes the offline model: layer and head counts come from ``model.cfg``, head
names from :func:`tutorial_utils.composition.head_name` / ``parse_head``, special tokens from the
tokenizer (GPT-2 has no ``<unk>``: its unknown, BOS and EOS token is ``<|endoftext|>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from ..models import hub_reachable
from ..errors import TutorialError

__all__ = [
    "SECTIONS", "SECTION_FUNCTIONS", "PUBLISHED", "run_section", "section_00", "section_01",
    "section_02", "section_03", "section_04", "section_05", "task_counts",
    "build_random_checkpoint", "InductionSection", "BaselinesSection", "ContextMixingSection",
    "PatchingSection", "CompositionSection", "EdgeAttributionSection",
]

#: notebook id -> (what runs, which published models it needs)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "00": ("the residual stream and induction heads", ("gpt2",)),
    "01": ("behaviour, probing and input attribution", ("gpt2",)),
    "02": ("context mixing", ("bert-base-uncased", "gpt2")),
    "03": ("activation patching, logit lens and DLA on Greater-Than", ("gpt2",)),
    "04": ("induction and IOI composition", ("gpt2",)),
    "05": ("EAP, EAP-IG and faithfulness on Greater-Than", ("gpt2",)),
}

#: Published figures the sections print next to their own numbers (never computed here).
PUBLISHED: dict[str, str] = {
    "induction": "Olsson et al. 2022 / ARENA: GPT-2 small has induction heads, e.g. 5.1, 5.5, "
                 "6.9",
    "greater_than": "Hanna et al. 2023: GPT-2 small's probability difference on Greater-Than "
                    "0.817; their path-patching circuit 0.727 (89.5% of it); the EACL 2024 "
                    "tutorial slides show a smaller-dataset circuit at 0.78",
    "greater_than_circuit": "Hanna et al. 2023: the Greater-Than circuit runs through MLPs 8-11 "
                            "and attention heads of layers 5-9 (e.g. 9.1)",
    "sva": "EACL 2024 tutorial slides (slide 14, 'The keys on the cabinet' vs 'The key'): "
           "mean probability difference on its agreement set 0.351",
    "ioi": "Wang et al. 2023 (IOI) head classes: name movers 9.9, 9.6, 10.0; S-inhibition 7.3, "
           "7.9, 8.6, 8.10; induction 5.5, 6.9; duplicate token 0.1, 3.0; previous token 2.2, "
           "4.11",
    "context_mixing": "Kobayashi et al. 2020: in BERT, attention weights on [CLS]/[SEP] are "
                      "large while the norms ||alpha f(x)|| of what they contribute are small; "
                      "Ferrando et al. 2022 (ALTI) and Mohebbi et al. 2023 (Value Zeroing) report "
                      "that their measures agree better with gradient and erasure attributions "
                      "than raw attention does",
}

#: Wang et al. (2023) IOI head classes in GPT-2 small, as (layer, head).
IOI_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "name mover": ((9, 9), (9, 6), (10, 0)),
    "S-inhibition": ((7, 3), (7, 9), (8, 6), (8, 10)),
    "induction": ((5, 5), (6, 9)),
    "duplicate token": ((0, 1), (3, 0)),
    "previous token": ((2, 2), (4, 11)),
}
#: Induction heads of GPT-2 small named by Olsson et al. (2022) / ARENA, as (layer, head).
INDUCTION_HEADS: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (6, 9))


def _published(*keys: str) -> str:
    return "\n".join(f"  [published, not this run] {PUBLISHED[k]}" for k in keys)


def _gpu_hint(notebook: str, example: str) -> str:
    return (f"  (sizes fit a free Colab CPU; on a GPU try run_section(\"{notebook}\", run=True, "
            f"{example}))")


def _name(model: Any) -> str:
    return str(getattr(model, "tutorial_model_name", None)
               or getattr(model.cfg, "model_name", "model"))


def _shape(model: Any) -> str:
    c = model.cfg
    return f"{c.n_layers} layers x {c.n_heads} heads, d_model {c.d_model}"


def _heads_at(model: Any, heads: Any) -> list[tuple[int, int]]:
    """The (layer, head) pairs that exist in ``model`` (a published list may not fit it)."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    return [(l, h) for l, h in heads if l < L and h < H]


def _fmt_heads(model: Any, grid: Tensor, heads: Any) -> str:
    from ..composition import head_name

    inside = _heads_at(model, heads)
    if not inside:
        return "n/a (this model is smaller)"
    return ", ".join(f"{head_name(l, h)} {float(grid[l, h]):+.2f}" for l, h in inside)


def _top(grid: Tensor, k: int, largest: bool = True) -> list[tuple[str, float]]:
    from ..composition import parse_head, top_heads

    return [(h, float(grid[parse_head(h)])) for h in top_heads(grid, k, largest)]


def _batched_logits(model: Any, tokens: Tensor, batch_size: int) -> Tensor:
    """Last-dimension logits of ``tokens`` in chunks, without gradients."""
    out = []
    with torch.no_grad():
        for i in range(0, tokens.shape[0], batch_size):
            out.append(model(tokens[i:i + batch_size].to(model.cfg.device)).float().cpu())
    return torch.cat(out)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hugging Face's "Loading weights" bars off (they would be saved in a notebook)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _check_positive(**sizes: int) -> None:
    for k, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise TutorialError(f"{k} must be a positive integer, got {v!r}")


# --------------------------------------------------------------------------------------------
# 00: induction heads
# --------------------------------------------------------------------------------------------


@dataclass
class InductionSection:
    """Notebook 00 on a large model: loss on repeated random tokens and induction scores.

    ``scores [n_layers, n_heads]``: mean attention from each second-copy token to the token
    after its first occurrence (:mod:`tutorial_utils.induction`)."""

    model: str
    shape: str
    seq_len: int
    batch: int
    loss_first: float
    loss_second: float
    scores: Tensor
    top: list[tuple[str, float]]
    published_heads: str
    residual_error: float = float("nan")

    def summary(self) -> str:
        return "\n".join([
            f"Notebook 00 on {self.model} ({self.shape}), {self.batch} sequences of "
            f"2 x {self.seq_len} repeated random tokens:",
            f"  residual stream rebuilt as embeddings + every attention and MLP output: max "
            f"|error| {self.residual_error:.1e}",
            f"  loss on the first copy {self.loss_first:.2f}, on the second copy "
            f"{self.loss_second:.2f} nats/token",
            "  top induction scores: " + ", ".join(f"{h} {s:.2f}" for h, s in self.top),
            f"  induction score of the published heads: {self.published_heads}",
            _published("induction"),
            _gpu_hint("00", "batch=64"),
        ])


def section_00(model: Any, *, batch: int = 8, seq_len: int = 20, seed: int = 0, top_k: int = 5,
               verbose: bool = True) -> InductionSection:
    """Notebook 00's analysis on ``model``, one forward pass over ``batch`` sequences
    ``BOS + r + r`` (``len(r) = seq_len``): the last residual stream rebuilt from the
    embeddings and every writer, per-token loss, and every head's induction score."""
    from ..hook_names import hook_name
    from ..induction import induction_scores_from_patterns, model_repeated_tokens, per_token_loss

    _check_positive(batch=batch, seq_len=seq_len, top_k=top_k)
    tokens = model_repeated_tokens(model, seq_len=seq_len, batch=batch, seed=seed)
    L = model.cfg.n_layers
    names = [hook_name("pattern", l) for l in range(L)]
    writers = ["hook_embed", "hook_pos_embed"] + [f"blocks.{l}.hook_{w}_out" for l in range(L)
                                                  for w in ("attn", "mlp")]
    final = f"blocks.{L - 1}.hook_resid_post"
    keep = set(names) | set(writers) | {final}
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens.to(model.cfg.device),
                                             names_filter=lambda n: n in keep)
    rebuilt = sum(cache[w] for w in writers)
    residual_error = float((rebuilt - cache[final]).abs().max())
    loss = per_token_loss(logits.cpu(), tokens).mean(0)  # [2 * seq_len]
    scores = induction_scores_from_patterns(torch.stack([cache[n] for n in names]),
                                            seq_len).float().cpu()
    res = InductionSection(_name(model), _shape(model), seq_len, batch,
                           float(loss[1:seq_len].mean()), float(loss[seq_len + 1:].mean()),
                           scores, _top(scores, top_k),
                           _fmt_heads(model, scores, INDUCTION_HEADS), residual_error)
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# 01: behaviour, probing, input attribution
# --------------------------------------------------------------------------------------------


@dataclass
class BaselinesSection:
    """Notebook 01 on a large model: minimal-pair behaviour (accuracy and probability
    difference) on agreement and Greater-Than, a subject-number probe at one layer with its
    control task, and input attributions of a few agreement prompts.

    ``attributions[method]``: ``[n_attribution, T]``; ``agreement``: mean Spearman correlation
    between every pair of methods (``[M, M]``, order of ``methods``)."""

    model: str
    shape: str
    n_examples: int
    sva_accuracy: float
    sva_pd: float
    gt_accuracy: float
    gt_pd: float
    probe_layer: int
    probe_accuracy: float
    control_accuracy: float
    methods: list[str]
    attributions: dict[str, Tensor]
    agreement: Tensor
    ig_error: float
    occlusion_token: str

    @property
    def selectivity(self) -> float:
        return self.probe_accuracy - self.control_accuracy

    def summary(self) -> str:
        off = ~torch.eye(len(self.methods), dtype=torch.bool)
        rho = float(self.agreement[off].nanmean()) if len(self.methods) > 1 else float("nan")
        return "\n".join([
            f"Notebook 01 on {self.model} ({self.shape}), {self.n_examples} prompts per task:",
            f"  agreement (opposite attractor): accuracy {self.sva_accuracy:.2f}, probability "
            f"difference {self.sva_pd:.3f}",
            f"  Greater-Than (canonical frame): accuracy {self.gt_accuracy:.2f}, probability "
            f"difference {self.gt_pd:.3f}",
            f"  subject-number probe on the residual stream "
            f"{'at the embeddings' if self.probe_layer == 0 else f'after block {self.probe_layer - 1}'}"
            " (held-out nouns): "
            f"accuracy {self.probe_accuracy:.2f}, control task {self.control_accuracy:.2f}, "
            f"selectivity {self.selectivity:+.2f}",
            f"  input attribution ({', '.join(self.methods)}; occlusion by "
            f"{self.occlusion_token!r}): mean pairwise Spearman {rho:.2f}; IG completeness "
            f"error (median, relative) {self.ig_error:.1e}",
            _published("sva", "greater_than"),
            _gpu_hint("01", "n_examples=200, n_attribution=24"),
        ])


def section_01(model: Any, *, n_examples: int = 48, n_attribution: int = 4, ig_steps: int = 32,
               probe_layer: int | None = None, batch_size: int = 16, seed: int = 0,
               verbose: bool = True) -> BaselinesSection:
    """Notebook 01's baselines on ``model`` (a causal decoder).

    ``probe_layer`` indexes :func:`tutorial_utils.probing.residual_stream` (0 = embeddings,
    ``l`` = after block ``l - 1``); default the middle of the model."""
    from .. import input_attribution as A
    from .. import probing as P
    from ..tasks import accuracy, make_greater_than, make_sva

    _check_positive(n_examples=n_examples, n_attribution=n_attribution, ig_steps=ig_steps,
                    batch_size=batch_size)
    L = model.cfg.n_layers
    layer = L // 2 if probe_layer is None else probe_layer
    if not (isinstance(layer, int) and 0 <= layer <= L):
        raise TutorialError(f"probe_layer must be an int in [0, {L}], got {probe_layer!r}")
    # behaviour
    sva = make_sva(model, n=n_examples, frames_split="all", attractor="opposite", seed=seed)
    sva_logits = _batched_logits(model, sva.clean_tokens, batch_size)
    gt = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    gt_logits = _batched_logits(model, gt.clean_tokens, batch_size)
    # probe for subject number at one layer: train nouns -> held-out nouns, and a control task
    feats, labels, probed = {}, {}, {}
    for split, s in (("train", seed), ("heldout", seed + 1)):
        ds = make_sva(model, n=n_examples, frames_split="train", nouns=split,
                      attractor="opposite", seed=s)
        feats[split] = P.residual_stream(model, ds.clean_tokens, pos=ds.answer_pos,
                                         batch_size=batch_size)[layer].float().cpu()
        labels[split] = torch.tensor([int(p) for p in ds.meta["plural"]])
        probed[split] = (ds.clean_tokens, ds.answer_pos)  # the token the probe reads
    probe = P.train_probe(feats["train"], labels["train"])
    probe_acc = float(probe.accuracy(feats["heldout"], labels["heldout"]))
    # Hewitt & Liang: one random label per type of the token at the probed position
    control = P.control_task(*probed["train"], labels["train"], seed=seed)
    tr, te = P.random_split(len(control), test_frac=0.3, seed=seed)
    ctrl_acc = float(P.train_probe(feats["train"][tr], control[tr])
                     .accuracy(feats["train"][te], control[te]))
    # input attribution on a few canonical agreement prompts
    canon = make_sva(model, n=n_attribution, frames_split="canonical", attractor="opposite",
                     seed=seed + 3)
    K = canon.candidate_ids.shape[1]  # agreeing forms first, then the disagreeing ones
    agree, disagree = canon.candidate_ids[:, 0], canon.candidate_ids[:, K // 2]
    target = A.contrastive_target(agree, disagree, pos=canon.answer_pos)
    toks = canon.clean_tokens
    occ_id = model.tokenizer.unk_token_id
    if occ_id is None:
        occ_id = model.tokenizer.bos_token_id
    occ_token = model.tokenizer.convert_ids_to_tokens(int(occ_id))
    ig = A.integrated_gradients(model, toks, target, baseline="zero", n_steps=ig_steps)
    attributions = {
        "saliency": A.saliency(model, toks, target),
        "grad x input": A.gradient_x_input(model, toks, target),
        "integrated gradients": ig,
        "occlusion": A.occlusion(model, toks, target, replacement=int(occ_id)),
    }
    attributions = {k: v.detach().float().cpu() for k, v in attributions.items()}
    comp = A.ig_completeness(model, toks, target, ig, baseline="zero")
    T = toks.shape[1]
    mask = (torch.arange(T)[None] >= 1) & (torch.arange(T)[None] <= canon.answer_pos[:, None])
    names, rho = A.method_agreement(attributions, mask)
    res = BaselinesSection(
        _name(model), _shape(model), n_examples,
        accuracy(sva_logits, sva), float(sva.metric(sva_logits)),
        accuracy(gt_logits, gt), float(gt.metric(gt_logits)),
        layer, probe_acc, ctrl_acc, list(names), attributions, rho.float().cpu(),
        float(comp.relative_error.float().median()), occ_token)
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# 02: context mixing
# --------------------------------------------------------------------------------------------


@dataclass
class MixingScores:
    """One model's context-mixing evaluation on agreement: per method, the share of prompts
    whose query row ranks the subject above the attractor, and the mean Spearman correlation
    with |gradient x input| and |occlusion|."""

    model: str
    n: int
    share: dict[str, float]
    rho_grad: dict[str, float]
    rho_occ: dict[str, float]


@dataclass
class ContextMixingSection:
    """Notebook 02 on large models: the cue test (subject vs attractor) for every context-mixing
    method on an encoder and a decoder, and, on the encoder, the share of attention weight vs
    attention-norm going to ``[CLS]``/``[SEP]`` per layer (``special_weight``,
    ``special_norm``: ``[n_layers]``)."""

    encoder: MixingScores
    decoder: MixingScores
    encoder_shape: str
    decoder_shape: str
    special_weight: Tensor
    special_norm: Tensor

    def summary(self) -> str:
        lines = [f"Notebook 02 on {self.encoder.model} ({self.encoder_shape}; {self.encoder.n} "
                 f"prompts) and {self.decoder.model} ({self.decoder_shape}; {self.decoder.n} "
                 "prompts):",
                 "  share of [CLS]/[SEP] in the encoder's rows, attention weight vs attention-norm: "
                 + ", ".join(f"L{l} {float(w):.2f}/{float(n):.2f}" for l, (w, n)
                             in enumerate(zip(self.special_weight, self.special_norm))),
                 f"  {'method':<24}| encoder subj>attr  rho GxI  rho occl | decoder subj>attr  "
                 "rho GxI  rho occl"]
        for m in self.encoder.share:
            cells = []
            for e in (self.encoder, self.decoder):
                if m in e.share:
                    cells.append(f"{e.share[m]:>17.2f}{e.rho_grad[m]:>9.2f}{e.rho_occ[m]:>10.2f}")
                else:
                    cells.append(f"{'n/a (pre-LN)':>36}")
            lines.append(f"  {m:<24}| " + " | ".join(cells))
        lines += [_published("context_mixing"), _gpu_hint("02", "n_examples=48")]
        return "\n".join(lines)


def _mixing_scores(model: Any, n: int, seed: int) -> MixingScores:
    from ..context_mixing.evaluation import evaluate_on_cue, sva_cue_examples

    ex = sva_cue_examples(model, n=n, seed=seed)
    ev = evaluate_on_cue(model, ex)
    return MixingScores(_name(model), len(ex), dict(ev.share), dict(ev.rho_grad),
                        dict(ev.rho_occ))


def section_02(encoder: Any, decoder: Any, *, n_examples: int = 8, seed: int = 0,
               verbose: bool = True) -> ContextMixingSection:
    """Notebook 02's cue test on ``encoder`` (a BERT-style masked LM) and ``decoder`` (GPT-2
    style): every method of :mod:`tutorial_utils.context_mixing` on ``n_examples`` agreement
    prompts each, scored against gradient x input and occlusion."""
    from .. import context_mixing as cm

    _check_positive(n_examples=n_examples)
    text = "The keys on the cabinet [MASK] red."
    toks = encoder.to_tokens(text)
    special = [0, toks.shape[1] - 1]  # [CLS] and [SEP]
    with _no_progress_bars():  # the methods reload the original Hugging Face weights
        att = cm.raw_attention(encoder, toks[0])
        nrm = cm.attention_norm(encoder, toks[0], "attn")
        res = ContextMixingSection(
            _mixing_scores(encoder, n_examples, seed), _mixing_scores(decoder, n_examples, seed),
            _shape(encoder), _shape(decoder),
            att[:, :, special].sum(-1).mean(-1).float().cpu(),
            nrm[:, :, special].sum(-1).mean(-1).float().cpu())
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# 03: activation patching and the logit lens on Greater-Than
# --------------------------------------------------------------------------------------------


@dataclass
class PatchingSection:
    """Notebook 03 on a large model, Greater-Than: every head's output and every MLP patched
    from the corrupted run (normalised metric: 1 = clean, 0 = corrupted; ``heads [L, H]``,
    ``mlps [L]``), and the logit lens's probability difference after each block
    (``lens_pd [n_layers + 1]``, index 0 = embeddings), and each component's direct logit
    attribution to the mean logit of the years above YY minus those at or below
    (``dla_upweight [n_components]``, labels ``dla_labels``)."""

    model: str
    shape: str
    n_examples: int
    metric_clean: float
    metric_corrupted: float
    heads: Tensor
    mlps: Tensor
    lens_pd: Tensor
    lens_labels: list[str]
    top_heads: list[tuple[str, float]]
    dla_labels: list[str] = field(default_factory=list)
    dla_upweight: Tensor = field(default_factory=lambda: torch.zeros(0))

    def summary(self) -> str:
        order = self.mlps.nan_to_num(float("inf")).argsort()[:4]
        return "\n".join([
            f"Notebook 03 on {self.model} ({self.shape}), Greater-Than, {self.n_examples} prompts:",
            f"  probability difference: clean {self.metric_clean:.3f}, corrupted "
            f"{self.metric_corrupted:.3f}",
            "  heads whose patching hurts most (normalised metric): "
            + ", ".join(f"{h} {v:.2f}" for h, v in self.top_heads),
            "  MLPs whose patching hurts most: "
            + ", ".join(f"m{int(i)} {float(self.mlps[i]):.2f}" for i in order),
            "  logit lens, probability difference by layer: "
            + ", ".join(f"{n} {float(v):.2f}" for n, v in zip(self.lens_labels, self.lens_pd)),
            "  direct logit attribution, mean logit of years > YY minus years <= YY, largest: "
            + ", ".join(f"{self.dla_labels[int(i)]} {float(self.dla_upweight[i]):+.2f}"
                        for i in self.dla_upweight.abs().argsort(descending=True)[:5]),
            _published("greater_than", "greater_than_circuit"),
            _gpu_hint("03", "n_examples=64"),
        ])


def section_03(model: Any, *, n_examples: int = 6, seed: int = 0, top_k: int = 5,
               verbose: bool = True) -> PatchingSection:
    """Notebook 03's activation patching and logit lens on Greater-Than (canonical frame):
    :func:`tutorial_utils.patching.patch_heads` and an ``mlp_out`` sweep by layer, then
    :func:`tutorial_utils.logit_lens.logit_lens` and
    :func:`tutorial_utils.dla.direct_logit_attribution` over the 100 year tokens."""
    from .. import patching as P
    from ..dla import direct_logit_attribution
    from ..logit_lens import logit_lens
    from ..tasks import make_greater_than
    from ..tasks.greater_than import year_token_ids

    _check_positive(n_examples=n_examples, top_k=top_k)
    ds = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    heads = P.patch_heads(model, ds, progress=False)
    mlps = P.patching_sweep(model, ds, "mlp_out", ("layer",), progress=False)
    years = torch.tensor(year_token_ids(model.tokenizer))
    lens = logit_lens(model, ds.clean_tokens, ds.answer_pos, token_ids=years)
    probs = lens.probs().float().cpu()  # [points, B, 100]
    yy = torch.tensor(ds.meta["yy"])
    sign = torch.where(torch.arange(100)[None] > yy[:, None], 1.0, -1.0)  # [B, 100]
    lens_pd = (probs * sign[None]).sum(-1).mean(-1)
    dla = direct_logit_attribution(model, ds.clean_tokens, ds.answer_pos, years)
    above = (sign > 0).float()
    weights = above / above.sum(1, keepdim=True).clamp(min=1) \
        - (1 - above) / (1 - above).sum(1, keepdim=True).clamp(min=1)
    upweight = dla.project(weights).mean(1).float().cpu()  # [components]
    nh = heads.normalized()
    res = PatchingSection(_name(model), _shape(model), n_examples, float(heads.metric_clean),
                          float(heads.metric_corrupted), nh, mlps.normalized(), lens_pd,
                          list(lens.labels), _top(nh, top_k, largest=False), list(dla.labels),
                          upweight)
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# 04: induction composition and IOI head classes
# --------------------------------------------------------------------------------------------


@dataclass
class CompositionSection:
    """Notebook 04 on a large model.

    Induction: previous-token and induction head classes on repeated random tokens and the
    share of the induction effect removed by path patching the previous-token heads into the
    induction heads' query, key or value (``composition``); the weight-based K-composition
    score of the strongest pair (heads listed first) with its random-matrix baseline.
    IOI: each head's direct effect on the logit difference (``direct [L, H]``, share of clean -
    corrupted; NaN below ``direct_from_layer``) and attention between the named positions (``attention[name] [L, H]``: ``END->IO``, ``END->S2``, ``S2->S1``
    (duplicate token), ``S2->S1+1`` (induction)); ``prev_token [L, H]``."""

    model: str
    shape: str
    seq_len: int
    batch: int
    prev_heads: list[str]
    induction_heads: list[str]
    composition: dict[str, float]
    k_composition: float
    k_composition_baseline: float
    n_ioi: int
    ld_clean: float
    ld_corrupted: float
    direct: Tensor
    attention: dict[str, Tensor]
    prev_token: Tensor
    induction_scores: Tensor
    direct_from_layer: int = 0
    published: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"Notebook 04 on {self.model} ({self.shape}):",
            f"  induction ({self.batch} x 2 x {self.seq_len} random tokens): previous-token heads "
            f"{self.prev_heads[:4]}, induction heads {self.induction_heads[:6]}",
            f"  K-composition {self.prev_heads[0]} -> {self.induction_heads[0]} from the weights: "
            f"{self.k_composition:.3f} (random matrices of these shapes: "
            f"{self.k_composition_baseline:.3f})",
            "  path patching previous-token heads -> induction heads, share of the effect "
            "removed: " + ", ".join(f"{k} {v:.2f}" for k, v in self.composition.items()),
            f"  IOI ({self.n_ioi} prompts): logit difference clean {self.ld_clean:.2f}, corrupted "
            f"{self.ld_corrupted:.2f}",
            f"  largest direct effects on the logits (heads of layers {self.direct_from_layer}+): "
            + ", ".join(f"{h} {v:+.2f}" for h, v in _top(self.direct, 4)),
            "  this run's measures at Wang et al.'s heads:",
        ]
        lines += [f"    {k:<16} {v}" for k, v in self.published.items()]
        lines += [_published("ioi", "induction"),
                  _gpu_hint("04", "n_ioi=64, batch=32, direct_from_layer=0")]
        return "\n".join(lines)


def section_04(model: Any, *, n_ioi: int = 8, batch: int = 8, seq_len: int = 20,
               direct_from_layer: int | None = None, seed: int = 0, verbose: bool = True
               ) -> CompositionSection:
    """Notebook 04's composition analysis: :func:`tutorial_utils.composition.induction_classes`
    and :func:`~tutorial_utils.composition.induction_composition_patching` on ``batch``
    repeated sequences, then on ``n_ioi`` canonical IOI prompts the direct path patching of
    each head of layers ``direct_from_layer`` and above into the logits (default: the upper
    half of the model, where Wang et al.'s name movers sit; ``0`` for every head, about twice
    the time) and every head's attention between IO, S1, S2 and END. Needs ``hooks=True``."""
    from .. import composition as C
    from .. import path_patching as PP
    from ..tasks import make_ioi

    _check_positive(n_ioi=n_ioi, batch=batch, seq_len=seq_len)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    start = L // 2 if direct_from_layer is None else direct_from_layer
    if not (isinstance(start, int) and 0 <= start < L):
        raise TutorialError(f"direct_from_layer must be an int in [0, {L}), got {start!r}")
    clean_rep, _ = C.induction_patching_data(model, seq_len=seq_len, batch=batch, seed=seed)
    classes = C.induction_classes(model, clean_rep, seq_len)
    best_prev = max(classes.prev_heads, key=lambda h: classes.prev_token_scores[C.parse_head(h)])
    best_ind = max(classes.induction_heads,
                   key=lambda h: classes.induction_scores[C.parse_head(h)])
    prev_first = [best_prev] + [h for h in classes.prev_heads if h != best_prev]
    ind_first = [best_ind] + [h for h in classes.induction_heads if h != best_ind]
    k_comp = C.composition_score(model, C.parse_head(best_prev), C.parse_head(best_ind), "k")
    k_base = C.composition_baseline(model, "k", n_samples=20, seed=seed)
    evidence = C.induction_composition_patching(model, classes.prev_heads, classes.induction_heads,
                                                seq_len=seq_len, batch=batch, seed=seed)
    ioi = make_ioi(model, n=n_ioi, frames_split="canonical", seed=seed)
    logits_c = _batched_logits(model, ioi.clean_tokens, n_ioi)
    logits_k = _batched_logits(model, ioi.corrupted_tokens, n_ioi)
    senders = [C.head_name(l, h) for l in range(start, L) for h in range(H)]
    direct = C.head_grid(model, PP.path_patching(model, ioi, senders=senders,
                                                 receivers=["logits"]))
    direct[:start] = float("nan")  # not measured
    pos = C.ioi_positions(ioi)
    toks = ioi.clean_tokens
    attention = {
        "END->IO": C.attention_between(model, toks, pos["END"], pos["IO"]),
        "END->S2": C.attention_between(model, toks, pos["END"], pos["S2"]),
        "S2->S1": C.attention_between(model, toks, pos["S2"], pos["S1"]),
        "S2->S1+1": C.attention_between(model, toks, pos["S2"], pos["S1"] + 1),
    }
    prev = classes.prev_token_scores.float()
    ind = classes.induction_scores.float()
    measures = {
        "name mover": ("direct effect", direct), "S-inhibition": ("attention END->S2",
                                                                  attention["END->S2"]),
        "induction": ("attention S2->S1+1", attention["S2->S1+1"]),
        "duplicate token": ("attention S2->S1", attention["S2->S1"]),
        "previous token": ("previous-token score", prev),
    }
    published = {cls: f"{what}: {_fmt_heads(model, grid, IOI_CLASSES[cls])}"
                 for cls, (what, grid) in measures.items()}
    res = CompositionSection(
        _name(model), _shape(model), seq_len, batch, prev_first, ind_first,
        dict(evidence.effects), k_comp, k_base, n_ioi,
        float(ioi.metric(logits_c)), float(ioi.metric(logits_k)), direct, attention, prev, ind,
        start, published)
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# 05: EAP, EAP-IG and faithfulness curves
# --------------------------------------------------------------------------------------------


@dataclass
class EdgeAttributionSection:
    """Notebook 05 on a large model, Greater-Than: EAP and EAP-IG scores of every edge of the
    graph (``scores[method] [n_forward, n_backward]``) and the faithfulness of the top-``n``
    edges of each (``faithfulness[method] [len(n_edges)]``)."""

    model: str
    shape: str
    n_examples: int
    n_nodes: int
    n_edges_total: int
    metric_clean: float
    metric_corrupted: float
    scores: dict[str, Tensor]
    n_edges: list[int]
    faithfulness: dict[str, Tensor]
    top_edges: list[tuple[str, float]]
    rank_correlation: float

    def summary(self) -> str:
        lines = [
            f"Notebook 05 on {self.model} ({self.shape}): {self.n_nodes} nodes, "
            f"{self.n_edges_total:,} edges; Greater-Than, {self.n_examples} prompts",
            f"  probability difference: clean {self.metric_clean:.3f}, corrupted "
            f"{self.metric_corrupted:.3f}",
            "  top EAP-IG edges: " + ", ".join(f"{e} {s:+.4f}" for e, s in self.top_edges),
            f"  Spearman(EAP, EAP-IG) over all edges: {self.rank_correlation:.2f}",
            "  faithfulness of the top-n edges (0 edges: 0, all edges: 1, by definition):",
            "    edges " + "".join(f"{n:>8d}" for n in self.n_edges),
        ]
        for m, f in self.faithfulness.items():
            lines.append(f"    {m:<6}" + "".join(f"{float(x):>8.2f}" for x in f))
        lines += [_published("greater_than", "greater_than_circuit"),
                  _gpu_hint("05", "n_examples=64, ig_steps=10, "
                                  "n_edges=[30, 100, 300, 1000, 3000, 10000]")]
        return "\n".join(lines)


def _edge_grid(total: int) -> list[int]:
    """Circuit sizes whose faithfulness the section measures by default (each point is one
    stacked interchange run, the section's main cost; 0 edges and all of them give 0 and 1 by
    definition, so they are not run)."""
    return [n for n in (100, 300, 1000, 3000) if n < total] or [total // 2]


def section_05(model: Any, *, n_examples: int = 8, ig_steps: int = 5, batch_size: int = 8,
               n_edges: list[int] | None = None, seed: int = 0, verbose: bool = True
               ) -> EdgeAttributionSection:
    """Notebook 05's edge attribution on Greater-Than: :class:`~tutorial_utils.graph.Graph`
    from the model (GPT-2 small: 32,491 edges), :func:`~tutorial_utils.circuits.eap_scores`,
    :func:`~tutorial_utils.circuits.eap_ig_scores` and a
    :func:`~tutorial_utils.circuits.faithfulness_curve` for each at the circuit sizes
    ``n_edges`` (default 100, 300, 1,000 and 3,000 edges). Needs ``hooks=True``."""
    from ..circuits import (Graph, eap_ig_scores, eap_scores, evaluate_baselines,
                           faithfulness_curve, rank_correlation)
    from ..tasks import make_greater_than

    _check_positive(n_examples=n_examples, ig_steps=ig_steps, batch_size=batch_size)
    graph = Graph.from_model(model)
    ds = make_greater_than(model, n=n_examples, frames_split="canonical", seed=seed)
    clean, corrupted = evaluate_baselines(model, ds, batch_size=batch_size)
    scores = {"EAP": eap_scores(model, graph, ds, batch_size=batch_size).float().cpu(),
              "EAP-IG": eap_ig_scores(model, graph, ds, steps=ig_steps,
                                      batch_size=batch_size).float().cpu()}
    grid = _edge_grid(graph.n_edges) if n_edges is None else [int(n) for n in n_edges]
    faith = {}
    for m, s in scores.items():
        c = faithfulness_curve(model, graph, ds, s, grid, method=m,
                               clean_corrupted=(clean, corrupted), batch_size=batch_size)
        faith[m] = c.faithfulness.float().cpu()
    real = graph.real_edges
    graph.scores = scores["EAP-IG"]
    top = [(name, float(s)) for name, s in graph.top_edges(5)]
    res = EdgeAttributionSection(
        _name(model), _shape(model), n_examples, graph.n_nodes, graph.n_edges, float(clean),
        float(corrupted), scores, grid, faith, top,
        float(rank_correlation(scores["EAP"][real], scores["EAP-IG"][real])))
    if verbose:
        print(res.summary())
    return res


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

#: notebook id -> (the section function, the models it takes in order, hooks=True needed)
SECTION_FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[str, ...], bool]] = {
    "00": (section_00, ("decoder",), False),
    "01": (section_01, ("decoder",), False),
    "02": (section_02, ("encoder", "decoder"), False),
    "03": (section_03, ("decoder",), True),
    "04": (section_04, ("decoder",), True),
    "05": (section_05, ("decoder",), True),
}


def run_section(notebook: str, run: bool | None = None, **kwargs: Any) -> Any:
    """Run notebook ``notebook``'s large-model section (see the module docstring).

    ``run=None`` runs it when :func:`~tutorial_utils.models.hub_reachable`, ``False`` skips,
    ``True`` runs (and fails loudly if the download fails). Extra keyword arguments go to the
    section (e.g. ``n_examples`` for a GPU), except ``decoder`` / ``encoder`` (default
    ``"gpt2"`` / ``"bert-base-uncased"``: a model name, a local checkpoint directory, or an
    already-loaded model) and ``device``, which choose what is loaded.
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
    from ..models import load_encoder, load_model

    fn, takes, hooks = SECTION_FUNCTIONS[notebook]
    sources = {"decoder": kwargs.pop("decoder", "gpt2"),
               "encoder": kwargs.pop("encoder", "bert-base-uncased")}
    device = kwargs.pop("device", None)
    models = []
    for kind in takes:
        src = sources[kind]
        if not isinstance(src, (str, Path)):
            models.append(src)  # already loaded
        elif kind == "decoder":
            models.append(load_model(str(src), device=device, hooks=hooks))
        else:
            models.append(load_encoder(str(src), device=device))
    with _no_progress_bars(), torch.no_grad():
        return fn(*models, **kwargs)


# --------------------------------------------------------------------------------------------
# Task datasets under a tokenizer, and random-weight checkpoints for tests
# --------------------------------------------------------------------------------------------


def task_counts(tokenizer_or_model: Any) -> dict[str, int]:
    """How many distinct valid items each task draws from under a tokenizer: Greater-Than start
    years (century, YY) whose clean and "01" forms split into " CC" + "YY" (Hanna et al.'s
    rule), agreement subject noun pairs whose singular and plural forms have the same token
    length (and, with them, the verb pairs, all of which must be one token), and IOI names
    that are one token with a leading space."""
    from ..tasks.base import encode, get_tokenizer
    from ..tasks.greater_than import _year_splits
    from ..tasks.ioi import valid_names
    from ..tasks.sva import verb_token_ids
    from ..tasks.vocab import CENTURIES, NAMES, SVA_NOUNS

    tok = get_tokenizer(tokenizer_or_model)
    years = sum(1 for cc in CENTURIES if _year_splits(tok, cc, 1)
                for yy in range(2, 99) if _year_splits(tok, cc, yy))
    nouns = sum(1 for s, p in SVA_NOUNS.all
                if len(encode(tok, f"The {s}")) == len(encode(tok, f"The {p}")))
    sing, _ = verb_token_ids(tok)
    return {"greater_than_start_years": years,
            "greater_than_start_years_possible": len(CENTURIES) * 97,
            "sva_noun_pairs": nouns, "sva_noun_pairs_possible": len(SVA_NOUNS.all),
            "sva_verb_pairs": len(sing), "ioi_names": len(valid_names(tok)),
            "ioi_names_possible": len(NAMES.get("all"))}


def build_random_checkpoint(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised checkpoint of a published model's exact shape, with its real
    tokenizer, without any download: ``kind="gpt2"`` (transformers' ``GPT2Config`` defaults:
    12 layers, 12 heads, d_model 768, 1024 positions, vocabulary 50,257; the GPT-2 tokenizer
    of :mod:`tutorial_utils.gpt2_tokenizer`) or ``"bert-base-uncased"`` (``BertConfig``
    defaults: 12 layers, 12 heads, d_model 768, a masked-LM head; the uncased WordPiece
    vocabulary shipped with MiniLM-L6). For tests and benchmarks: random weights solve no task.
    """
    from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, GPT2Config,
                              GPT2LMHeadModel)

    out = Path(out_dir)
    torch.manual_seed(seed)
    if kind == "gpt2":
        from ..gpt2_tokenizer import load_gpt2_tokenizer

        model, tok = GPT2LMHeadModel(GPT2Config()), load_gpt2_tokenizer()
    elif kind == "bert-base-uncased":
        from ..models import _minilm_dir

        model, tok = BertForMaskedLM(BertConfig()), AutoTokenizer.from_pretrained(_minilm_dir())
    else:
        raise TutorialError(f"kind must be 'gpt2' or 'bert-base-uncased', got {kind!r}")
    with _no_progress_bars():
        model.eval().save_pretrained(out)
        tok.save_pretrained(out)
    return out
