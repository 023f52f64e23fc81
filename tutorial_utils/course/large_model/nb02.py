"""Notebook 02\'s section on a published model: context mixing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ... import context_mixing as cm
from ...context_mixing.evaluation import evaluate_on_cue, sva_cue_examples
from .common import check_positive, gpu_hint, model_label, model_shape, no_progress_bars, published_lines

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
        lines += [published_lines("context_mixing"), gpu_hint("02", "n_examples=48")]
        return "\n".join(lines)


def _mixing_scores(model: Any, n: int, seed: int) -> MixingScores:

    ex = sva_cue_examples(model, n=n, seed=seed)
    ev = evaluate_on_cue(model, ex)
    return MixingScores(model_label(model), len(ex), dict(ev.share), dict(ev.rho_grad),
                        dict(ev.rho_occ))


def section_02(encoder: Any, decoder: Any, *, n_examples: int = 8, seed: int = 0,
               verbose: bool = True) -> ContextMixingSection:
    """Notebook 02's cue test on ``encoder`` (a BERT-style masked LM) and ``decoder`` (GPT-2
    style): every method of :mod:`tutorial_utils.context_mixing` on ``n_examples`` agreement
    prompts each, scored against gradient x input and occlusion."""

    check_positive(n_examples=n_examples)
    text = "The keys on the cabinet [MASK] red."
    toks = encoder.to_tokens(text)
    special = [0, toks.shape[1] - 1]  # [CLS] and [SEP]
    with no_progress_bars():  # the methods reload the original Hugging Face weights
        att = cm.raw_attention(encoder, toks[0])
        nrm = cm.attention_norm(encoder, toks[0], "attn")
        res = ContextMixingSection(
            _mixing_scores(encoder, n_examples, seed), _mixing_scores(decoder, n_examples, seed),
            model_shape(encoder), model_shape(decoder),
            att[:, :, special].sum(-1).mean(-1).float().cpu(),
            nrm[:, :, special].sum(-1).mean(-1).float().cpu())
    if verbose:
        print(res.summary())
    return res
