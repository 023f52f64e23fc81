"""Evaluating context-mixing methods on a task with a known cue: subject-verb agreement.

In "The keys on the cabinet ..." the verb's number is decided by the subject ("keys"), not by
the attractor ("cabinet"). A context-mixing map that tracks what the model uses should give the
verb position more mixing from the subject than from the attractor. The query is

* encoder: the ``[MASK]`` in "The keys on the cabinet [MASK] red." (words from
  :mod:`tutorial_utils.tasks.vocab`, keeping only those that are one WordPiece);
* decoder: the last position of :func:`tutorial_utils.tasks.make_sva`'s prompts, where the verb
  is predicted.

For every method we report the share of examples where the subject outranks the attractor,
and the Spearman rank correlation, over source tokens, between the method's query row and a
gradient-based attribution (gradient x input) and occlusion from
:mod:`tutorial_utils.input_attribution`. Their target: the decoder's agreement metric (probability
difference of agreeing minus disagreeing verbs); for an encoder with a trained masked-LM head
the same difference at ``[MASK]``, or (``encoder_target="direction"``, for MiniLM-L6 whose MLM
head is untrained) the projection of the last layer's ``[MASK]`` state on the subject-number
direction (mean plural-subject minus mean singular-subject state over the examples).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..interchange import capture
from ..names import hook_name

from ._base import Mask, collect_internals, is_post_ln, mask_maps, prepare, rollout
from .alti import alti_maps
from .attention import attention_maps
from .decompx import decompx_maps, decompx_prediction
from .norms import attention_norm_maps, globenc_maps
from .value_zeroing import value_zeroing_maps
from ..tasks import make_sva
from ..tasks.vocab import SVA_NOUNS, SVA_VERBS
from . import methods_for
from ..input_attribution import TargetFn, gradient_x_input, occlusion, spearman

COMPLEMENTS = ("old", "new", "red", "small", "large", "here", "ready", "broken", "clean", "quiet")


@dataclass
class CueExamples:
    """Prompts whose query position should draw on a cue rather than a distractor.

    ``tokens [B, T]``; ``query_pos``, ``cue_pos`` (subject), ``distractor_pos`` (attractor):
    ``[B]``; ``plural``: the subject's number; ``skipped``: vocabulary words left out because
    they are not a single token; ``kind``: ``encoder`` or ``decoder``.
    """

    tokens: Tensor
    query_pos: Tensor
    cue_pos: Tensor
    distractor_pos: Tensor
    prompts: list[str]
    plural: list[bool]
    kind: str
    skipped: list[str] = field(default_factory=list)
    dataset: Any = None

    def __len__(self) -> int:
        return len(self.prompts)


def _position(row: Tensor, token_id: int, what: str, prompt: str) -> int:
    hits = (row == token_id).nonzero().flatten()
    if len(hits) != 1:
        raise TutorialError(f"{what} token appears {len(hits)} times in {prompt!r}")
    return int(hits[0])


def _single_wordpiece(tokenizer: Any, word: str) -> bool:
    return len(tokenizer.tokenize(word)) == 1


def sva_cue_examples(model: Any, n: int = 32, seed: int = 0,
                     decoder_frames: str = "relative") -> CueExamples:
    """``n`` agreement prompts with an attractor of the opposite number, for ``model``.

    Encoder: "The {subj} on the {attr} [MASK] {complement}." Noun pairs (singular and plural)
    from :data:`tutorial_utils.tasks.vocab.SVA_NOUNS` whose forms are not single WordPieces are
    skipped and listed in ``skipped``. Decoder: :func:`tutorial_utils.tasks.make_sva` prompts,
    scored at the next-token position; ``decoder_frames="canonical"`` uses "The {subj} on the
    {attr}" (the query position *is* the attractor token), ``"relative"`` the training frames
    "The {subj} that the {attr} {saw|liked|found}" (the attractor is a separate token).
    """
    if n <= 0:
        raise TutorialError(f"n must be positive, got {n}")
    if decoder_frames not in ("canonical", "relative"):
        raise TutorialError(f"decoder_frames must be 'canonical' or 'relative', got {decoder_frames!r}")
    if not is_post_ln(model):
        if decoder_frames == "canonical":
            ds = make_sva(model, n=n, frames_split="canonical", seed=seed)
        else:
            pool = make_sva(model, n=12 * n, frames_split="train", seed=seed)
            keep = [i for i, f in enumerate(pool.meta["frame"]) if " that " in f][:n]
            if len(keep) < n:
                raise TutorialError(f"only {len(keep)} relative-clause prompts for n = {n}")
            ds = pool.subset(keep)
            ds.clean_tokens = ds.clean_tokens[:, :int(ds.answer_pos.max()) + 1]
            ds.corrupted_tokens = ds.corrupted_tokens[:, :int(ds.answer_pos.max()) + 1]
        tok = ds.clean_tokens.to(model.cfg.device)
        if not ds.is_aligned:
            raise TutorialError("SVA prompts differ in length; use the canonical frame")
        cue, dis = [], []
        for b in range(n):
            row = tok[b].cpu()
            cue.append(_position(row, model.to_single_token(" " + ds.meta["subject"][b]),
                                 "subject", ds.clean_prompts[b]))
            dis.append(_position(row, model.to_single_token(" " + ds.meta["attractor"][b]),
                                 "attractor", ds.clean_prompts[b]))
        return CueExamples(tok, ds.answer_pos.to(tok.device), torch.tensor(cue), torch.tensor(dis),
                           list(ds.clean_prompts), list(ds.meta["plural"]), "decoder", [], ds)

    tk = model.tokenizer
    mask = getattr(tk, "mask_token", None)
    if mask is None:
        raise TutorialError("the encoder's tokenizer has no mask token")
    nouns, skipped = [], []
    for pair in SVA_NOUNS.all:
        bad = [w for w in pair if not _single_wordpiece(tk, w)]
        (skipped.extend(bad) if bad else nouns.append(pair))
    comps = [c for c in COMPLEMENTS if _single_wordpiece(tk, c)]
    skipped += [c for c in COMPLEMENTS if c not in comps]
    if len(nouns) < 2 or not comps:
        raise TutorialError(f"too few single-WordPiece words for this tokenizer (skipped {skipped})")
    rng = random.Random(seed)
    prompts, plural, subjects, attractors = [], [], [], []
    for _ in range(n):
        subj = rng.choice(nouns)
        attr = rng.choice([p for p in nouns if p != subj])
        pl = rng.random() < 0.5
        s, a = subj[int(pl)], attr[int(not pl)]
        prompts.append(f"The {s} on the {a} {mask} {rng.choice(comps)}.")
        plural.append(pl)
        subjects.append(s)
        attractors.append(a)
    rows = [model.to_tokens(p)[0] for p in prompts]
    if len({len(r) for r in rows}) != 1:
        raise TutorialError("encoder SVA prompts differ in token length")
    tok = torch.stack(rows).to(model.cfg.device)
    q, cue, dis = [], [], []
    for b, row in enumerate(tok.cpu()):
        q.append(_position(row, tk.mask_token_id, "[MASK]", prompts[b]))
        cue.append(_position(row, tk.convert_tokens_to_ids(tk.tokenize(subjects[b]))[0],
                             "subject", prompts[b]))
        dis.append(_position(row, tk.convert_tokens_to_ids(tk.tokenize(attractors[b]))[0],
                             "attractor", prompts[b]))
    return CueExamples(tok, torch.tensor(q), torch.tensor(cue), torch.tensor(dis), prompts, plural,
                       "encoder", sorted(set(skipped)))


def all_methods(model: Any, tokens: Int[Tensor, "batch pos"],
                methods: Sequence[str] | None = None, attention_mask: Mask = None,
                token_type_ids: Mask = None) -> dict[str, Float[Tensor, "batch layer query source"]]:
    """Every method of :data:`tutorial_utils.context_mixing.METHODS` defined for ``model`` on a
    batch ``tokens [B, T]``, each computed once from one shared forward pass (Value Zeroing
    once for both ``value_zeroing`` and its rollout, the attention once for attention and
    both rollouts). Returns ``{name: [B, L, T, T]}``."""
    valid = methods_for(model)
    methods = list(valid if methods is None else methods)
    bad = [m for m in methods if m not in valid]
    if bad:
        raise TutorialError(f"methods {bad} are not defined for this model; valid: {valid}")
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    mask = inp.mask
    post = is_post_ln(model)
    needs_ffn = any(m in ("globenc", "decompx") or m.startswith("value_zeroing") for m in methods)
    layers = collect_internals(model, inp, last_ffn=needs_ffn)
    out: dict[str, Tensor] = {}
    for m in methods:
        if m in ("attention", "rollout", "rollout_no_res"):
            if "attention" not in out:
                out["attention"] = attention_maps(layers, mask, per_head=False)
            if m != "attention":
                out[m] = mask_maps(rollout(out["attention"], add_residual=m == "rollout"), mask)
        elif m.startswith("attention_norm"):
            variant = {"attention_norm": "attn", "attention_norm_res": "res",
                       "attention_norm_res_ln": "res_ln"}[m]
            out[m] = attention_norm_maps(layers, mask, variant, post)
        elif m == "globenc":
            out[m] = globenc_maps(layers, mask, post)
        elif m == "alti":
            out[m] = alti_maps(layers, mask, post)
        elif m == "decompx":
            out[m] = decompx_maps(layers, inp)
        elif m.startswith("value_zeroing"):
            if "value_zeroing" not in out:
                out["value_zeroing"] = value_zeroing_maps(layers, mask, post)
            if m == "value_zeroing_rollout":
                out[m] = mask_maps(rollout(out["value_zeroing"]), mask)
    return {m: out[m] for m in methods}


@dataclass
class CueRanking:
    """``share``: fraction of examples where the map at (query, cue) exceeds (query,
    distractor); ``margin [B]``: the difference of the two entries."""

    share: float
    margin: Tensor


def cue_ranking(maps: Float[Tensor, "batch *layer pos pos"], ex: CueExamples,
                layer: int = -1) -> CueRanking:
    """Score one method's maps ``[B, L, T, T]`` (or ``[B, T, T]``) at ``layer`` on ``ex``."""
    if maps.ndim == 4:
        maps = maps[:, layer]
    if maps.ndim != 3 or maps.shape[0] != len(ex):
        raise TutorialError(f"maps must be [B, (L,) T, T] with B = {len(ex)}, got {tuple(maps.shape)}")
    b = torch.arange(len(ex))
    q = ex.query_pos.cpu()
    m = maps.cpu()
    margin = m[b, q, ex.cue_pos.cpu()] - m[b, q, ex.distractor_pos.cpu()]
    return CueRanking(float((margin > 0).float().mean()), margin)


def _verb_ids(model: Any) -> tuple[list[int], list[int]]:
    """Token ids of the singular and plural forms of :data:`tasks.vocab.SVA_VERBS` (each one
    token for this encoder, else a TutorialError)."""
    tk = model.tokenizer
    ids = {}
    for form in [w for pair in SVA_VERBS for w in pair]:
        pieces = tk.tokenize(form)
        if len(pieces) != 1 or tk.convert_tokens_to_ids(pieces[0]) == tk.unk_token_id:
            raise TutorialError(f"verb {form!r} is not one token for this encoder")
        ids[form] = tk.convert_tokens_to_ids(pieces[0])
    return [ids[s] for s, _ in SVA_VERBS], [ids[p] for _, p in SVA_VERBS]


def cue_target(model: Any, ex: CueExamples, encoder_target: str = "mlm"
               ) -> tuple[TargetFn, str | None]:
    """The scalar the attributions explain, as ``(target_fn, target_hook)`` for
    :mod:`tutorial_utils.input_attribution`.

    Decoder: the agreement metric (probability difference of agreeing minus disagreeing verb
    forms at the last position). Encoder, ``encoder_target="mlm"`` (needs a trained masked-LM
    head: ``tiny-bert-tasks`` offline, BERT-base online): the same probability difference at
    the ``[MASK]``, ``sum_v p(agreeing form of v) - p(disagreeing form of v)`` over
    :data:`tutorial_utils.tasks.vocab.SVA_VERBS`; ``"direction"`` (for an encoder without an
    MLM head, e.g. MiniLM-L6): the last layer's ``[MASK]`` state projected on the subject-number
    direction (mean plural-subject minus mean singular-subject state over the examples).
    """
    if encoder_target not in ("mlm", "direction"):
        raise TutorialError(f"encoder_target must be 'mlm' or 'direction', got {encoder_target!r}")
    if ex.kind == "decoder":
        ds = ex.dataset
        return (lambda out: ds.metric(out, per_example=True)), None
    q = ex.query_pos.to(ex.tokens.device)
    pl = torch.tensor(ex.plural, device=ex.tokens.device)
    if encoder_target == "mlm":
        s_ids, p_ids = _verb_ids(model)
        sing = torch.tensor(s_ids, device=ex.tokens.device)
        plur = torch.tensor(p_ids, device=ex.tokens.device)

        def mlm_target(out: Tensor) -> Tensor:
            p = out[torch.arange(out.shape[0], device=out.device), q.to(out.device)].softmax(-1)
            diff = p[:, plur.to(out.device)].sum(-1) - p[:, sing.to(out.device)].sum(-1)
            return torch.where(pl.to(out.device), diff, -diff)

        return mlm_target, None
    hook = hook_name("block_out", model.cfg.n_layers - 1)
    h = capture(model, ex.tokens, [hook])[1][hook][torch.arange(len(ex)), q]
    if pl.all() or (~pl).all():
        raise TutorialError("need both singular and plural subjects to define the number direction")
    direction = h[pl].mean(0) - h[~pl].mean(0)
    direction = direction / direction.norm()

    def target(out: Tensor) -> Tensor:
        return out[torch.arange(out.shape[0], device=out.device), q.to(out.device)] @ direction.to(out.device)

    return target, hook


@dataclass
class CueEvaluation:
    """One row per method: ``share`` (subject outranks attractor), ``rho_grad``/``rho_occ``
    (mean Spearman correlation with |gradient x input| and |occlusion| over source tokens).
    ``rows[name] [B, T]``: each method's query row; ``reference[name] [B, T]``.
    ``signed [B, T]``: with ``prediction=True``, DecompX's signed contributions to the agreement
    logit difference (:func:`decompx_cue_contributions`; ``rows["decompx_to_logit"]`` is their
    absolute value), else None."""

    methods: list[str]
    share: dict[str, float]
    rho_grad: dict[str, float]
    rho_occ: dict[str, float]
    rows: dict[str, Tensor]
    reference: dict[str, Tensor]
    source_mask: Tensor
    signed: Tensor | None = None


#: The name of DecompX's prediction-level row in :func:`evaluate_on_cue`.
DECOMPX_PREDICTION = "decompx_to_logit"


def decompx_cue_contributions(model: Any, ex: CueExamples) -> Float[Tensor, "batch pos"]:
    """``[B, T]``: each input token's DecompX contribution (Modarressi et al. 2023, through the
    masked-LM head, :func:`..decompx.decompx_prediction`) to the agreement **logit** difference
    at the ``[MASK]``, ``sum_v logit(agreeing form of v) - logit(disagreeing form of v)`` over
    :data:`tasks.vocab.SVA_VERBS`. The tokens' contributions sum to that difference exactly
    (every bias is shared among them); positive = pushes towards the agreeing verbs."""
    if ex.kind != "encoder":
        raise TutorialError("DecompX to the prediction needs an encoder with a masked-LM head")
    sing, plur = _verb_ids(model)
    res = decompx_prediction(model, ex.tokens, position=ex.query_pos, targets=sing + plur)
    c = res.contributions                                           # [B, T, 2P]
    P = len(sing)
    diff = c[..., P:].sum(-1) - c[..., :P].sum(-1)                   # plural minus singular
    pl = torch.tensor(ex.plural, device=diff.device)
    return torch.where(pl[:, None], diff, -diff)


def evaluate_on_cue(model: Any, ex: CueExamples, methods: Sequence[str] | None = None,
                    maps: dict[str, Float[Tensor, "batch layer pos pos"]] | None = None,
                    layer: int = -1,
                    encoder_target: str = "mlm", prediction: bool = False) -> CueEvaluation:
    """Score every method on ``ex`` (see the module docstring). ``maps`` may pass precomputed
    :func:`all_methods` output. Layer ``-1`` of an aggregated method (rollout, GlobEnc, ALTI,
    VZ rollout) covers the whole model; of a layer-local method, the last layer only.

    ``prediction=True`` (an encoder with a masked-LM head) adds the row ``"decompx_to_logit"``:
    DecompX carried through the head (:func:`decompx_cue_contributions`); its share counts the
    prompts where the subject's signed contribution to the agreement logit difference exceeds
    the attractor's, and its correlations use the absolute contributions; the signed ones are
    kept in ``.signed``."""
    if maps is None:
        maps = all_methods(model, ex.tokens, methods)
    names = list(maps)
    B, T = ex.tokens.shape
    b = torch.arange(B)
    q = ex.query_pos.cpu()
    rows = {m: maps[m][:, layer].cpu()[b, q] for m in names}
    signed = None
    if prediction:
        signed = decompx_cue_contributions(model, ex).cpu()
        names.append(DECOMPX_PREDICTION)
        rows[DECOMPX_PREDICTION] = signed.abs()
    target, hook = cue_target(model, ex, encoder_target)
    ref = {
        "grad_x_input": gradient_x_input(model, ex.tokens, target, target_hook=hook).abs().cpu(),
        "occlusion": occlusion(model, ex.tokens, target, target_hook=hook).abs().cpu(),
    }
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 1:] = True
    if ex.kind == "encoder":
        mask[:, -1] = False  # [SEP]
    mask &= torch.arange(T)[None] <= q[:, None] if ex.kind == "decoder" else mask
    share = {m: cue_ranking(maps[m], ex, layer).share for m in names if m in maps}
    if signed is not None:
        margin = signed[b, ex.cue_pos.cpu()] - signed[b, ex.distractor_pos.cpu()]
        share[DECOMPX_PREDICTION] = float((margin > 0).float().mean())
    rg = {m: float(torch.nanmean(spearman(rows[m], ref["grad_x_input"], mask))) for m in names}
    ro = {m: float(torch.nanmean(spearman(rows[m], ref["occlusion"], mask))) for m in names}
    return CueEvaluation(names, share, rg, ro, rows, ref, mask, signed)
