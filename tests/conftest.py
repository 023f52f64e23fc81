"""Shared fixtures: tokenizers and models, built once per test session."""

from __future__ import annotations

import pytest

from tutorial_utils.paths import DATA_DIR

import os

OFFLINE_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"
#: The decoder the tests use; ``TUTORIAL_TEST_MODEL`` may point at another local checkpoint.
TEST_MODEL = os.environ.get("TUTORIAL_TEST_MODEL", "offline")


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from tutorial_utils.gpt2_tokenizer import load_gpt2_tokenizer

    return load_gpt2_tokenizer()


@pytest.fixture(scope="session")
def offline_tokenizer():
    """The shipped offline model's tokenizer (rebuilt from the corpus if not shipped yet)."""
    if (OFFLINE_DIR / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(OFFLINE_DIR))
    from tutorial_utils.course.offline_model.corpus import corpus_vocab
    from tutorial_utils.course.offline_model.tokenizer import make_hf_tokenizer

    return make_hf_tokenizer(corpus_vocab())


@pytest.fixture(scope="session")
def model():
    """The shipped offline decoder through the same path students use."""
    from tutorial_utils.models import load_model

    return load_model(TEST_MODEL, device="cpu", verbose=False)


@pytest.fixture(scope="session")
def hooked_model():
    """The offline decoder with every hook option patching needs."""
    from tutorial_utils.models import load_model

    return load_model(TEST_MODEL, device="cpu", hooks=True, verbose=False)


@pytest.fixture
def lenient_checks(monkeypatch):
    """Exercise checks report a failure to the student instead of raising: strict mode
    (``TUTORIAL_CHECKS_STRICT=1``) is for the solution notebooks under CI; the tests of the
    checks themselves need to see failed results."""
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)

