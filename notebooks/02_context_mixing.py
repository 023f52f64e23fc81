# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Context mixing: attention, rollout, attention-norm, GlobEnc, ALTI, Value Zeroing, DecompX
#
# **Estimated time: 30 minutes** (attention maps 5 · the methods 10 · evaluation on agreement 5 ·
# all together 3 · exercises 7).
#
# A Transformer moves information between tokens only in its attention layers. *Context-mixing*
# methods ask, for every layer: **how much does token *i*'s representation draw on token *j*?**
# Each one returns a matrix `[layer, query i, source j]` whose rows sum to 1.
#
# **Learning objectives**
# - read attention maps, and explain three reasons why raw attention weights mislead
#   (value norms, the residual stream, LayerNorm);
# - derive, one term at a time, attention rollout, attention-norm (+ residual, + LayerNorm),
#   GlobEnc, ALTI, Value Zeroing and DecompX, and check the decompositions they rest on numerically;
# - evaluate the methods against each other on a task with a known cue (subject-verb agreement)
#   and against gradient attribution and occlusion from notebook 01;
# - implement rollout, the attention-norm decomposition, Value Zeroing for one token and the
#   cue-ranking score yourself.
#
# **Models.** Both architectures: an encoder (post-LN) and a decoder (pre-LN). The saved outputs come
# from the offline models that ship with the course: the encoder `tiny-bert-tasks`, a 4-layer,
# 4-head BERT-architecture *masked* language model trained in this repository on the course corpus
# (`data/models/tiny-bert-tasks/README.md`), and the decoder `tiny-gpt2-tasks`, the course's
# 4-layer GPT-2-architecture model; both run everywhere, Colab included. Online, set
# `ENCODER = "bert-base-uncased"` below and the environment variable `TUTORIAL_MODEL=gpt2` (a
# banner then reminds you that the text describes the shipped models); `load_encoder("minilm-l6")`
# also works offline but has no trained masked-LM head, so its `[MASK]` predictions mean nothing.
#
# **Original weights.** `enable_compatibility_mode()` folds the value bias $b_V$ into the output
# bias and centres $W_O$: the model's outputs do not change, but the per-token pieces the papers
# define do. Every method here therefore reads the model's original Hugging Face weights
# (`cm.original_hf_model`); section 2.3 shows the difference.

# %%
# Setup: on Google Colab, install the course (all pins come from its pyproject.toml).
# Anywhere else this cell does nothing: install with `pip install -e .` from the repository.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run(["git", "clone", "--depth", "1", "https://github.com/interp-course/transformer-interp-course", "/content/course"], check=False)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course"], check=True)
    sys.path.insert(0, "/content/course")

from importlib.metadata import version

print("tutorial_utils", version("tutorial_utils"))

# %%
import sys

import matplotlib.pyplot as plt
import torch

from tutorial_utils import context_mixing as cm
from tutorial_utils import plotting
from tutorial_utils.checks import report
from tutorial_utils.context_mixing.evaluation import all_methods, evaluate_on_cue, sva_cue_examples
from tutorial_utils.exercise_checks import nb02
from tutorial_utils.models import load_course_model, load_encoder, seed_everything

seed_everything(0)
torch.set_grad_enabled(False)  # the attribution functions switch gradients on where they need them

# %%
# NBVAL_IGNORE_OUTPUT  (load messages and timings)
ENCODER = "tiny-bert-tasks"  # online: "bert-base-uncased"
encoder = load_encoder(ENCODER)
decoder = load_course_model("tiny-gpt2-tasks")

# %%
# NBVAL_CHECK_OUTPUT
for name, m in (("encoder", encoder), ("decoder", decoder)):
    c = m.cfg
    print(f"{name}: {m.tutorial_model_name}, {c.n_layers} layers x {c.n_heads} heads, "
          f"d_model {c.d_model}, block layout {cm.layout(m)}")

# %% [markdown]
# ## 1. Attention maps, and why they mislead (5 min)
#
# One sentence per model, both about agreement: the verb must agree with *keys*, not with the
# nearer *cabinet* (the **attractor**). The encoder sees a `[MASK]` where the verb goes; the
# decoder stops where it must predict the verb.

# %%
# NBVAL_CHECK_OUTPUT
enc_text, dec_text = "The keys on the cabinet [MASK] red.", "The keys on the cabinet"
enc_tokens, dec_tokens = encoder.to_tokens(enc_text), decoder.to_tokens(dec_text)
enc_str, dec_str = encoder.to_str_tokens(enc_text), decoder.to_str_tokens(dec_text)
print("encoder:", enc_str)
print("decoder:", dec_str)

# %% [markdown]
# An interactive view of every head of one encoder layer (hover over a token). It needs
# JavaScript; the static grid below it shows the same numbers on GitHub and in PDFs.

# %%
# NBVAL_IGNORE_OUTPUT  (interactive HTML view; the static figure below carries the numbers)
import circuitsvis as cv

enc_att_heads = cm.raw_attention(encoder, enc_tokens[0], per_head=True)  # [L, H, T, T]
cv.attention.attention_patterns(tokens=enc_str, attention=enc_att_heads[2])

# %%
show_layers = [0, encoder.cfg.n_layers // 2, encoder.cfg.n_layers - 1]
plotting.attention_grid(enc_att_heads[show_layers], enc_str,
                        f"Encoder attention, layers {show_layers} (rows: query, columns: key)",
                        layer_labels=[f"L{l}" for l in show_layers]);

# %% [markdown]
# Three reasons the weights $\alpha^h_{ij}$ alone do not say how much $j$ contributes to $i$:
#
# 1. **Value norms.** Head $h$ adds $\sum_j \alpha^h_{ij} f_h(x_j)$ with $f_h(x) = (x W_V^h + b_V^h) W_O^h$.
#    A large weight on a token whose $f_h(x_j)$ is tiny moves almost nothing. BERT's heads park
#    weight on `[CLS]`, `[SEP]` and punctuation whose transformed vectors are small
#    (Kobayashi et al. 2020).
# 2. **The residual stream.** The block outputs $x_i + \text{Attn}(x)_i$: token $i$ keeps its own
#    vector, often much larger than what attention adds.
# 3. **LayerNorm** rescales and re-centres the sum, changing every term's share.
#
# The next cell measures the first two on our sentences.

# %%
# NBVAL_CHECK_OUTPUT
att = cm.raw_attention(encoder, enc_tokens[0])           # [L, T, T]
nrm = cm.attention_norm(encoder, enc_tokens[0], "attn")  # [L, T, T], ||sum_h alpha f(x)||
special = [0, len(enc_str) - 1]                           # [CLS] and [SEP]
print("share of each row going to [CLS]/[SEP]: attention weight vs attention-norm")
for l in range(encoder.cfg.n_layers):
    print(f"  L{l}: weight {att[l][:, special].sum(-1).mean():.2f}   norm {nrm[l][:, special].sum(-1).mean():.2f}")
print("||x_i|| / ||attention output_i|| (residual vs what attention adds), mean over tokens")
for name, m, toks in (("encoder", encoder, enc_tokens), ("decoder", decoder, dec_tokens)):
    ratios = []
    for it in cm.collect_internals(m, toks):
        attn_out = torch.einsum("bhij,bjhk,hkd->bid", it.pattern, it.values, it.W_O) + it.b_O
        ratios.append((it.resid_pre.norm(dim=-1) / attn_out.norm(dim=-1)).mean())
    print(f"  {name}: " + "  ".join(f"L{l} {r:.1f}" for l, r in enumerate(ratios)))


# %% [markdown]
# In every layer of the encoder, attention-norm gives `[CLS]` and `[SEP]` a smaller share
# (0.12 to 0.19) than the raw weights do (0.17 to 0.24), and each token's own vector is 2.7 to 3.4
# times as large as what attention adds to it. The decoder's layer 0 is the exception (0.6): there
# attention adds more than the token brings.

# %% [markdown]
# ## 2. The methods, one term at a time (10 min)
#
# All methods below return `[layer, query, source]` with rows summing to 1; the figures show the
# last layer (for the *rolled-out* methods, that aggregates the whole model). Left: encoder,
# right: decoder (causal, so its upper triangle is empty).

# %%
def show_pair(method, title):
    """Last layer of `method` for both sentences, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (name, m, toks, strs) in zip(axes, (("encoder", encoder, enc_tokens, enc_str),
                                                 ("decoder", decoder, dec_tokens, dec_str))):
        try:
            mat = cm.compute_mixing(m, toks[0], method)[-1]
        except ValueError as err:
            ax.text(0.5, 0.5, "not defined for this model:\n" + str(err)[:70] + "...",
                    ha="center", va="center", wrap=True, fontsize=8)
            ax.set_title(f"{name}: {method}")
            ax.axis("off")
            continue
        plotting.heatmap(mat, f"{name}: {title}", "source token j", "query token i", strs, strs,
                         cbar_label="share of row i", cmap="Blues", ax=ax)
    return fig


# %% [markdown]
# ### 2.1 Raw attention, head-averaged
# $A_{ij} = \frac{1}{H}\sum_h \alpha^h_{ij}$ — the usual starting point.

# %%
show_pair("attention", "attention (last layer)");

# %% [markdown]
# ### 2.2 Attention rollout (Abnar & Zuidema 2020)
# Attention in layer $l$ mixes *layer-$l$ representations*, which are already mixtures. Rollout
# multiplies the layers, $R_l = \tilde A_l R_{l-1}$, with $\tilde A_l = 0.5 A_l + 0.5 I$ to
# account for the residual (or $\tilde A_l = A_l$ without it). Rows stay stochastic.

# %%
# NBVAL_CHECK_OUTPUT
for name, m, toks in (("encoder", encoder, enc_tokens), ("decoder", decoder, dec_tokens)):
    for residual in (True, False):
        r = cm.attention_rollout(m, toks[0], residual=residual)
        print(f"{name}, residual={residual}: rows sum to 1: {bool(((r.sum(-1) - 1).abs() < 1e-5).all())}")

# %%
show_pair("rollout", "rollout with residual (0.5 A + 0.5 I)");

# %%
show_pair("rollout_no_res", "rollout without residual");

# %% [markdown]
# ### 2.3 Attention-norm (Kobayashi et al. 2020, 2021)
# Split the attention block's output by source:
# $\text{Attn}(x)_i = \sum_j \underbrace{\sum_h \alpha^h_{ij} f_h(x_j)}_{z_{ij}} + b_O$.
# Attention-norm scores $\lVert z_{ij} \rVert$. Adding the residual (**RES1**) scores
# $\lVert z_{ij} + [i=j]\,x_i \rVert$. In a post-LN encoder the block output is
# $\text{LN}(\sum_j (z_{ij} + [i=j] x_i) + b_O)$; at the observed scale $\sigma_i$ LayerNorm is
# linear, $g_i(u) = \gamma \odot (u - \bar u)/\sigma_i$, so **RES1+LN1** scores
# $\lVert g_i(z_{ij} + [i=j]x_i)\rVert$. In a pre-LN decoder LN1 sits *before* attention,
# inside $f$, and RES1+LN1 is not defined: the function says so.
#
# The decomposition is exact: the pieces plus the bias rebuild the block's real output
# ($\text{LN}_1(x + \text{Attn}(x))$ for BERT, $x + \text{Attn}(\text{LN}_1(x))$ for GPT-2).
#
# The pieces must use the **original** weights. In compatibility mode the bridge's `attn.b_V` is 0
# (folded into `b_O`) and `W_O` is centred; the sum still rebuilds the output, but each token's
# piece loses $\alpha_{ij} b_V W_O$, which moves into the bias. The cell below shows both. The
# biases of the two course models are small, so the shift is small here; on MiniLM-L6 leaving
# $b_V$ out moved attention-norm by up to 0.07 against the reference implementation (issue 11),
# which is why the tests compare every method with the paper's formula on the raw weights.

# %%
# NBVAL_CHECK_OUTPUT
for name, m, toks in (("encoder", encoder, enc_tokens), ("decoder", decoder, dec_tokens)):
    errs = []
    for layer in range(m.cfg.n_layers):
        dec = cm.decompose_attention_block(m, toks, layer)
        errs.append(float((dec.per_source.sum(2) + dec.bias - dec.output).abs().max()))
    print(f"{name}: sum_j T_i(x_j) + bias == real attention-block output in every layer "
          f"(max error < 1e-4): {max(errs) < 1e-4}")
for name, m, toks in (("encoder", encoder, enc_tokens), ("decoder", decoder, dec_tokens)):
    it = cm.collect_internals(m, toks)[0]
    folded = m.blocks[0].attn.b_V.abs().max().item()
    print(f"{name} layer 0: max |b_V|, original weights {it.weights.b_V.abs().max():.3f}, "
          f"compatibility mode {folded:.3f}")
    # attention-norm with the value bias left out, as compatibility mode's hook_v would give it
    no_bv = torch.einsum("bhij,bjhk,hkd->bijd", it.pattern, it.values - it.weights.b_V, it.W_O)
    with_bv = torch.einsum("bhij,bjhk,hkd->bijd", it.pattern, it.values, it.W_O)
    diff = (cm.row_normalize(no_bv.norm(dim=-1)) - cm.row_normalize(with_bv.norm(dim=-1))).abs().max()
    print(f"  attention-norm of layer 0 moves by up to {diff:.3f} when b_V is left out")
try:
    cm.attention_norm(decoder, dec_tokens, "res_ln")
except ValueError as err:
    print("decoder, RES1+LN1 ->", str(err)[:95], "...")

# %%
show_pair("attention_norm", "attention-norm ||sum_h alpha f(x)||");

# %%
show_pair("attention_norm_res", "attention-norm + residual (RES1)");

# %%
show_pair("attention_norm_res_ln", "attention-norm + residual + LN1 (RES1+LN1)");

# %% [markdown]
# ### 2.4 GlobEnc (Modarressi et al. 2022)
# Take in the whole encoder layer except the (non-linear) FFN: also linearise LN2 at its observed
# scale, $N_{ij} = \lVert g^{(2)}_i(g^{(1)}_i(z_{ij} + [i=j]x_i)) \rVert$, row-normalise, and roll
# out across layers *without* adding the identity (the residual is already inside $N$). For the
# pre-LN decoder no LayerNorm follows the residual, so our adaptation rolls out RES1.

# %%
show_pair("globenc", "GlobEnc (rolled out)");

# %% [markdown]
# ### 2.5 ALTI (Ferrando et al. 2022)
# Norms can overrate a piece that points *away* from the output. ALTI scores each piece
# $T_i(x_j)$ (the same exact decomposition: heads, $W_O$, residual, LN1 linearised) by its
# **proximity** to the output $y_i$:
# $c_{ij} \propto \max(0,\ \lVert y_i\rVert_1 - \lVert y_i - T_i(x_j)\rVert_1)$, row-normalised, then
# rolled out: $R_l = C_l R_{l-1}$.

# %%
show_pair("alti", "ALTI (rolled out)");

# %% [markdown]
# ### 2.6 Value Zeroing (Mohebbi et al. 2023)
# A *perturbation* method: zero token $j$'s value vectors in every head of layer $l$, keep the
# attention weights, recompute the layer (attention, residual, LayerNorms **and the FFN**), and
# score $VZ_{ij} = 1 - \cos(\tilde x_i^{\neg j}, \tilde x_i)$, row-normalised. The whole value
# vector is zeroed, $v^h_j = x_j W_V^h + b_V^h \to 0$, bias included. Every zeroing starts from the
# clean input of layer $l$ (earlier layers do not depend on it), and the $T$ zeroings of a layer
# run batched (`benchmarks/bench_value_zeroing.py` compares it with a per-token loop over the
# Hugging Face layer). Zeroing *nothing* must give back the original model's layer outputs:

# %%
# NBVAL_CHECK_OUTPUT
for name, m, toks in (("encoder", encoder, enc_tokens), ("decoder", decoder, dec_tokens)):
    L = m.cfg.n_layers
    outs = cm.value_zeroed_outputs(m, toks, [(0, l, -1) for l in range(L)])
    hf = cm.original_hf_model(m)  # the unfolded Hugging Face model
    hidden = hf(input_ids=toks, output_hidden_states=True).hidden_states
    last = (lambda x: x) if cm.layout(m) == "post_ln" else hf.ln_f  # GPT-2 applies ln_f at the end
    err = max(float(((last(outs[l]) if l == L - 1 else outs[l]) - hidden[l + 1][0]).abs().max())
              for l in range(L))
    print(f"{name}: nothing zeroed reproduces every layer's output (max error < 1e-5): {err < 1e-5}")

# %%
show_pair("value_zeroing", "Value Zeroing (last layer)");

# %%
show_pair("value_zeroing_rollout", "Value Zeroing, rolled out");

# %% [markdown]
# ### 2.7 DecompX (Modarressi et al. 2023)
# Instead of scoring each layer and multiplying the scores, DecompX keeps every hidden state as a
# **sum of vectors, one per input token**, $x^l_i = \sum_k a^l_{i\leftarrow k}$, and carries that
# sum through the whole encoder: through attention (linear in the values), through both LayerNorms
# (each vector loses its own mean, the scale $\sigma_i$ is shared), and through the FFN, whose
# activation is linearised per token and neuron through the origin,
# $\text{GELU}(u) \approx \theta u$ with $\theta = \text{GELU}(u)/u$ at the real pre-activation.
# Every bias is shared among the sources in proportion to $|a_{i\leftarrow k} \cdot b|$. Each step
# is exact for the sum, so the vectors add up to the real hidden state after every layer; the map
# is $\lVert a^l_{i\leftarrow k}\rVert$, row-normalised. It is defined here for post-LN encoders
# only.

# %%
# NBVAL_CHECK_OUTPUT
res = cm.decompx_decomposition(encoder, enc_tokens)
hidden = cm.original_hf_model(encoder)(input_ids=enc_tokens, output_hidden_states=True).hidden_states
err = max(float((a.sum(2) - hidden[l + 1]).abs().max()) for l, a in enumerate(res.per_token))
print(f"encoder: sum_k a_(i<-k) == hidden state after every layer (max error < 1e-4): {err < 1e-4}")

# %%
show_pair("decompx", "DecompX (propagated through all layers)");

# %% [markdown]
# ## 3. Which method finds the cue? Subject-verb agreement (5 min)
#
# Agreement has a known cue: the verb's number comes from the **subject**, not the **attractor**.
# For each prompt we look at the query row of the verb position (encoder: the `[MASK]` in
# "The keys on the cabinet [MASK] red."; decoder: the last position of "The keys that the man saw",
# where the main verb is predicted) and ask whether the method gives the subject more than the
# attractor. (In the decoder's canonical frame "The keys on the cabinet" the next-token position
# *is* the attractor token, so every method with a residual term credits the attractor with the
# token's own state; `sva_cue_examples(decoder, decoder_frames="canonical")` shows it.)
# We also rank-correlate each method's row with |gradient × input| and
# |occlusion| (notebook 01, `tutorial_utils.attribution`) explaining each model's agreement metric:
# the probability of the agreeing verb forms minus the disagreeing ones, at the decoder's next
# token and at the encoder's `[MASK]` (the masked LM predicts the verb there). Each method is read
# at its last layer.

# %%
# NBVAL_CHECK_OUTPUT
N = {"encoder": 48, "decoder": 48}
examples = {"encoder": sva_cue_examples(encoder, n=N["encoder"], seed=0),
            "decoder": sva_cue_examples(decoder, n=N["decoder"], seed=0)}
for name, ex in examples.items():
    print(f"{name}: {len(ex)} prompts, e.g. {ex.prompts[0]!r}; words skipped (not one token): {ex.skipped}")
ds = examples["decoder"].dataset
acc = float((ds.metric(decoder(ds.clean_tokens), per_example=True) > 0).float().mean())
print(f"the decoder puts more probability on the agreeing verb forms in {acc:.2f} of the prompts")
from tutorial_utils.context_mixing.evaluation import cue_target

ex = examples["encoder"]
enc_metric = cue_target(encoder, ex)[0](encoder(ex.tokens))
print(f"the encoder puts more probability on the agreeing verb forms at [MASK] in "
      f"{float((enc_metric > 0).float().mean()):.2f} of the prompts")

# %%
# NBVAL_IGNORE_OUTPUT  (progress only; the table below carries the numbers)
evals = {}
for name, m in (("encoder", encoder), ("decoder", decoder)):
    print(f"scoring every method on the {name} ...")
    evals[name] = evaluate_on_cue(m, examples[name])

# %%
# NBVAL_CHECK_OUTPUT
methods = evals["encoder"].methods
print(f"{'method':<24}|{'encoder: subj>attr':>19}{'rho GxI':>9}{'rho occl':>9} |"
      f"{'decoder: subj>attr':>19}{'rho GxI':>9}{'rho occl':>9}")
for meth in methods:
    cells = []
    for name in ("encoder", "decoder"):
        e = evals[name]
        if meth in e.share:
            cells.append(f"{e.share[meth]:>19.2f}{e.rho_grad[meth]:>9.2f}{e.rho_occ[meth]:>9.2f}")
        else:
            cells.append(f"{'n/a (pre-LN)':>37}")
    print(f"{meth:<24}|" + " |".join(cells))

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=False)
x = torch.arange(len(methods)).float()
for ax, (key, label) in zip(axes, (("share", "share of prompts, subject > attractor"),
                                   ("rho_grad", "Spearman with |gradient x input|"),
                                   ("rho_occ", "Spearman with |occlusion|"))):
    for k, (name, colour) in enumerate((("encoder", "tab:blue"), ("decoder", "tab:orange"))):
        vals = [getattr(evals[name], key).get(meth, float("nan")) for meth in methods]
        ax.bar(x + 0.4 * k - 0.2, vals, width=0.4, color=colour, label=name)
    ax.set_xticks(x.tolist())
    ax.set_xticklabels(methods, rotation=60, ha="right", fontsize=8)
    ax.axhline(0.5 if key == "share" else 0, color="black", linewidth=0.6)
    ax.set_title(label)
    ax.set_ylabel(label.split(",")[0])
    ax.set_xlabel("method (last layer)")
axes[0].legend()
fig.suptitle("Context-mixing methods on subject-verb agreement (verb position's row)")
fig.tight_layout();


# %% [markdown]
# **Reading the table.** A share near 1 means the method's verb row puts the subject above the
# attractor in almost every prompt; 0.5 is a coin flip. Layer-local methods (attention,
# attention-norm, Value Zeroing) describe only the last layer's mixing, while aggregated ones
# (rollout, GlobEnc, ALTI, VZ rollout, DecompX) trace back to the input tokens, so the two groups
# answer different questions.
#
# - **Encoder.** The methods that carry the mixing back through every layer find the subject most
#   reliably: DecompX 1.00, rollout 0.98, GlobEnc 0.94; ALTI reaches 0.77, and Value Zeroing rolled
#   out prefers the *attractor* (0.19). The last layer on its own is weaker: attention 0.75, the
#   attention-norm variants and Value Zeroing 0.62.
# - **Decoder.** Almost every method ranks the subject first (0.85 to 1.00); ALTI is the exception
#   (0.21).
# - **Gradients and occlusion.** On the encoder no method's row ranks the tokens the way
#   gradient × input or occlusion does (every correlation lies between -0.32 and 0.15); on the
#   decoder the best is rollout against occlusion (0.63), then GlobEnc (0.42). A method can find
#   the cue and still order the other tokens differently from the model's sensitivity.
#
# Agreement with gradients and occlusion is only as good as those references are; notebook 01
# showed how much they disagree with each other. Ranking methods on one task with a few dozen
# prompts is a sanity check, not a verdict.
#
# ## 4. Putting it all together (3 min)
#
# Every method at every layer for one sentence. In Colab a selector picks the model and method;
# everywhere else (and on GitHub) the static grid below shows them all.

# %%
def layer_by_method(which):
    m, toks, strs = {"encoder": (encoder, enc_tokens, enc_str),
                     "decoder": (decoder, dec_tokens, dec_str)}[which]
    names = cm.methods_for(m)
    maps = {n: v[0] for n, v in all_methods(m, toks).items()}  # one shared forward pass
    L = m.cfg.n_layers
    fig, axes = plt.subplots(len(names), L, figsize=(1.9 * L + 1.5, 1.9 * len(names) + 0.8),
                             squeeze=False)
    for r, n in enumerate(names):
        for l in range(L):
            ax = axes[r, l]
            im = ax.imshow(maps[n][l], cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"layer {l}", fontsize=9)
            if r == len(names) - 1:
                ax.set_xlabel("source j", fontsize=8)
            if l == 0:
                ax.set_ylabel(n.replace("attention_norm", "att-norm").replace("value_zeroing", "VZ")
                              + "\nquery i", fontsize=7)
    height = 1.9 * len(names) + 0.8
    fig.subplots_adjust(top=1 - 0.7 / height, bottom=0.4 / height)
    fig.colorbar(im, ax=axes, shrink=0.6, label="share of row i")
    fig.suptitle(f"{which}: every method x every layer on {' '.join(strs)!r}", y=1 - 0.2 / height)
    return fig


def one_method(which, method):
    m, toks, strs = {"encoder": (encoder, enc_tokens, enc_str),
                     "decoder": (decoder, dec_tokens, dec_str)}[which]
    if method not in cm.methods_for(m):
        print(f"{method} is not defined for the {which} ({cm.layout(m)})")
        return
    mat = cm.compute_mixing(m, toks[0], method)
    fig, axes = plt.subplots(1, mat.shape[0], figsize=(3.2 * mat.shape[0], 3.4))
    for l, ax in enumerate(axes):
        plotting.heatmap(mat[l], f"L{l}", "source", "query" if l == 0 else "", strs, strs,
                         cmap="Blues", ax=ax)
    fig.suptitle(f"{which}: {method}")
    plt.show()


if "google.colab" in sys.modules:
    import ipywidgets as widgets

    widgets.interact(one_method, which=["encoder", "decoder"],
                     method=cm.methods_for(encoder))

# %%
layer_by_method("encoder");

# %%
layer_by_method("decoder");


# %% [markdown]
# ## 5. Exercises (7 min)
#
# **Exercise 5.1** (easy). Attention rollout: `per_layer` is `[L, T, T]` (rows sum to 1). With
# `add_residual`, first replace each layer by $0.5A + 0.5I$ (rows renormalised); return
# $R_l = \tilde A_l R_{l-1}$ stacked over layers.

# %%
def my_rollout(per_layer: torch.Tensor, add_residual: bool) -> torch.Tensor:
    ### HINT: `mats[l] @ out[-1]` multiplies layer l onto everything below it.
    ### BEGIN SOLUTION
    mats = per_layer
    if add_residual:
        mats = 0.5 * mats + 0.5 * torch.eye(mats.shape[-1])
        mats = mats / mats.sum(-1, keepdim=True)
    out = [mats[0]]
    for l in range(1, mats.shape[0]):
        out.append(mats[l] @ out[-1])
    return torch.stack(out)
    ### END SOLUTION


report(nb02.check_rollout(my_rollout))


# %% [markdown]
# **Exercise 5.2** (medium). The attention-norm decomposition for one layer: given the pattern
# `[H, T, T]`, the value vectors `[T, H, d_head]` (bias included) and `W_O [H, d_head, d_model]`,
# return $\lVert \sum_h \alpha^h_{ij}\, v^h_j W_O^h \rVert$ as `[T, T]` (not normalised).

# %%
def my_attention_norm(pattern: torch.Tensor, values: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    ### HINT: first f = einsum("jhk,hkd->hjd", values, W_O), the transformed value of each source in each head.
    ### BEGIN SOLUTION
    f = torch.einsum("jhk,hkd->hjd", values, W_O)
    z = torch.einsum("hij,hjd->ijd", pattern, f)
    return z.norm(dim=-1)
    ### END SOLUTION


report(nb02.check_attention_norm(my_attention_norm))


# %% [markdown]
# **Exercise 5.3** (medium). Value Zeroing for one token in the encoder, the way the paper does it:
# on the original Hugging Face model `hf = cm.original_hf_model(model)` (not the bridge, whose value
# bias is folded away), take the hidden state entering layer `layer`
# (`hf(input_ids=tokens, output_hidden_states=True).hidden_states[layer]`), run that one layer
# (`hf.encoder.layer[layer]`) once as it is and once with token `j`'s whole value vector set to
# zero (a forward hook on `hf.encoder.layer[layer].attention.self.value`, whose output is
# `[batch, pos, d_model]`, bias included), and return $1 - \cos$ between each token's new and
# original output, a `[T]` tensor.

# %%
def my_value_zeroing_one_token(model, tokens: torch.Tensor, layer: int, j: int) -> torch.Tensor:
    ### HINT: module.register_forward_hook(fn) with fn(module, inputs, output) returning a changed copy; call handle.remove() afterwards.
    ### BEGIN SOLUTION
    hf = cm.original_hf_model(model)
    x = hf(input_ids=tokens, output_hidden_states=True).hidden_states[layer]
    block = hf.encoder.layer[layer]
    original = block(x)[0]

    def zero_v(module, inputs, out):
        out = out.clone()
        out[:, j] = 0.0
        return out

    handle = block.attention.self.value.register_forward_hook(zero_v)
    try:
        zeroed = block(x)[0]
    finally:
        handle.remove()
    return 1 - torch.nn.functional.cosine_similarity(zeroed, original, dim=-1)
    ### END SOLUTION


report(nb02.check_value_zeroing_one_token(my_value_zeroing_one_token, encoder, enc_tokens))


# %% [markdown]
# **Exercise 5.4** (easy). The cue-ranking score: `maps [B, T, T]`, and per example the
# `query`, `cue` and `distractor` positions (`[B]` each). Return the share (a float) of examples
# where `maps[b, query[b], cue[b]] > maps[b, query[b], distractor[b]]`.

# %%
def my_cue_share(maps: torch.Tensor, query: torch.Tensor, cue: torch.Tensor,
                 distractor: torch.Tensor) -> float:
    ### BEGIN SOLUTION
    b = torch.arange(maps.shape[0])
    return float((maps[b, query, cue] > maps[b, query, distractor]).float().mean())
    ### END SOLUTION


report(nb02.check_cue_share(my_cue_share))

# %% [markdown]
# ## Summary
# - Raw attention ignores what is moved (value norms), what stays (the residual) and LayerNorm;
#   each method above adds one of these back, and the decompositions are exact (checked above).
# - Rollout-style aggregation answers a different question (input tokens, whole model) from the
#   layer-local maps; both views are in the grid.
# - Every decomposition reads the model's original weights: compatibility mode's folded value bias
#   and centred $W_O$ keep the sums exact but move $\alpha_{ij} b_V W_O$ out of each token's piece.
# - DecompX carries a per-input-token decomposition through attention, LayerNorm and the FFN, and
#   its vectors add up to the real hidden state after every layer.
# - On agreement, the methods that trace the encoder's `[MASK]` back through every layer (DecompX,
#   rollout, GlobEnc) found the subject most reliably, but no method ranked the tokens like
#   gradients or occlusion did; in the decoder's canonical frame the next-token position *is* the
#   attractor: read any such ranking together with how the question was posed.
#
# **Next:** notebook 03 turns from *where information flows* to *which components compute the
# answer*: activation patching and circuits.
