"""Task datasets under a tokenizer, and random-weight checkpoints of the published models' exact
shapes for tests and benchmarks (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel)

from ...gpt2_tokenizer import load_gpt2_tokenizer
from ...models import _minilm_dir
from ...tasks.base import encode, get_tokenizer
from ...tasks.greater_than import _year_splits
from ...tasks.ioi import valid_names
from ...tasks.sva import verb_token_ids
from ...tasks.vocab import CENTURIES, NAMES, SVA_NOUNS
from ...errors import TutorialError
from .common import no_progress_bars

def task_counts(tokenizer_or_model: Any) -> dict[str, int]:
    """How many distinct valid items each task draws from under a tokenizer: Greater-Than start
    years (century, YY) whose clean and "01" forms split into " CC" + "YY" (Hanna et al.'s
    rule), agreement subject noun pairs whose singular and plural forms have the same token
    length (and, with them, the verb pairs, all of which must be one token), and IOI names
    that are one token with a leading space."""

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

    out = Path(out_dir)
    torch.manual_seed(seed)
    if kind == "gpt2":

        model, tok = GPT2LMHeadModel(GPT2Config()), load_gpt2_tokenizer()
    elif kind == "bert-base-uncased":

        model, tok = BertForMaskedLM(BertConfig()), AutoTokenizer.from_pretrained(_minilm_dir())
    else:
        raise TutorialError(f"kind must be 'gpt2' or 'bert-base-uncased', got {kind!r}")
    with no_progress_bars():
        model.eval().save_pretrained(out)
        tok.save_pretrained(out)
    return out
