"""A word-level tokenizer with GPT-2's conventions, for the offline model.

Pieces are cut by one regular expression, :data:`PIECE_PATTERN`:

* a word with its leading space is one token (" war" -> "Ġwar"); at the start of a text it has
  no space ("The"), exactly as in GPT-2's byte-level BPE;
* digits come in pairs, so a year splits into a century and two digits, " 1741" -> " 17" + "41"
  (GPT-2 splits most years this way, which is what the Greater-Than task relies on);
* every other non-space character is its own token ("," ".").

The vocabulary is the set of pieces of the corpus (:mod:`.corpus`) plus every task word in both
forms, so every name, noun and answer of the tasks is a single token. ``<|endoftext|>`` (id 0)
is the BOS/EOS/padding token, as in GPT-2; ``<unk>`` (id 1) catches anything else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

PIECE_PATTERN = r"\s?[A-Za-z]+|\s?\d\d|\s?[^\sA-Za-z\d]"
BOS = "<|endoftext|>"
UNK = "<unk>"
_PIECE_RE = re.compile(PIECE_PATTERN)


def pieces(text: str) -> list[str]:
    """Split ``text`` into tokenizer pieces, with a leading space written as "Ġ" like GPT-2."""
    return [p.replace(" ", "Ġ") for p in _PIECE_RE.findall(text)]


def build_vocab(texts: Iterable[str], extra_words: Iterable[str] = ()) -> dict[str, int]:
    """Vocabulary of every piece in ``texts`` plus each extra word with and without a space.

    Ids: 0 BOS, 1 UNK, then the pieces in sorted order (deterministic for the same inputs).
    """
    seen: set[str] = set()
    for text in texts:
        seen.update(pieces(text))
    for word in extra_words:
        seen.update(pieces(word))
        seen.update(pieces(" " + word))
    seen.discard(BOS)
    seen.discard(UNK)
    vocab = {BOS: 0, UNK: 1}
    for piece in sorted(seen):
        vocab[piece] = len(vocab)
    return vocab


def make_hf_tokenizer(vocab: dict[str, int]):
    """A ``PreTrainedTokenizerFast`` for ``vocab`` (no special tokens added when encoding;
    the model code prepends BOS itself, as TransformerLens does)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=UNK,
        model_max_length=64,
    )


def encode_fast(text: str, vocab: dict[str, int]) -> list[int]:
    """Pure-Python encoding used by the training loop (tested equal to the HF tokenizer)."""
    unk = vocab[UNK]
    return [vocab.get(p, unk) for p in pieces(text)]


def save_tokenizer(vocab: dict[str, int], out_dir: str | Path) -> None:
    """Save the HF tokenizer files to ``out_dir``."""
    make_hf_tokenizer(vocab).save_pretrained(str(out_dir))
