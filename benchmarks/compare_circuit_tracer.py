"""Compare our attribution graph with circuit-tracer's on the same model, transcoders and prompt.

    python benchmarks/compare_circuit_tracer.py [--venv DIR] [--task greater_than|sva] [--seed 5]

circuit-tracer 0.5.0 needs transformers <= 4.57.3 and TransformerLens 3, which cannot share
the course's environment (TransformerLens 4, transformers 5), so the script builds its own
virtual environment (``--venv``, default ``~/.cache/tutorial-utils/circuit-tracer-venv``:
``torch==2.13.0 circuit-tracer==0.5.0 transformers==4.57.3 "transformer-lens>=3,<4"`` from
PyPI) and runs in two halves:

1. **outer** (the course's environment): build our graph (:func:`tutorial_utils.features.
   attribution.build_graph`) for one held-out task prompt with the shipped transcoders, and
   export the prompt's token ids, the logit tokens and the transcoders (circuit-tracer's layout:
   ``W_enc [F, d]``, ``W_dec [F, d]``, ``b_enc``, ``b_dec``) to a temporary folder;
2. **inner** (the venv, ``--inner DIR``): build circuit-tracer's replacement model by hand,
   offline: a ``HookedTransformerConfig`` from the checkpoint's config, the weights through
   TransformerLens's GPT-2 conversion *without* folding or centring, the transcoders as
   ``SingleLayerTranscoder`` s with its ``TopK`` activation, reading ``mlp.hook_in`` (the
   ``ln_2`` output; TransformerLens 3's ``ln2.hook_normalized`` is taken *before* the LayerNorm
   weight and bias) and writing ``hook_mlp_out``; then ``attribute()`` on the BOS-prefixed
   ids with our logit tokens as targets.

The outer half then matches nodes and prints (and writes with ``--json``) node counts, the
largest differences of activations and edges, and the time each side took.

Measured (this machine, shipped TopK-16 transcoders, held-out prompts of seed 5):

| prompt | features (ours / after BOS / theirs) | edges compared | max edge difference | relative | time ours / theirs |
| --- | --- | --- | --- | --- | --- |
| Greater-Than "One campaign ran from 1882 to 18" | 576 / 512 / 512 | 288,666 | 6.6e-6 | 7.3e-7 | 0.07 s / 0.20 s |
| agreement "The friend that the chairs wanted" | 448 / 384 / 384 | 163,510 | 4.0e-6 | 6.5e-7 | 0.05 s / 0.15 s |

Every feature matched, activations agree to 1e-5, and circuit-tracer's own logits equal the
Hugging Face model's to 6e-6.

Conventions that differ, stated rather than hidden: circuit-tracer zeroes every feature and
the error node at position 0 (BOS), we keep them (the comparison leaves position 0 out); its
TopK keeps the k largest pre-activations even when negative, ours ReLUs them (features with a
negative value among the top k are counted and left out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PINS = ["torch==2.13.0", "circuit-tracer==0.5.0", "transformers==4.57.3",
        "transformer-lens>=3,<4"]
DEFAULT_VENV = Path.home() / ".cache" / "tutorial-utils" / "circuit-tracer-venv"
REPO = Path(__file__).resolve().parents[1]


# --- inner half: runs in circuit-tracer's environment -------------------------------------------
def inner(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    from circuit_tracer import attribute
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel)
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import (SingleLayerTranscoder,
                                                                   TranscoderSet)

    torch.set_num_threads(1)
    spec = json.loads((folder / "spec.json").read_text())
    hf = GPT2LMHeadModel.from_pretrained(spec["model_dir"]).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
        n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size,
        act_fn="gelu_new", normalization_type="LN", eps=c.layer_norm_epsilon,
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        model_name="tiny-gpt2-tasks", device="cpu", dtype=torch.float32)
    tcs = {}
    for l in range(c.n_layer):
        w = load_file(str(folder / f"tc{l}.safetensors"))
        tc = SingleLayerTranscoder(c.n_embd, w["W_enc"].shape[0], TopK(spec["k"]), l,
                                   device=torch.device("cpu"), dtype=torch.float32)
        tc.load_state_dict({k: w[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")})
        tcs[l] = tc
    tset = TranscoderSet(tcs, feature_input_hook="mlp.hook_in",
                         feature_output_hook="hook_mlp_out")
    model = TransformerLensReplacementModel(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False,
                                      center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False)
    # the checkpoint's tokenizer_config names transformers 5's class: build it from the file
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(spec["model_dir"]) / "tokenizer.json"),
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", unk_token="<unk>")
    model.tokenizer = tok          # set_tokenizer would reload it by name from the hub
    model._configure_replacement_model(tset)
    tokens = torch.tensor(spec["tokens"])
    with torch.no_grad():
        hf_logits = hf(tokens[None]).logits[0]
        tl_logits = model(tokens[None])[0]
    t0 = time.time()
    graph = attribute(tokens, model, attribution_targets=torch.tensor(spec["logit_tokens"]),
                      batch_size=256)
    wall = time.time() - t0
    torch.save({"active_features": graph.active_features, "adjacency": graph.adjacency_matrix,
                "activations": graph.activation_values,
                "selected": graph.selected_features,
                "logit_tokens": [t.vocab_idx for t in graph.logit_targets],
                "wall_s": wall,
                "tl_vs_hf_logits": float((tl_logits - hf_logits).abs().max())},
               folder / "theirs.pt")


# --- outer half: the course's environment ------------------------------------------------------
def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import circuit_tracer"],
                                      capture_output=True).returncode == 0:
        return py
    print(f"building circuit-tracer's environment in {venv} (pip, a few minutes)", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True)
    return py


def outer(args: argparse.Namespace) -> dict:
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO))
    from tutorial_utils.features.attribution import build_graph
    from tutorial_utils.features.dictionary import load_dictionary
    from tutorial_utils.features.replacement import ReplacementModel
    from tutorial_utils.features.unfolded import UnfoldedGPT2
    from tutorial_utils.paths import DATA_DIR
    from tutorial_utils.tasks import make_task

    torch.set_num_threads(1)
    model_dir = DATA_DIR / "models" / "tiny-gpt2-tasks"
    lm = UnfoldedGPT2.from_pretrained(model_dir)
    tcs = {l: load_dictionary(DATA_DIR / "dictionaries" / f"transcoder_m{l}")
           for l in range(lm.w.n_layers)}
    rm = ReplacementModel(lm, tcs)
    ds = make_task(args.task, lm.tokenizer, n=1, frames_split="heldout", seed=args.seed)
    tokens = ds.clean_tokens[0, : int(ds.answer_pos[0]) + 1]
    t0 = time.time()
    ours = build_graph(rm, tokens)
    our_wall = time.time() - t0
    logit_tokens = [int(r.argmax()) for r in ours.logit_weights]
    py = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        k = tcs[0].config.k
        for l, tc in tcs.items():
            save_file({"W_enc": tc.W_enc.detach().contiguous(),
                       "W_dec": tc.W_dec.detach().T.contiguous(),
                       "b_enc": tc.b_enc.detach().contiguous(),
                       "b_dec": tc.b_dec.detach().contiguous()},
                      str(folder / f"tc{l}.safetensors"))
        (folder / "spec.json").write_text(json.dumps(
            {"model_dir": str(model_dir), "tokens": tokens.tolist(),
             "logit_tokens": logit_tokens, "k": k}))
        env = {k_: v for k_, v in os.environ.items() if k_ != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
        subprocess.run([str(py), str(Path(__file__).resolve()), "--inner", str(folder)],
                       check=True, env=env)
        theirs = torch.load(folder / "theirs.pt")
    return compare(ours, theirs, our_wall, args, ds.clean_prompts[0])


def compare(ours, theirs, our_wall: float, args: argparse.Namespace, prompt: str) -> dict:
    import torch

    T, L = ours.n_tokens, ours.n_layers
    tf = theirs["active_features"].long()                     # (layer, pos, feature)
    sel = theirs["selected"].long()
    tf_sel = tf[sel]
    n_tf = tf_sel.shape[0]
    # our index of each of their features (or -1)
    key = {tuple(r): i for i, r in enumerate(ours.features.tolist())}
    ours_idx = torch.tensor([key.get(tuple(r), -1) for r in tf_sel.tolist()])
    negative = int((theirs["activations"] <= 0).sum())
    ours_nobos = int((ours.features[:, 1] > 0).sum())
    # node maps: theirs -> ours, in their adjacency order
    s = ours.slices()
    n_e = L * T
    our_of_their = torch.cat([
        ours_idx,
        s["error"].start + torch.arange(n_e),                   # same (layer, pos) order
        s["embed"].start + torch.arange(T),
        s["logit"].start + torch.arange(len(theirs["logit_tokens"]))])
    assert [int(r.argmax()) for r in ours.logit_weights] == theirs["logit_tokens"]
    A_t = theirs["adjacency"].float()
    valid = our_of_their >= 0
    pos_of_their = torch.cat([tf_sel[:, 1], torch.arange(n_e) % T, torch.arange(T),
                              torch.full((len(theirs["logit_tokens"]),), T - 1)])
    n_l = len(theirs["logit_tokens"])
    kind = torch.tensor([0] * n_tf + [1] * n_e + [2] * T + [3] * n_l)   # f, err, emb, logit
    keep = valid & (pos_of_their > 0)                 # position 0 (BOS): conventions differ
    src_ok = ((kind <= 1) & keep) | (kind == 2)
    tgt_ok = ((kind == 0) & keep) | (kind == 3)
    rows, cols = tgt_ok.nonzero()[:, 0], src_ok.nonzero()[:, 0]
    theirs_sub = A_t[rows][:, cols]
    ours_sub = ours.adjacency[our_of_their[rows]][:, our_of_their[cols]]
    diff = (theirs_sub - ours_sub).abs()
    scale = float(ours_sub.abs().max())
    act_diff = float((theirs["activations"][sel][ours_idx >= 0]
                      - ours.activations[ours_idx[ours_idx >= 0]]).abs().max())
    corr = float(torch.corrcoef(torch.stack([theirs_sub.flatten(), ours_sub.flatten()]))[0, 1])
    out = {
        "prompt": prompt, "tokens": T,
        "ours": {"features": ours.n_features, "features_after_bos": ours_nobos,
                 "errors": ours.n_errors, "tokens": T, "logits": ours.n_logits,
                 "wall_s": round(our_wall, 3)},
        "theirs": {"features": n_tf, "errors": n_e, "tokens": T,
                   "logits": len(theirs["logit_tokens"]), "wall_s": round(theirs["wall_s"], 3),
                   "nonpositive_topk_values": negative,
                   "their_logits_vs_hf_max_abs": theirs["tl_vs_hf_logits"]},
        "matched_features": int((ours_idx >= 0).sum()),
        "max_abs_activation_diff": act_diff,
        "edges_compared": int(rows.numel() * cols.numel()),
        "max_abs_edge_diff": float(diff.max()), "max_abs_edge": scale,
        "relative_max_edge_diff": float(diff.max()) / scale,
        "edge_correlation": corr,
    }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--task", default="greater_than", choices=("greater_than", "sva"))
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.inner is not None:
        inner(args.inner)
        return
    out = outer(args)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
