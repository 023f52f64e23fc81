"""Where the project's data lives.

``TUTORIAL_DATA_DIR`` overrides it; otherwise ``data/`` beside the package (a git checkout
installed with ``pip install -e .``, which is how the README and the Colab cell install it).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR", "GPT2_TOKENIZER_DIR", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TUTORIAL_DATA_DIR", REPO_ROOT / "data"))
GPT2_TOKENIZER_DIR = DATA_DIR / "gpt2_tokenizer"
