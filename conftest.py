"""Repository-wide pytest configuration (applies to the unit tests and the nbval notebook runs).

* Notebooks run offline, on CPU, with the shipped models, so their saved outputs are the ones
  a reader sees and CI compares: ``TUTORIAL_MODEL``/``TUTORIAL_ENCODER`` = offline.
* Exercise checks raise on failure (``TUTORIAL_CHECKS_STRICT=1``): a broken reference solution
  fails CI instead of printing a red line.
* nbval does not compare HTML/JavaScript/widget outputs (circuitsvis views, tqdm bars, Plotly),
  nor stderr, which carries load and progress noise.
"""

import os

os.environ.setdefault("TUTORIAL_MODEL", "offline")
os.environ.setdefault("TUTORIAL_ENCODER", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TUTORIAL_CHECKS_STRICT", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

SKIPPED_MIME_TYPES = (
    "text/html",
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "stderr",
)


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += SKIPPED_MIME_TYPES
