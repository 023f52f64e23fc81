"""The shipped offline masked LM (data/models/tiny-bert-tasks): re-measure its model card's
numbers and the bar of issue 11 (held-out agreement >= 0.9; "The keys on the cabinet [MASK]
old" -> are), through the Hugging Face model and through the course's loader."""

from __future__ import annotations

import json

import pytest
import torch

from tutorial_utils.paths import DATA_DIR

MLM_DIR = DATA_DIR / "models" / "tiny-bert-tasks"


@pytest.fixture(scope="module")
def hf_mlm():
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(str(MLM_DIR), attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(str(MLM_DIR))


@pytest.fixture(scope="module")
def record():
    return json.loads((MLM_DIR / "training_record.json").read_text())


def test_card_numbers_are_remeasured(hf_mlm, record):
    from tutorial_utils.course.offline_model.train_mlm import evaluate_mlm, render_card

    model, tok = hf_mlm
    torch.manual_seed(0)
    got = evaluate_mlm(model, tok, n=200, seed=1)
    want = record["final_metrics"]
    for key, cell in want.items():
        if key.startswith("agreement_"):
            for metric, value in cell.items():
                assert got[key][metric] == pytest.approx(value, abs=1e-4), (key, metric)
    assert got["canonical_top1"] == want["canonical_top1"] == "are"
    # masked-token accuracy is measured on fresh corpus sentences: it depends on the corpus
    # generator, which may evolve; it must stay close
    assert got["masked_token_accuracy"] == pytest.approx(want["masked_token_accuracy"], abs=0.05)
    # the card shows these numbers
    assert (MLM_DIR / "README.md").read_text() == render_card(record)


def test_meets_the_bar(record):
    from tutorial_utils.course.offline_model.train_mlm import heldout_agreement

    m = record["final_metrics"]
    assert heldout_agreement(m) >= 0.9
    assert m["agreement_heldout_nouns_train_frames"]["accuracy"] >= 0.9
    size_mb = sum(p.stat().st_size for p in MLM_DIR.iterdir()) / 1e6
    assert size_mb < 10


def test_loads_through_the_course_loader():
    from tutorial_utils.model_checks import is_encoder
    from tutorial_utils.models import load_encoder

    enc = load_encoder("tiny-bert-tasks", device="cpu", verbose=False)
    assert is_encoder(enc)
    toks = enc.to_tokens("The keys on the cabinet [MASK] old")
    strs = enc.to_str_tokens(toks[0])
    assert strs[0] == "[CLS]" and strs[-1] == "[SEP]" and "[MASK]" in strs
    logits = enc(toks)[0]
    q = strs.index("[MASK]")
    assert enc.tokenizer.convert_ids_to_tokens(int(logits[q].argmax())) == "are"
    sing = enc(enc.to_tokens("The key on the cabinets [MASK] old"))[0]
    assert enc.tokenizer.convert_ids_to_tokens(int(sing[q].argmax())) == "is"


def test_pure_python_encoding_matches_the_tokenizer(hf_mlm):
    from tutorial_utils.course.offline_model.train_mlm import encode

    _, tok = hf_mlm
    vocab = tok.get_vocab()
    for text in ("The keys on the cabinet [MASK] old", "In the year 1741, the war began.",
                 "When Mary and John went to the store, John gave a drink to Mary"):
        assert tok(text)["input_ids"] == encode(text, vocab)


def test_card_command_uses_the_shipped_config(record):
    """The card's command (train_mlm with its defaults) is the shipped run's configuration."""
    from dataclasses import asdict

    from tutorial_utils.course.offline_model.train_mlm import MLMConfig

    assert asdict(MLMConfig()) == record["train_config"]
