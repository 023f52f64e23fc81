"""Every method on the architectures researchers use (issue 13): a families x methods matrix on
tiny random-weight checkpoints built from ``transformers`` configs (no download), saved in a
temporary directory and loaded through ``load_model`` / ``load_encoder``.

Families and what each one exercises:

* ``pythia``  GPT-NeoX: rotary (partial), LayerNorm, **parallel attention + MLP**;
* ``llama``   RMSNorm, rotary, gated MLP, **grouped-query attention** (6 query heads, 2 k/v);
* ``qwen2``   as Llama, with q/k/v biases (4 query heads, 2 k/v);
* ``mistral`` as Llama, multi-head here (4 query heads, 4 k/v): the GQA code path at ratio 1;
* ``gemma``   RMSNorm (1 + w), scaled embeddings, **multi-query attention** (4 query heads, 1 k/v);
* more configs of the same families: ``neox_sequential``, ``qwen2_tied``, ``gemma_wide_heads``,
  ``llama_bias_mqa``, ``pythia_quarter``, ``mistral_gqa4``, ``qwen2_1layer`` (see
  :func:`_decoder_config`; ``TUTORIAL_ARCH_FAMILIES=a,b`` runs a chosen list);
* ``gemma2``, ``gemma3``: post-norms and soft-capped logits, where the graph and DLA refuse;
* ``roberta`` (context mixing, Value Zeroing; decoder methods refuse) and ``distilbert`` (no
  bridge adapter: refused at load).

Weights are drawn with a large ``initializer_range`` so that the clean and corrupted metrics
differ clearly (a random model at the default scale barely moves the metric, and every
"patching gives the corrupted run" test would pass vacuously). README "Your own model" tabulates
what this file measures.
"""

from __future__ import annotations

import os

import pytest
import torch

from tutorial_utils import composition as C
from tutorial_utils import context_mixing as cm
from tutorial_utils import patching as P
from tutorial_utils import path_patching as PP
from tutorial_utils.circuits.circuit_evaluation import evaluate_graph
from tutorial_utils.circuits.edge_attribution import (eap_ig_scores, eap_scores, exact_scores,
                                                      node_attribution)
from tutorial_utils.dla import direct_logit_attribution, logit_diff_attribution
from tutorial_utils.faithfulness import all_nodes, circuit_faithfulness
from tutorial_utils.graph import Graph, count_edges
from tutorial_utils.names import hook_name, kv_head, n_kv_heads
from tutorial_utils.input_attribution import ig_completeness, integrated_gradients, logit_target
from tutorial_utils.interchange import (GraphInterventions, ablation_runs, run_variants,
                                        sender_activations, stacked_forward)
from tutorial_utils.logit_lens import logit_lens
from tutorial_utils.tasks.base import TaskDataset
from tutorial_utils.errors import TutorialError

ATOL = 1e-4
VOCAB = {"<|endoftext|>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(60)}}
A, B = 5, 6  # the metric's two tokens: logit(A) - logit(B) at the last position


def _decoder_config(family: str):
    import transformers as T

    common = dict(vocab_size=len(VOCAB), num_hidden_layers=2, max_position_embeddings=64,
                  bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=0.3,
                  attn_implementation="eager", tie_word_embeddings=False)
    if family == "pythia":
        return T.GPTNeoXConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               rotary_pct=0.5, use_parallel_residual=True, **common)
    if family == "llama":
        return T.LlamaConfig(hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
                             intermediate_size=64, **common)
    if family == "qwen2":
        return T.Qwen2Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=64, **common)
    if family == "mistral":
        return T.MistralConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                               intermediate_size=64, sliding_window=None, **common)
    if family == "gemma":
        return T.GemmaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=1,
                             head_dim=8, intermediate_size=64, **common)
    # variants: sequential GPT-NeoX, tied embeddings + GQA ratio 4, heads wider than d_model/H
    if family == "neox_sequential":
        return T.GPTNeoXConfig(hidden_size=36, num_attention_heads=3, intermediate_size=48,
                               rotary_pct=1.0, use_parallel_residual=False,
                               **{**common, "num_hidden_layers": 3})
    if family == "qwen2_tied":
        return T.Qwen2Config(hidden_size=32, num_attention_heads=8, num_key_value_heads=2,
                             intermediate_size=48, **{**common, "tie_word_embeddings": True})
    if family == "gemma_wide_heads":
        return T.GemmaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=16, intermediate_size=64, **common)
    if family == "llama_bias_mqa":  # 3 layers, 8 query heads on 1 key/value head, biases
        return T.LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=1,
                             intermediate_size=96, attention_bias=True, mlp_bias=True,
                             **{**common, "num_hidden_layers": 3})
    if family == "pythia_quarter":  # Pythia's rotary_pct 0.25, 8 heads
        return T.GPTNeoXConfig(hidden_size=64, num_attention_heads=8, intermediate_size=128,
                               rotary_pct=0.25, use_parallel_residual=True, **common)
    if family == "mistral_gqa4":  # 12 query / 3 key-value heads, a sliding window
        return T.MistralConfig(hidden_size=48, num_attention_heads=12, num_key_value_heads=3,
                               intermediate_size=64, sliding_window=4, **common)
    if family == "qwen2_1layer":
        return T.Qwen2Config(hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                             intermediate_size=48, **{**common, "num_hidden_layers": 1})
    if family == "gemma2":
        return T.Gemma2Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=8, intermediate_size=64, sliding_window=16, **common)
    if family == "gemma3":
        return T.Gemma3TextConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                  head_dim=8, intermediate_size=64, sliding_window=16, **common)
    raise KeyError(family)


DECODERS = ["pythia", "llama", "qwen2", "mistral", "gemma", "neox_sequential", "qwen2_tied",
            "gemma_wide_heads", "llama_bias_mqa", "pythia_quarter", "mistral_gqa4", "qwen2_1layer"]
# TUTORIAL_ARCH_FAMILIES=llama,gemma2 runs other families of _decoder_config instead
DECODERS = [f for f in os.environ.get("TUTORIAL_ARCH_FAMILIES", ",".join(DECODERS)).split(",") if f]
#: number of key/value heads and parallel attention + MLP, per decoder family
SHAPE = {"pythia": (4, 4, True), "llama": (6, 2, False), "qwen2": (4, 2, False),
         "mistral": (4, 4, False), "gemma": (4, 1, False), "neox_sequential": (3, 3, False),
         "qwen2_tied": (8, 2, False), "gemma_wide_heads": (4, 2, False),
         "gemma2": (4, 2, False), "llama_bias_mqa": (8, 1, False), "pythia_quarter": (8, 8, True),
         "mistral_gqa4": (12, 3, False), "qwen2_1layer": (2, 1, False), "gemma3": (4, 2, False)}


def _save_decoder(family: str, path) -> None:
    from transformers import AutoModelForCausalLM

    from tutorial_utils.course.offline_model.tokenizer import make_hf_tokenizer

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(_decoder_config(family)).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a folding mistake shows
        for name, p in hf.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    hf.save_pretrained(path)
    make_hf_tokenizer(VOCAB).save_pretrained(path)


@pytest.fixture(scope="module", params=DECODERS)
def dec(request, tmp_path_factory):
    """``(family, bridge with hooks, dataset)`` for one decoder family."""
    from tutorial_utils.models import load_model

    path = tmp_path_factory.mktemp(request.param)
    _save_decoder(request.param, path)
    model = load_model(str(path), device="cpu", hooks=True, verbose=False)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(2, len(VOCAB), (4, 6), generator=g)
    clean[:, 0] = 0
    corr = clean.clone()
    corr[:, 2] = torch.randint(2, len(VOCAB), (4,), generator=g)
    corr[:, 4] = torch.randint(2, len(VOCAB), (4,), generator=g)

    return request.param, model, TaskDataset.from_tokens(clean, corr, _per_example)


def _per_example(logits, ds):
    """The package's metric contract: one run ``[B, T, V]`` -> ``[B]``."""
    return logits[:, -1, A] - logits[:, -1, B]


def _metric(logits, ds):
    """The mean over the examples of each of ``n`` runs stacked along the batch: ``[n]``."""
    return _per_example(logits, ds).reshape(-1, len(ds)).mean(-1)


def _runs(model, ds):
    with torch.no_grad():
        clean = float(_metric(model(ds.clean_tokens), ds)[0])
        corr = float(_metric(model(ds.corrupted_tokens), ds)[0])
    assert abs(clean - corr) > 0.05, "the clean/corrupted gap must not be tiny"
    return clean, corr


# ------------------------------------------------------------------------------ the graph

def test_graph_follows_the_architecture(dec):
    family, model, ds = dec
    H, G, parallel = SHAPE[family]
    assert model.cfg.n_heads == H
    g = Graph.from_model(model)
    assert (g.n_kv_heads, g.parallel) == (G, parallel)
    assert g.n_edges == count_edges(model.cfg.n_layers, H, G, parallel)
    # the receivers match the hooks: H query inputs, G key and G value inputs per layer
    _, cache = model.run_with_cache(ds.clean_tokens[:1])
    for r in g.receiver_hooks():
        if r.per_head:
            assert cache[r.name].shape[2] == r.index.stop - r.index.start, r.name
    # parallel attention: MLP l reads only layers < l (its input is the block's input)
    L = model.cfg.n_layers
    assert g.is_edge(f"a0.h{H - 1}", "m0") is (not parallel)
    if L >= 2:
        assert g.is_edge(f"a0.h{H - 1}", "m1") and g.is_edge("m0", "a1.h0.q")
    if parallel:
        torch.testing.assert_close(cache[hook_name("mlp_in", L - 1)],
                                   cache[hook_name("resid_pre", L - 1)])
    # GQA: the k/v names of the query heads sharing a key/value head are one receiver
    rep = H // G
    for h in range(H):
        assert g.bwd_index(f"a{L - 1}.h{h}.k") == g.bwd_index(f"a{L - 1}.h{h - h % rep}.k")
        assert g.kv_head(h) == kv_head(h, model.cfg.n_heads, n_kv_heads(model.cfg)) == h // rep
    assert Graph.from_dict(g.to_dict()).n_edges == g.n_edges
    from_cfg = Graph.from_config(_decoder_config(family))  # without building the model
    assert (from_cfg.n_kv_heads, from_cfg.parallel, from_cfg.n_edges) == (G, parallel, g.n_edges)


# ------------------------------------------------------------------------------ the engine

def test_edge_patching_all_edges_is_corrupted_and_none_is_clean(dec):
    family, model, ds = dec
    clean, corr = _runs(model, ds)
    g = Graph.from_model(model)
    vals = PP.edge_patching(model, ds, [g.edges, []])
    assert abs(float(vals[0]) - corr) < ATOL and abs(float(vals[1]) - clean) < ATOL
    full, empty = evaluate_graph(model, g, ds, [g.real_edges, g.empty_mask()])
    assert abs(float(full) - clean) < ATOL and abs(float(empty) - corr) < ATOL


def test_removing_a_node_s_out_edges_is_patching_the_node(dec):
    """For every sender, corrupting all its out-edges equals patching its output. This fails
    if the graph has an edge the model does not (GPT-2's order on a parallel model: the edge
    a0.h1 -> m0 measured -1.09 against -1.83 for patching a0.h1 on the tiny Pythia)."""
    family, model, ds = dec
    _runs(model, ds)
    g = Graph.from_model(model)
    S = g.n_forward
    removed = torch.zeros(S, S, g.n_backward, dtype=torch.bool)
    removed[range(S), range(S)] = g.real_edges
    patched = torch.eye(S, dtype=torch.bool)
    by_edges = run_variants(model, g, ds, removed)
    by_nodes = run_variants(model, g, ds, patched=patched)
    torch.testing.assert_close(by_edges, by_nodes, atol=ATOL, rtol=0)
    assert float((by_nodes - by_nodes.mean()).abs().max()) > 1e-3


def test_gqa_key_edge_is_a_hand_written_hook_on_the_shared_head(dec):
    """The edge ``embed -> a0.h{H-1}.k`` (any query head's name) adds the embedding's change to
    key/value head ``(H-1) // (H/G)`` of ``hook_k_input``, and nothing else (a hand-written
    hook, independent of the engine)."""
    family, model, ds = dec
    H, G, _ = SHAPE[family]
    name = hook_name("resid_pre", 0)
    with torch.no_grad():
        _, cc = model.run_with_cache(ds.clean_tokens, names_filter=name)
        _, kc = model.run_with_cache(ds.corrupted_tokens, names_filter=name)
    delta = kc[name] - cc[name]
    g_kv = (H - 1) // (H // G)
    last = 0  # the first layer: the embedding's direct effect on its keys is the largest

    def hook(x, hook):
        x = x.clone()
        x[:, :, g_kv] += delta
        return x

    with torch.no_grad():
        want = float(_metric(model.run_with_hooks(
            ds.clean_tokens, fwd_hooks=[(hook_name("k_input", last), hook)]), ds)[0])
    for recv in (f"a{last}.h{H - 1}.k", f"a{last}.h{g_kv * (H // G)}.k"):
        got = float(PP.edge_patching(model, ds, [[("embed", recv)]])[0])
        assert abs(got - want) < ATOL, recv
    clean, _ = _runs(model, ds)
    assert abs(want - clean) > 1e-3


def test_faithfulness_full_is_one_and_empty_is_zero(dec):
    family, model, ds = dec
    _runs(model, ds)
    full = circuit_faithfulness(model, ds, all_nodes(model))
    empty = circuit_faithfulness(model, ds, [])
    edges = circuit_faithfulness(model, ds, Graph.from_model(model).edges)
    assert abs(full.faithfulness - 1) < 1e-3 and abs(empty.faithfulness) < 1e-3
    assert abs(edges.faithfulness - 1) < 1e-3


def test_eap_is_eap_ig_1_and_the_metric_s_derivative(dec):
    """EAP = EAP-IG(steps=1), and each EAP score is the derivative of the metric along the
    edge's patch direction: a central finite difference through the engine (the receiver reads
    ``in_r + eps * Δ_s``) agrees; checked on the largest edges into q, k, v and MLP receivers,
    which covers the GQA-shared k/v receivers and the parallel MLPs."""
    family, model, ds = dec
    g = Graph.from_model(model)
    eap = eap_scores(model, g, ds)
    torch.testing.assert_close(eap, eap_ig_scores(model, g, ds, steps=1), atol=1e-6, rtol=1e-5)
    # node-level attribution patching = the row sums of the edge scores
    torch.testing.assert_close(node_attribution(model, g, ds), eap.sum(1), atol=1e-5, rtol=1e-4)
    clean_acts = sender_activations(model, g, ds.clean_tokens)
    delta = sender_activations(model, g, ds.corrupted_tokens) - clean_acts
    picks = []
    for kind in (".q", ".k", ".v", "m"):
        cols = [i for i, r in enumerate(g.receivers)
                if (r.endswith(kind) if kind != "m" else r.startswith("m"))]
        sub = eap[:, cols].abs().masked_fill(~g.real_edges[:, cols], -1.0)
        n_real = int(g.real_edges[:, cols].sum())
        for flat in sub.flatten().topk(min(2, n_real)).indices.tolist():
            picks.append((flat // len(cols), cols[flat % len(cols)]))
    masks = torch.zeros(len(picks), g.n_forward, g.n_backward, dtype=torch.bool)
    for k, (s, r) in enumerate(picks):
        masks[k, s, r] = True
    eps = 2e-3  # small: the metric is far from linear on these large random weights
    with torch.no_grad():
        runs = ablation_runs(ds, "corrupted")

        def shifted(values):
            iv = GraphInterventions(model, g, masks, None, "corrupted", runs, values=values)
            return stacked_forward(model, ds.clean_tokens, len(masks),
                                   iv.hooks(slice(0, len(ds)), slice(0, len(masks))))
        plus = _metric(shifted(clean_acts + eps * delta), ds)
        minus = _metric(shifted(clean_acts - eps * delta), ds)
    fd = (plus - minus) / (2 * eps) * len(ds)  # EAP sums over examples of the mean metric
    want = torch.tensor([float(eap[s, r]) for s, r in picks]) * len(ds)
    scale = float(eap.abs().max()) * len(ds)
    assert scale > 1e-3
    torch.testing.assert_close(fd.float(), want, atol=0.02 * scale, rtol=0.02)


def test_exact_scores_are_single_edge_patching(dec):
    family, model, ds = dec
    g = Graph.from_model(model)
    exact = exact_scores(model, g, ds)
    clean, _ = _runs(model, ds)
    top = exact.abs().flatten().topk(3).indices.tolist()
    edges = [(g.senders[i // g.n_backward], g.receivers[i % g.n_backward]) for i in top]
    vals = PP.edge_patching(model, ds, [[e] for e in edges])
    torch.testing.assert_close(vals, torch.tensor([float(exact[g.edge_index(e)]) for e in edges])
                               + clean, atol=ATOL, rtol=0)
    assert float(exact.abs().max()) > 1e-3


# ------------------------------------------------------------------------------ patching sweeps

def test_patching_sweeps_match_transformer_lens(dec):
    import transformer_lens.patching as tlp

    family, model, ds = dec
    clean, corr = ds.clean_tokens, ds.corrupted_tokens

    def metric(logits):
        return (logits[:, -1, A] - logits[:, -1, B]).mean()

    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    sweeps = [(tlp.get_act_patch_resid_pre, "resid_pre", ("layer", "pos")),
              (tlp.get_act_patch_attn_out, "attn_out", ("layer", "pos")),
              (tlp.get_act_patch_mlp_out, "mlp_out", ("layer", "pos")),
              (tlp.get_act_patch_attn_head_out_all_pos, "z", ("layer", "head")),
              (tlp.get_act_patch_attn_head_q_all_pos, "q", ("layer", "head")),
              (tlp.get_act_patch_attn_head_pattern_all_pos, "pattern", ("layer", "head")),
              # under GQA, TL's k/v sweeps run over the key/value heads, as ours do
              (tlp.get_act_patch_attn_head_k_all_pos, "k", ("layer", "head")),
              (tlp.get_act_patch_attn_head_v_all_pos, "v", ("layer", "head")),
              (tlp.get_act_patch_attn_head_v_by_pos, "v", ("layer", "pos", "head"))]
    for tl_fn, site, by in sweeps:
        ours = P.patching_sweep(model, ds, site, by, direction="denoise", progress=False)
        with torch.no_grad():
            ref = tl_fn(model, corr, cache, metric)
        torch.testing.assert_close(ours.values, ref.float().cpu(), atol=ATOL, rtol=0,
                                   msg=f"{family} {site}")


def test_key_value_sweeps_index_key_value_heads(dec):
    """Under GQA the ``head`` axis of a ``k``/``v`` sweep runs over the key/value heads, each
    patched as a hand-written hook on ``hook_k``/``hook_v`` would."""
    family, model, ds = dec
    H, G, _ = SHAPE[family]
    for site in ("k", "v"):
        res = P.patching_sweep(model, ds, site, ("layer", "head"), direction="denoise",
                               progress=False)
        assert res.values.shape == (model.cfg.n_layers, G)
        last = model.cfg.n_layers - 1
        name = hook_name(site, last)
        with torch.no_grad():
            _, cache = model.run_with_cache(ds.clean_tokens, names_filter=name)

        def hook(x, hook, g=G - 1):
            x = x.clone()
            x[:, :, g] = cache[name][:, :, g]
            return x

        with torch.no_grad():
            want = float(_metric(model.run_with_hooks(ds.corrupted_tokens,
                                                      fwd_hooks=[(name, hook)]), ds)[0])
        assert abs(float(res.values[last, G - 1]) - want) < ATOL, site
    with pytest.raises(TutorialError, match="out of range"):
        P.ablate(model, ds.clean_tokens, [f"k.1.{G}"], "zero")
    if SHAPE[family][2]:  # parallel attention + MLP: no residual stream between them
        with pytest.raises(TutorialError, match="parallel"):
            P.patching_sweep(model, ds, "resid_mid", ("layer",), progress=False)


def test_pruning_never_changes_the_metric(dec):
    """Random circuits evaluate the same before and after ``prune`` (dead-end edges only);
    under GQA a shared key/value receiver keeps every query head of its group alive."""
    from tutorial_utils.circuits import prune

    family, model, ds = dec
    g = Graph.from_model(model)
    gen = torch.Generator().manual_seed(1)
    masks = [g.real_edges & (torch.rand(g.real_edges.shape, generator=gen) < p)
             for p in (0.1, 0.2, 0.3, 0.5)]
    pruned = [prune(g, m) for m in masks]
    assert any(int(p.sum()) < int(m.sum()) for p, m in zip(pruned, masks))
    torch.testing.assert_close(evaluate_graph(model, g, ds, masks),
                               evaluate_graph(model, g, ds, pruned), atol=ATOL, rtol=0)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tutorial_utils.circuits import draw_circuit

    fig = draw_circuit(g, pruned[-1], backend="matplotlib")  # GQA k/v edges drawn to their heads
    plt.close(fig)


def test_patching_whole_residual_gives_the_other_run(dec):
    family, model, ds = dec
    clean, corr = _runs(model, ds)
    noise = P.patching_sweep(model, ds, "resid_post", ("layer",), progress=False)
    assert abs(float(noise.values[-1]) - corr) < ATOL
    heads = P.patch_heads(model, ds)
    assert heads.values.shape == (model.cfg.n_layers, model.cfg.n_heads)


# ------------------------------------------------------------------------------ readouts

def test_logit_lens_final_point_is_the_logits(dec):
    family, model, ds = dec
    with torch.no_grad():
        logits = model(ds.clean_tokens)[:, -1]
    r = logit_lens(model, ds.clean_tokens, -1, None)
    torch.testing.assert_close(r.logits[-1], logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("per_head", [True, False])
def test_dla_sums_to_the_logits(dec, per_head):
    family, model, ds = dec
    with torch.no_grad():
        logits = model(ds.clean_tokens)[:, -1, [A, B]]
    d = direct_logit_attribution(model, ds.clean_tokens, -1, [A, B], per_head=per_head)
    assert "pos_embed" not in d.labels  # rotary: no position embedding in the residual stream
    torch.testing.assert_close(d.values.sum(0), logits, atol=ATOL, rtol=0)
    diff = logit_diff_attribution(d, [A], [B])
    torch.testing.assert_close(diff.sum(0), logits[:, 0] - logits[:, 1], atol=ATOL, rtol=0)
    if per_head:  # the dataset-level variants run too (a logit-difference task dataset)
        import dataclasses

        from tutorial_utils.dla import direct_path_removal, task_metric_attribution

        n = len(ds)
        ld = dataclasses.replace(ds, metric_kind="logit_diff",
                                 candidate_ids=torch.tensor([[A, B]] * n),
                                 candidate_sign=torch.tensor([[1.0, -1.0]] * n),
                                 answer_pos=torch.full((n,), ds.clean_tokens.shape[1] - 1))
        for fn in (direct_path_removal, task_metric_attribution):
            r = fn(model, ld)
            assert "pos_embed" not in r.labels and torch.isfinite(r.values).all()


def test_integrated_gradients_completeness(dec):
    """Completeness with a token baseline (``<unk>``). The zero baseline is refused on a rotary
    model: with no position embedding, a baseline token's residual stream is exactly 0, where
    the norm is singular (measured: completeness errors of 0.2 on Pythia and over 10^6 on
    Llama/Gemma with 256 steps)."""
    family, model, ds = dec
    target = logit_target(A)
    toks = ds.clean_tokens[:2]
    with pytest.raises(TutorialError, match="baseline='zero' is not defined"):
        integrated_gradients(model, toks, target)
    ig = integrated_gradients(model, toks, target, baseline=1, n_steps=256)
    comp = ig_completeness(model, toks, target, ig, baseline=1)
    assert float(comp.delta.abs().min()) > 1e-2
    assert float(comp.relative_error.max()) < 0.02, comp.relative_error


def test_probing_and_other_input_attributions_run(dec):
    """Probing reads the residual stream (``[n_layers + 1, B, d_model]``); occlusion of a
    token equals re-running with that token replaced; saliency and gradient x input run."""
    from tutorial_utils import input_attribution as IA
    from tutorial_utils import probing as PR

    family, model, ds = dec
    toks = ds.clean_tokens
    X = PR.residual_stream(model, toks, -1)
    assert X.shape == (model.cfg.n_layers + 1, len(toks), model.cfg.d_model)
    target = logit_target(A)
    occ = IA.occlusion(model, toks, target, replacement=1, positions=[2])
    swapped = toks.clone()
    swapped[:, 2] = 1
    with torch.no_grad():
        want = model(toks)[:, -1, A] - model(swapped)[:, -1, A]
    torch.testing.assert_close(occ[:, 2], want, atol=ATOL, rtol=0)
    for fn in (IA.saliency, IA.gradient_x_input):
        assert torch.isfinite(fn(model, toks, target)).all()


def test_composition_uses_the_shared_key_value_head(dec):
    """The OV circuit of query head h reads key/value head h // (H/G): the value a head moves,
    ``v[kv(h)] @ W_O[h]``, is the normalised residual times ``ov_matrix`` (plus the value
    bias), as the model computes it."""
    family, model, ds = dec
    H, G, _ = SHAPE[family]
    _, cache = model.run_with_cache(ds.clean_tokens[:1])
    L = model.cfg.n_layers
    x = cache[f"blocks.{L - 1}.ln1.hook_normalized"][0]  # [T, d]
    v = cache[hook_name("v", L - 1)][0]  # [T, G, dh]
    assert v.shape[1] == G
    for h in range(H):
        kv = kv_head(h, model.cfg.n_heads, n_kv_heads(model.cfg))
        moved = v[:, kv] @ model.W_O[L - 1, h]
        bias = model.b_V[L - 1, kv] @ model.W_O[L - 1, h] if getattr(model, "b_V", None) is not None \
            else 0
        torch.testing.assert_close(x @ C.ov_matrix(model, L - 1, h) + bias, moved, atol=ATOL,
                                   rtol=0)
    for kind in ("q", "k", "v"):
        s = C.composition_scores(model, kind)[0, :, L - 1, :]  # layer 0 -> the last layer
        assert L == 1 or (torch.isfinite(s).all() and (s >= 0).all())
    assert torch.isfinite(C.copying_scores(model, list(range(2, 20)))).all()
    # the induction path patching runs (its k/v variants use the shared receivers under GQA)
    if L < 2:
        return
    eff = C.induction_composition_patching(model, seq_len=8, batch=4).effects
    assert set(eff) == {"q", "k", "v"} and all(v == v for v in eff.values())


# ------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_post_norm_and_soft_capped_models_refuse_what_is_undefined(family, tmp_path):
    """Gemma 2/3 normalise each attention/MLP output before adding it to the residual stream,
    so heads are not additive: the edge graph and DLA refuse (measured before the refusal:
    node != its out-edges, EAP != its derivative, DLA != logits). Gemma 2 also soft-caps its
    logits: the logit lens refuses there, and runs on Gemma 3. Activation patching runs."""
    from tutorial_utils.models import load_model

    _save_decoder(family, tmp_path)
    model = load_model(str(tmp_path), device="cpu", hooks=True, verbose=False)
    clean = torch.tensor([[0, 5, 9, 13, 22, 30]] * 2)
    corr = clean.clone()
    corr[:, 2] = 17
    ds = TaskDataset.from_tokens(clean, corr, _per_example)
    with pytest.raises(TutorialError, match="post-norms"):
        Graph.from_model(model)
    with pytest.raises(TutorialError, match="post-norms|soft-caps"):
        direct_logit_attribution(model, clean, -1, [A, B])
    if family == "gemma2":
        with pytest.raises(TutorialError, match="soft-caps its logits"):
            logit_lens(model, clean, -1, None)
    else:
        with torch.no_grad():
            logits = model(clean)[:, -1]
        torch.testing.assert_close(logit_lens(model, clean, -1, None).logits[-1], logits,
                                   atol=ATOL, rtol=0)
    res = P.patching_sweep(model, ds, "resid_pre", ("layer",), progress=False)
    with torch.no_grad():
        m_corr = float(_metric(model(corr), ds)[0])
    assert abs(float(res.values[0]) - m_corr) < ATOL  # the whole input patched = corrupted



def test_context_mixing_refuses_rotary_decoders(dec):
    family, model, ds = dec
    with pytest.raises(TutorialError, match="context-mixing"):
        cm.value_zeroing(model, ds.clean_tokens[0])
    with pytest.raises(TutorialError, match="context-mixing.*rotary positions, RMSNorm"):
        cm.alti(model, ds.clean_tokens[0])


# ------------------------------------------------------------------------------ encoders

def _save_encoder(family: str, path) -> None:
    import transformers as T

    from tutorial_utils.course.offline_model.train_mlm import make_mlm_tokenizer, mlm_vocab

    torch.manual_seed(0)
    vocab = mlm_vocab()
    if family == "roberta":
        cfg = T.RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64,
                              max_position_embeddings=40, pad_token_id=0,
                              initializer_range=0.3, attn_implementation="eager")
        hf = T.RobertaForMaskedLM(cfg)
    else:
        cfg = T.DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2,
                                 hidden_dim=64, max_position_embeddings=40, pad_token_id=0,
                                 initializer_range=0.3, attn_implementation="eager")
        hf = T.DistilBertForMaskedLM(cfg)
    hf.eval().save_pretrained(path)
    make_mlm_tokenizer(vocab).save_pretrained(path)


def test_distilbert_is_refused_clearly(tmp_path):
    """TransformerLens 4's bridge has no DistilBERT adapter: loading refuses with a
    TutorialError naming the architecture (not the bridge's list of 150 class names)."""
    from tutorial_utils.models import load_encoder

    _save_encoder("distilbert", tmp_path)
    with pytest.raises(TutorialError, match="no adapter for this architecture.*DistilBert"):
        load_encoder(str(tmp_path), device="cpu", verbose=False)


@pytest.fixture(scope="module", params=["roberta"])
def enc(request, tmp_path_factory):
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp(request.param)
    _save_encoder(request.param, path)
    model = load_encoder(str(path), device="cpu", verbose=False)
    toks = torch.tensor([[2, 40, 300, 250, 77, 4, 160, 3]])
    return request.param, model, toks


def test_encoder_context_mixing(enc):
    family, model, toks = enc
    L = model.cfg.n_layers
    for layer in range(L):  # the decomposition reconstructs the attention block's output
        dec_ = cm.decompose_attention_block(model, toks, layer)
        torch.testing.assert_close(dec_.per_source.sum(2) + dec_.bias, dec_.output, atol=ATOL,
                                   rtol=0)
    out = cm.value_zeroed_outputs(model, toks, [(0, l, -1) for l in range(L)])
    hf = cm.original_hf_model(model)
    with torch.no_grad():
        hs = hf(input_ids=toks, output_hidden_states=True).hidden_states
    for l in range(L):  # Value Zeroing with nothing zeroed = the layer's output
        torch.testing.assert_close(out[l], hs[l + 1][0], atol=1e-5, rtol=0)
    for name in cm.methods_for(model):
        m = cm.compute_mixing(model, toks[0], name)
        torch.testing.assert_close(m.sum(-1), torch.ones(L, toks.shape[1]), atol=1e-5, rtol=0)


def test_encoder_refuses_decoder_methods(enc):
    from tutorial_utils import probing as PR

    family, model, toks = enc
    assert PR.residual_stream(model, toks, 1).shape == (model.cfg.n_layers + 1, 1,
                                                         model.cfg.d_model)
    with pytest.raises((TutorialError, ValueError), match="decoder"):
        logit_lens(model, toks, -1, None)
    with pytest.raises((TutorialError, ValueError), match="decoder"):
        direct_logit_attribution(model, toks, -1, [5])


def test_encoder_integrated_gradients(enc):
    """IG completeness on a coordinate of the last layer's first-token representation."""
    family, model, toks = enc
    hook = hook_name("resid_post", model.cfg.n_layers - 1)

    def target(act):
        return act[:, 0, :8].sum(-1)

    ig = integrated_gradients(model, toks, target, n_steps=64, target_hook=hook,
                              keep_first_token=True)
    comp = ig_completeness(model, toks, target, ig, target_hook=hook)
    assert float(comp.delta.abs().min()) > 1e-2
    assert float(comp.relative_error.max()) < 0.02, comp.relative_error


# ------------------------------------------------------------------------------ scale path

def test_device_map_and_n_devices_reach_the_bridge(monkeypatch, tmp_path):
    """``load_model(..., device_map=..., n_devices=...)`` passes them to
    ``TransformerBridge.boot_transformers`` unchanged (boot mocked: no GPU here)."""
    from transformer_lens.model_bridge import TransformerBridge

    from tutorial_utils import models

    seen = {}

    class Stop(Exception):
        pass

    def fake_boot(source, **kwargs):
        seen.update(kwargs, source=source)
        raise Stop

    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(fake_boot))
    _save_decoder("llama", tmp_path)
    with pytest.raises(Stop):
        models.load_model(str(tmp_path), device_map="auto", max_memory={0: "10GiB"},
                          verbose=False)
    assert seen["device_map"] == "auto" and seen["max_memory"] == {0: "10GiB"}
    assert seen["device"] is None and "n_devices" not in seen
    seen.clear()
    with pytest.raises(Stop):
        models.load_encoder(str(tmp_path), n_devices=2, verbose=False)
    assert seen["n_devices"] == 2 and seen["device"] is None
    with pytest.raises(TutorialError, match="either device"):
        models.load_model(str(tmp_path), device="cpu", device_map="auto", verbose=False)
    with pytest.raises(TutorialError, match="n_devices"):
        models.load_model(str(tmp_path), n_devices=0, verbose=False)


def test_encoder_input_attribution_runs_the_real_model(enc):
    """On BERT-family bridges hook_embed is the embedding LayerNorm's output; input attribution
    must replace the word embedding (embed.hook_out) so that the model it runs is the real one."""
    from tutorial_utils.input_attribution import run_from_embeddings, token_embeddings

    family, model, toks = enc
    hook = hook_name("resid_post", model.cfg.n_layers - 1)
    with torch.no_grad():
        got = run_from_embeddings(model, toks, token_embeddings(model, toks), hook)
        _, cache = model.run_with_cache(toks, names_filter=hook)
    torch.testing.assert_close(got, cache[hook], atol=ATOL, rtol=0)
