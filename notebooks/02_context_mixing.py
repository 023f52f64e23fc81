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
# **Estimated time: 29 minutes core + 55 minutes bonus.**
#
# A Transformer moves information between tokens only in its attention layers. *Context-mixing*
# methods ask, for every layer: **how much does token *i*'s representation draw on token *j*?**
# Each one returns a matrix `[layer, query i, source j]` whose rows sum to 1.
#
# **Learning objectives**
# - read attention maps, and explain three reasons why raw attention weights mislead
#   (value norms, the residual stream, LayerNorm);
# - implement attention rollout and the attention-norm decomposition (+ residual), checked
#   against known answers (bonus: ALTI's layer matrix, Value Zeroing for one token);
# - evaluate every method on a task with a known cue (subject-verb agreement).
#
# Labels: each exercise carries a difficulty (⭐ easy · ⭐⭐ medium · ⭐⭐⭐ hard) and an importance
# (🔵 optional · 🔵🔵 useful · 🔵🔵🔵 core), as in every notebook of the course.
#
# **Models.** An encoder (post-LN) and a decoder (pre-LN), both shipped with the course: the
# 4-layer BERT-architecture *masked* language model `tiny-bert-tasks` trained in this repository
# (`data/models/tiny-bert-tasks/README.md`), so its prediction at `[MASK]` means something, and
# the course's decoder `tiny-gpt2-tasks`. **Every number printed below comes from these two
# models**; the last section runs the same evaluation on BERT-base and GPT-2 small when online.
#
# **Weights.** Every method computes from the model's weights in memory, rewritten in the
# checkpoint's parameterisation, so edits and randomisation count; `cm.original_hf_model` is the
# checkpoint (bonus section 4).

# %%
# Setup: on Google Colab, install the course (all pins come from its pyproject.toml).
# Anywhere else this cell does nothing: install with `pip install -e .` from the repository.
import os
import sys

if "google.colab" in sys.modules:
    import subprocess

    repo = os.environ.get("TUTORIAL_REPO_URL", "https://github.com/interp-course/transformer-interp-course")
    course = os.environ.get("TUTORIAL_COURSE_DIR", "/content/course")
    if not os.path.isdir(os.path.join(course, ".git")):  # not cloned yet
        run = subprocess.run(["git", "clone", "--depth", "1", repo, course], capture_output=True, text=True,
                             env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))  # fail, never ask for a password
        if run.returncode != 0:
            raise RuntimeError(f"Could not clone the course from {repo}:\n{run.stderr.strip()}\n"
                               "Check that this runtime has internet access and that the address is right "
                               "(for another copy of the course, run `%env TUTORIAL_REPO_URL=<its git URL>`), "
                               "then run this cell again.")
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", course], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pip could not install the course from {course}:\n{run.stderr.strip()[-2000:]}\n"
                           "Restart the session (Runtime > Restart session) and run this cell again.")
    sys.path.insert(0, course)

from importlib.metadata import version

print("tutorial_utils", version("tutorial_utils"))

# %%
import sys
import warnings

import matplotlib.pyplot as plt
import torch

from tutorial_utils import context_mixing as cm
from tutorial_utils import plotting
from tutorial_utils.course.grading import report
from tutorial_utils.context_mixing.evaluation import (all_methods, cue_ranking, cue_target,
                                                      evaluate_on_cue, sva_cue_examples)
from tutorial_utils.course.checks import nb02
from tutorial_utils.models import load_course_model, load_encoder, seed_everything

seed_everything(0)
torch.set_grad_enabled(False);  # the attribution functions switch gradients on where they need them

# %%
# NBVAL_IGNORE_OUTPUT  (load messages and timings)
with warnings.catch_warnings():
    # The bridge cannot fold BERT's LayerNorm weights into the next layer and says so. The
    # methods here rewrite the weights in memory in the checkpoint's parameterisation (folds
    # undone), so the warning does not apply.
    warnings.filterwarnings("ignore", message=".*does not support fold_ln.*")
    encoder = load_encoder("tiny-bert-tasks")
decoder = load_course_model("tiny-gpt2-tasks")

# %%
# NBVAL_CHECK_OUTPUT
for name, m in (("encoder", encoder), ("decoder", decoder)):
    c = m.cfg
    print(f"{name}: {m.tutorial_model_name}, {c.n_layers} layers x {c.n_heads} heads, "
          f"d_model {c.d_model}, block layout {cm.layout(m)}")

# %% [markdown]
# ## 1. Attention maps, and why they mislead (7 min)
#
# One sentence per model: the verb must agree with *keys*, not the nearer *cabinet* (the
# **attractor**). The encoder sees a `[MASK]` where the verb goes; the decoder stops before it.

# %%
# NBVAL_CHECK_OUTPUT
enc_text, dec_text = "The keys on the cabinet [MASK] red.", "The keys on the cabinet"
enc_tokens, dec_tokens = encoder.to_tokens(enc_text), decoder.to_tokens(dec_text)
enc_str, dec_str = encoder.to_str_tokens(enc_text), decoder.to_str_tokens(dec_text)
MODELS = {"encoder": (encoder, enc_tokens, enc_str), "decoder": (decoder, dec_tokens, dec_str)}
print("encoder:", enc_str)
print("decoder:", dec_str)

# %% [markdown]
# An interactive view of every head of one encoder layer (hover over a token). It needs
# JavaScript; the static grid below it shows the first and last layers on GitHub and in PDFs.

# %%
# NBVAL_IGNORE_OUTPUT  (interactive HTML view; the static figure below carries the numbers)
import circuitsvis as cv

enc_att_heads = cm.raw_attention(encoder, enc_tokens[0], per_head=True)  # [L, H, T, T]
cv.attention.attention_patterns(tokens=enc_str, attention=enc_att_heads[2])

# %%
show_layers = [0, encoder.cfg.n_layers - 1]
plotting.attention_grid(enc_att_heads[show_layers], enc_str,
                        f"Encoder attention, every head of layers {show_layers} (rows: query i, "
                        "columns: key j)", layer_labels=[f"L{l}" for l in show_layers]);

# %% [markdown]
# In the last layer, three heads send the `[MASK]` row mostly to `red`, none to `keys`. Three
# reasons why the weights $\alpha^h_{ij}$ alone do not say how much $j$ contributes to $i$:
#
# 1. **Value norms.** Head $h$ adds $\sum_j \alpha^h_{ij} f_h(x_j)$ with $f_h(x) = (x W_V^h + b_V^h) W_O^h$.
#    A large weight on a tiny $f_h(x_j)$ moves almost nothing: BERT parks weight on `[CLS]`,
#    `[SEP]` and punctuation (Kobayashi et al. 2020).
# 2. **The residual stream.** The block outputs $x_i + \text{Attn}(x)_i$: token $i$ keeps its own
#    vector, often much larger than what attention adds.
# 3. **LayerNorm** rescales and re-centres the sum, changing every term's share.
#
# ### Bonus: the first two reasons, measured (3 min)
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
for name, (m, toks, _) in MODELS.items():
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
# ## 2. Rollout and attention-norm (15 min)
#
# Every method below returns `[layer, query, source]` with rows summing to 1. The figures show
# the last layer (for a *rolled-out* method that aggregates the whole model), encoder on the
# left, decoder on the right (causal, so its upper triangle is empty), **on one colour scale**
# from 0 to 1 for every method: the same blue means the same share in both panels and in every
# figure. In the decoder the first row is always 1 on
# `<|endoftext|>`: the first token can only read itself.

# %%
def show_pair(method: str):
    """Last layer of `method` for both sentences, on one colour scale (0 to 1, every method)."""
    mats = [cm.compute_mixing(m, toks[0], method)[-1] for m, toks, _ in MODELS.values()]
    name = plotting.mixing_method_name(method)
    which = "rolled out through every layer" if method in cm.AGGREGATED else "last layer"
    return plotting.heatmap_pair(mats[0], mats[1], ["encoder", "decoder"],
                                 [(s, s) for _, _, s in MODELS.values()], "source token j",
                                 "query token i", f"{name}: {which}", "share of row i", vmax=1.0)


# %% [markdown]
# ### 2.1 Raw attention, head-averaged
# $A_{ij} = \frac{1}{H}\sum_h \alpha^h_{ij}$, the usual starting point.

# %%
show_pair("attention");

# %% [markdown]
# ### 2.2 Attention rollout (Abnar & Zuidema 2020)
# Attention in layer $l$ mixes *layer-$l$ representations*, which are already mixtures. Rollout
# multiplies the layers, $R_0 = \tilde A_0$, $R_l = \tilde A_l R_{l-1}$, with
# $\tilde A_l = 0.5 A_l + 0.5 I$ to account for the residual (or $\tilde A_l = A_l$ without it,
# `rollout_no_res`). Rows stay stochastic.
#
# #### Exercise 2.1 · attention rollout ⭐ 🔵🔵🔵 · 3 min
# `per_layer` is `[L, T, T]` (rows sum to 1). With `add_residual`, first replace each layer by
# $0.5A + 0.5I$; return $R_l$ for every layer, stacked: `[L, T, T]`. The check feeds known
# answers first: identity attention must roll out to the identity, and two layers that do not
# commute reveal the multiplication order.

# %%
def my_rollout(per_layer: torch.Tensor, add_residual: bool) -> torch.Tensor:
    ### HINT: row i of R_l says how much token i after layer l draws on each input token; layer l reads the outputs of layer l-1, so R_l = A~_l @ R_{l-1}.
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


# %%
my_rollout = nb02.check_rollout(my_rollout)

# %%
show_pair("rollout");

# %% [markdown]
# ### 2.3 Attention-norm (Kobayashi et al. 2020, 2021)
# Split the attention block's output by source:
# $\text{Attn}(x)_i = \sum_j \underbrace{\sum_h \alpha^h_{ij} f_h(x_j)}_{z_{ij}} + b_O$.
# Attention-norm scores $\lVert z_{ij} \rVert$. Adding the residual (**RES1**) scores
# $\lVert z_{ij} + [i=j]\,x_i \rVert$. In the pre-LN decoder LN1 sits *before* attention,
# inside $f$; the post-LN encoder's LayerNorm after the residual is bonus section 4.
#
# The decomposition is exact: the pieces plus the bias rebuild the block's real output
# ($\text{LN}_1(x + \text{Attn}(x))$ for BERT, $x + \text{Attn}(\text{LN}_1(x))$ for GPT-2):

# %%
# NBVAL_CHECK_OUTPUT
for name, (m, toks, _) in MODELS.items():
    errs = []
    for layer in range(m.cfg.n_layers):
        dec = cm.decompose_attention_block(m, toks, layer)
        errs.append(float((dec.per_source.sum(2) + dec.bias - dec.output).abs().max()))
    print(f"{name}: sum_j T_i(x_j) + bias == real attention-block output in every layer "
          f"(max error < 1e-4): {max(errs) < 1e-4}")

# %% [markdown]
# #### Exercise 2.2 · attention-norm and RES1 for one layer ⭐⭐ 🔵🔵🔵 · 4 min
# Given one layer's pattern `[H, T, T]`, value vectors `[T, H, d_head]` (bias included) and
# `W_O [H, d_head, d_model]`, return $\lVert z_{ij} \rVert$ as `[T, T]` (not normalised). With
# `resid` (`[T, d_model]`, the block input $x$), return RES1, $\lVert z_{ij} + [i=j]\,x_i \rVert$.
# The check uses known answers (one head whose values all have the same norm must give back the
# attention weights, scaled; two heads that cancel must give 0), then compares your RES1,
# row-normalised, with `cm.attention_norm(..., "res")` on every layer of the encoder.

# %%
def my_attention_norm(pattern: torch.Tensor, values: torch.Tensor, W_O: torch.Tensor,
                      resid: torch.Tensor | None = None) -> torch.Tensor:
    ### HINT: first f = einsum("jhk,hkd->hjd", values, W_O), the transformed value of each source in each head; sum over heads *before* the norm.
    ### HINT: the residual is the query's own vector: it joins only the piece with j == i.
    ### BEGIN SOLUTION
    f = torch.einsum("jhk,hkd->hjd", values, W_O)      # f_h(x_j)
    z = torch.einsum("hij,hjd->ijd", pattern, f)       # z_ij, summed over heads
    if resid is not None:
        idx = torch.arange(z.shape[0])
        z = z.clone()
        z[idx, idx] += resid
    return z.norm(dim=-1)
    ### END SOLUTION


# %%
my_attention_norm = nb02.check_attention_norm(my_attention_norm, encoder, enc_tokens)

# %%
show_pair("attention_norm");

# %%
show_pair("attention_norm_res");

# %% [markdown]
# With the residual, every row's largest entry moves to the diagonal: what a token keeps of
# itself outweighs what attention brings in (the ratios of section 1).
#
# ## 3. Bonus: ALTI and Value Zeroing (9 min)
#
# ### 3.1 ALTI (Ferrando et al. 2022)
# Norms can overrate a piece that points *away* from the output. ALTI scores each piece
# $T_i(x_j)$ of the same exact decomposition (heads, $W_O$, residual; in the post-LN encoder also
# LN1 as a linear map at its observed scale) by its **proximity** to the block's output $y_i$:
# $c_{ij} \propto \max(0,\ \lVert y_i\rVert_1 - \lVert y_i - T_i(x_j)\rVert_1)$, row-normalised,
# then rolled out without adding the identity (the residual is already a piece):
# $R_l = C_l R_{l-1}$.
#
# #### Exercise 3.1 · ALTI's matrix for one layer ⭐⭐ 🔵🔵🔵 · 4 min
# `pieces [T, T, d]` holds $T_i(x_j)$ (query $i$, source $j$) and `output [T, d]` holds $y_i$,
# as `cm.decompose_attention_block(model, tokens, layer)` returns them (`.per_source[0]`,
# `.output[0]`). Return the row-normalised $c_{ij}$, `[T, T]`. The check then runs it on every
# layer of the encoder and compares with `cm.alti(..., rollout=False)`.

# %%
def my_alti_layer(pieces: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    ### HINT: broadcast y as output[:, None, :] against pieces; the L1 norm is .abs().sum(-1); a piece that moves y_i away from itself gets 0.
    ### BEGIN SOLUTION
    y = output[:, None, :]                               # [T, 1, d]
    distance = (y - pieces).abs().sum(-1)                # ||y_i - T_i(x_j)||_1, [T, T]
    c = (y.abs().sum(-1) - distance).clamp_min(0)        # proximity, clamped at 0
    return c / c.sum(-1, keepdim=True)
    ### END SOLUTION


# %%
my_alti_layer = nb02.check_alti_layer(my_alti_layer, encoder, enc_tokens)

# %%
show_pair("alti");

# %% [markdown]
# ### 3.2 Value Zeroing (Mohebbi et al. 2023)
# A *perturbation* method: zero token $j$'s value vectors in every head of layer $l$, keep the
# attention weights, recompute the layer (attention, residual, LayerNorms **and the FFN**), and
# score $VZ_{ij} = 1 - \cos(\tilde x_i^{\neg j}, \tilde x_i)$, row-normalised. The whole value
# vector is zeroed, $v^h_j = x_j W_V^h + b_V^h \to 0$, bias included. Every zeroing starts from the
# clean input of layer $l$ (earlier layers do not depend on it), and the $T$ zeroings of a layer
# run batched (`benchmarks/bench_value_zeroing.py` compares it with a per-token loop over the
# Hugging Face layer). Zeroing *nothing* must give back the original model's layer outputs:

# %%
# NBVAL_CHECK_OUTPUT
for name, (m, toks, _) in MODELS.items():
    L = m.cfg.n_layers
    outs = cm.value_zeroed_outputs(m, toks, [(0, l, -1) for l in range(L)])
    hf = cm.original_hf_model(m)  # the checkpoint, as Hugging Face runs it (nothing folded)
    hidden = hf(input_ids=toks, output_hidden_states=True).hidden_states
    last = (lambda x: x) if cm.layout(m) == "post_ln" else hf.ln_f  # GPT-2 applies ln_f at the end
    # relative to the largest |hidden state| (27 in the decoder): float rounding is relative
    err = max(float(((last(outs[l]) if l == L - 1 else outs[l]) - hidden[l + 1][0]).abs().max()
                    / hidden[l + 1].abs().max()) for l in range(L))
    print(f"{name}: nothing zeroed reproduces every layer's output (max error < 1e-4 of the "
          f"largest |value|): {err < 1e-4}")

# %%
show_pair("value_zeroing");

# %% [markdown]
# In the encoder's last layer Value Zeroing sends the `[MASK]` row almost entirely to `red`, and
# the `[MASK]`'s own entry is near 0: a token's own entry only measures what its own *value*
# vector adds through attention to itself, never its residual stream, which no zeroing touches.
# Section 5 shows what that does to Value Zeroing rolled out; bonus exercise 4.1 has you
# implement Value Zeroing yourself, the way the paper does, on one Hugging Face layer.

# %% [markdown]
# ## 4. Bonus: Value Zeroing by hand; LayerNorm, the FFN and the weights in memory (18 min)
#
# #### Exercise 4.1 · Value Zeroing for one token ⭐⭐⭐ 🔵🔵 · 8 min
# Do it the way the paper does, on one Hugging Face BERT layer: `layer` is e.g.
# `cm.original_hf_model(encoder).encoder.layer[2]` (the checkpoint's weights, not the bridge whose
# value bias is folded away) and `x [1, T, d]` the hidden state entering it
# (`hf(input_ids=tokens, output_hidden_states=True).hidden_states[2]`). Run the layer once as it
# is and once with token `j`'s whole value vector set to zero: a forward hook on
# `layer.attention.self.value` (a `Linear` whose output `[1, T, d_model]` holds all heads' value
# vectors, bias included) that returns a changed copy. Return $1 - \cos$ between each token's
# new and original output, a `[T]` tensor. `nb02.run_layer(layer, x)` runs the layer and returns
# its output `[1, T, d]`. The check starts with synthetic layers whose answer is known (a value
# vector that is already zero changes nothing) and ends on the real encoder.

# %%
def my_value_zeroing_one_token(layer, x: torch.Tensor, j: int) -> torch.Tensor:
    ### HINT: handle = module.register_forward_hook(fn), with fn(module, inputs, output) returning a changed copy of output; call handle.remove() afterwards (in a finally block).
    ### HINT: keep everything else as it was: the attention weights come from queries and keys, which you do not touch, and token j's own residual stream stays.
    ### BEGIN SOLUTION
    original = nb02.run_layer(layer, x)

    def zero_value_of_j(module, inputs, out):
        out = out.clone()
        out[:, j] = 0.0
        return out

    handle = layer.attention.self.value.register_forward_hook(zero_value_of_j)
    try:
        zeroed = nb02.run_layer(layer, x)
    finally:
        handle.remove()
    return 1 - torch.nn.functional.cosine_similarity(zeroed, original, dim=-1)[0]
    ### END SOLUTION


# %%
my_value_zeroing_one_token = nb02.check_value_zeroing_one_token(my_value_zeroing_one_token,
                                                                encoder, enc_tokens)

# %% [markdown]
# **RES1+LN1.** In the post-LN encoder the block output is
# $\text{LN}(\sum_j (z_{ij} + [i=j] x_i) + b_O)$; at the observed scale $\sigma_i$ LayerNorm is
# linear, $g_i(u) = \gamma \odot (u - \bar u)/\sigma_i$, so **RES1+LN1** (Kobayashi et al. 2021)
# scores $\lVert g_i(z_{ij} + [i=j]x_i)\rVert$. In the pre-LN decoder LN1 sits before attention,
# inside $f$, and RES1+LN1 is not defined: the function says so.
#
# **GlobEnc** (Modarressi et al. 2022) takes in the whole encoder layer except the (non-linear)
# FFN: it also linearises LN2 at its observed scale,
# $N_{ij} = \lVert g^{(2)}_i(g^{(1)}_i(z_{ij} + [i=j]x_i)) \rVert$, row-normalises, and rolls out
# across layers *without* adding the identity (the residual is already inside $N$). For the
# pre-LN decoder no LayerNorm follows the residual, so our adaptation rolls out RES1.
#
# **DecompX** (Modarressi et al. 2023) keeps every hidden state as a **sum of vectors, one per
# input token**, $x^l_i = \sum_k a^l_{i\leftarrow k}$, and carries that sum through the whole
# encoder: through attention (linear in the values), through both LayerNorms (each vector loses
# its own mean, the scale $\sigma_i$ is shared), and through the FFN, whose activation is
# linearised per token and neuron through the origin, $\text{GELU}(u) \approx \theta u$ with
# $\theta = \text{GELU}(u)/u$ at the real pre-activation. Every bias is shared among the sources
# in proportion to $|a_{i\leftarrow k} \cdot b|$. Each step is exact for the sum, so the vectors
# add up to the real hidden state after every layer; the map is $\lVert a^l_{i\leftarrow k}\rVert$,
# row-normalised. It is defined here for post-LN encoders only. (Carried on through the head
# to the prediction, it is DecompX's defining step: a bonus of section 5.)

# %%
# NBVAL_CHECK_OUTPUT
try:
    cm.attention_norm(decoder, dec_tokens, "res_ln")
except ValueError as err:
    print("decoder, RES1+LN1 ->", str(err)[:95], "...")
res = cm.decompx_decomposition(encoder, enc_tokens)
hidden = cm.original_hf_model(encoder)(input_ids=enc_tokens, output_hidden_states=True).hidden_states
err = max(float((a.sum(2) - hidden[l + 1]).abs().max() / hidden[l + 1].abs().max())
          for l, a in enumerate(res.per_token))  # relative, as float rounding is
print(f"encoder: DecompX's sum_k a_(i<-k) == hidden state after every layer (max error < 1e-4 of "
      f"the largest |value|): {err < 1e-4}")

# %%
show_pair("globenc");

# %% [markdown]
# RES1+LN1 and DecompX are not defined for the pre-LN decoder, so their figure shows the encoder
# only:

# %%
enc_only = ["attention_norm_res_ln", "decompx"]
plotting.attention_grid(
    torch.stack([cm.compute_mixing(encoder, enc_tokens[0], m)[-1] for m in enc_only])[None],
    enc_str, "Encoder only: RES1+LN1 (last layer) and DecompX (through every layer)",
    layer_labels=["encoder:"], head_labels=[plotting.mixing_method_name(m) for m in enc_only],
    cbar_label="share of row i", vmax=1.0, axis_labels=("query i", "source j"));

# %% [markdown]
# **Why the weights in memory, in the checkpoint's parameterisation.** In compatibility mode the
# bridge's `attn.b_V` is 0 (folded into `b_O`) and `W_O` is centred; the sum of the pieces still
# rebuilds the output, but each token's piece loses $\alpha_{ij} b_V W_O$, which moves into the
# bias. So every method takes the weights the bridge holds *now* and writes them back the way the
# checkpoint has them (value bias unfolded, LayerNorm folds undone): the same function, with the
# papers' pieces. The biases of the two course models are small, so the shift is small here; on a
# model with larger value biases it is not, which is why the tests compare every method with the
# paper's formula on the raw weights.

# %%
# NBVAL_CHECK_OUTPUT
for name, (m, toks, _) in MODELS.items():
    it = cm.collect_internals(m, toks)[0]
    folded = m.blocks[0].attn.b_V.abs().max().item()
    print(f"{name} layer 0: max |b_V|, as the methods use it (checkpoint's parameterisation) "
          f"{it.weights.b_V.abs().max():.3f}, in the bridge (compatibility mode) {folded:.3f}")
    # attention-norm with the value bias left out, as compatibility mode's hook_v would give it
    no_bv = torch.einsum("bhij,bjhk,hkd->bijd", it.pattern, it.values - it.weights.b_V, it.W_O)
    with_bv = torch.einsum("bhij,bjhk,hkd->bijd", it.pattern, it.values, it.W_O)
    diff = (cm.row_normalize(no_bv.norm(dim=-1)) - cm.row_normalize(with_bv.norm(dim=-1))).abs().max()
    print(f"  attention-norm of layer 0 moves by up to {diff:.3f} when b_V is left out")

# %% [markdown]
# Reading the weights in memory means an edit counts. Adebayo et al.'s model-randomisation check
# (notebook 01) asks whether an explanation changes when the weights are re-drawn at random; here
# DecompX is run inside `randomized_weights` (the embeddings stay trained). `cm.original_hf_model`,
# the checkpoint as saved, would not see such an edit.

# %%
# NBVAL_CHECK_OUTPUT
from tutorial_utils.course.printing import fixed
from tutorial_utils.input_attribution import randomized_weights

are, is_ = encoder.tokenizer.convert_tokens_to_ids(["are", "is"])
mask_pos, keys_pos = enc_str.index("[MASK]"), enc_str.index("keys")


def decompx_facts() -> tuple[str, cm.DecompXPrediction]:
    """DecompX's [MASK] row (last layer) and its contributions to logit(are) - logit(is)."""
    row = cm.decompx(encoder, enc_tokens[0])[-1, mask_pos]
    pred = cm.decompx_prediction(encoder, enc_tokens)            # explains the [MASK]
    logits = encoder(enc_tokens)[0, mask_pos]
    diff = logits[are] - logits[is_]
    summed = (pred.contributions[0, :, are] - pred.contributions[0, :, is_]).sum()
    return (f"[MASK] row: keys {fixed(row[keys_pos])}, itself {fixed(row[mask_pos])}; "
            f"logit(are) - logit(is) {fixed(diff)}, contributions sum to it: "
            f"{bool((summed - diff).abs() < 1e-3)}"), pred


with randomized_weights(encoder, seed=0):
    randomised, _ = decompx_facts()
trained, trained_pred = decompx_facts()                       # trained_pred: reused in the bonus
print("DecompX, trained:   ", trained)
print("DecompX, randomised:", randomised)

# %% [markdown]
# With random weights DecompX's `[MASK]` row stops reading *keys* (0.21 to 0.04) and keeps 0.68
# on itself, the agreement logit difference falls from 7.61 to -0.33 (the random model has no
# preference for *are*; the sign is this draw's), and the contributions still sum to it: the
# explanation follows the model it is given, as the check asks.

# %% [markdown]
# ## 5. Which method finds the cue? Subject-verb agreement (7 min)
#
# Agreement has a known cue: the verb's number comes from the **subject**, not the **attractor**.
# For each prompt we read the row of the verb position (encoder: the `[MASK]`; decoder: the last
# position of "The keys that the man saw"), at each method's last layer, and ask whether it gives
# the subject more than the attractor; we also rank-correlate the row with the magnitudes of
# gradient × input and occlusion (notebook 01). (In "The keys on the cabinet" the decoder's last
# token *is* the attractor, hence the other frame.) One more encoder row, **DecompX to the
# logit**, is no mixing map: DecompX carried through the masked-LM head, each token's signed
# contribution to the agreement *logit* difference (the gradient and occlusion columns explain
# the *probability* difference; bonus below).

# %%
# NBVAL_CHECK_OUTPUT
examples = {name: sva_cue_examples(m, n=48, seed=0) for name, (m, _, _) in MODELS.items()}
for name, ex in examples.items():
    print(f"{name}: {len(ex)} prompts, e.g. {ex.prompts[0]!r}; words skipped (not one token): {ex.skipped}")
for name, ex in examples.items():
    m = MODELS[name][0]
    metric = cue_target(m, ex)[0](m(ex.tokens))
    print(f"the {name} puts more probability on the agreeing verb forms in "
          f"{float((metric > 0).float().mean()):.2f} of the prompts")

# %%
# NBVAL_IGNORE_OUTPUT  (progress only; the table below carries the numbers)
maps, evals = {}, {}
for name, (m, _, _) in MODELS.items():
    print(f"scoring every method on the {name} ...")
    maps[name] = all_methods(m, examples[name].tokens)       # {method: [B, L, T, T]}
    evals[name] = evaluate_on_cue(m, examples[name], maps=maps[name], prediction=(name == "encoder"))

# %%
# NBVAL_CHECK_OUTPUT
methods = evals["encoder"].methods                          # the encoder has every row
name_of = plotting.mixing_method_name
print(f"{'share of prompts, subject > attractor':<37}|{'encoder':>8} |{'decoder':>13}")
for meth in methods:
    print(f"{name_of(meth):<37}|" + " |".join(
        f"{evals[n].share[meth]:>{w}.2f}" if meth in evals[n].share else f"{'n/a (pre-LN)':>{w}}"
        for n, w in (("encoder", 8), ("decoder", 13))))

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
x = torch.arange(len(methods)).float()
for ax, (key, label) in zip(axes, (("share", "share of prompts, subject > attractor"),
                                   ("rho_grad", "Spearman with |gradient x input|"),
                                   ("rho_occ", "Spearman with |occlusion|"))):
    for k, (name, colour) in enumerate((("encoder", "tab:blue"), ("decoder", "tab:orange"))):
        vals = [getattr(evals[name], key).get(meth, float("nan")) for meth in methods]
        ax.bar(x + 0.4 * k - 0.2, vals, width=0.4, color=colour, label=name)
    ax.set_xticks(x.tolist())
    ax.set_xticklabels([name_of(m) for m in methods], rotation=60, ha="right", fontsize=8)
    if key == "share":
        ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--", label="chance (0.5)")
    else:
        ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(label)
    ax.set_ylabel("share of prompts" if key == "share" else "Spearman correlation")
    ax.set_xlabel("method (last layer, or rolled out)")
axes[0].set_ylim(0, 1.25)
axes[0].legend(loc="upper left", ncols=3, fontsize=8)
fig.suptitle("Context-mixing methods on subject-verb agreement (verb position's row; "
             "both DecompX rows and RES1+LN1: encoder only)");


# %% [markdown]
# The verb's row itself, averaged over the 48 prompts (one layout, so each column is one role):

# %%
def role_labels(name: str) -> list[str]:
    """Column labels for the prompts of `name`: the token where all prompts agree, else its role."""
    m, ex = MODELS[name][0], examples[name]
    strs = [m.to_str_tokens(row) for row in ex.tokens]
    q = int(ex.query_pos[0])
    roles = {int(ex.cue_pos[0]): "SUBJECT", int(ex.distractor_pos[0]): "ATTRACTOR",
             q + 1: "COMPLEMENT"}
    for what in ("cue_pos", "distractor_pos", "query_pos"):
        assert len(set(getattr(ex, what).tolist())) == 1, "prompts must share one layout"
    labels = []
    for p in range(ex.tokens.shape[1]):
        words = {s[p] for s in strs}
        label = roles.get(p, words.pop() if len(words) == 1 else "VERB")
        labels.append(label + (" = query" if p == q else ""))
    return labels


def verb_rows(name: str) -> torch.Tensor:
    """[methods, T]: each mixing map's verb row, mean over prompts (DecompX to the logit is no map)."""
    return torch.stack([evals[name].rows[meth].mean(0) for meth in maps[name]])


plotting.heatmap_pair(
    verb_rows("encoder"), verb_rows("decoder"),
    ["encoder: the [MASK] row", "decoder: the verb position's row"],
    [(role_labels("encoder"), [name_of(m) for m in maps["encoder"]]),
     (role_labels("decoder"), [name_of(m) for m in maps["decoder"]])],
    "source token (role)", "method (last layer, or rolled out)",
    "Where each method sends the verb position's mixing (mean over 48 prompts)",
    "share of the verb position's row");

# %% [markdown]
# ### Bonus: layer by layer (8 min)
#
# #### Exercise 5.1 · where does the verb read the subject? ⭐ 🔵🔵 · 2 min
# The table reads one layer. To see *where* in the model the verb position reads the subject,
# score every layer: given `maps [B, L, T, T]` and per prompt the `query`, `cue` and `distractor`
# positions (`[B]` each), return for each layer the share of prompts whose query row gives the
# cue strictly more than the distractor, a `[L]` tensor (a tie is not a win). The library's
# `cue_ranking(maps, ex, layer)` computes the same for one layer; the next cell uses it.

# %%
def my_cue_share_per_layer(maps: torch.Tensor, query: torch.Tensor, cue: torch.Tensor,
                           distractor: torch.Tensor) -> torch.Tensor:
    ### HINT: b = torch.arange(B); maps[b, :, query] picks, for each prompt, its query row in every layer ([B, L, T]).
    ### BEGIN SOLUTION
    b = torch.arange(maps.shape[0])
    rows = maps[b, :, query]                                  # [B, L, T]: the query's row per layer
    wins = rows[b, :, cue] > rows[b, :, distractor]           # [B, L]
    return wins.float().mean(0)
    ### END SOLUTION


# %%
my_cue_share_per_layer = nb02.check_cue_share_per_layer(my_cue_share_per_layer)

# %% [markdown]
# Layer by layer, for the layer-local methods (each reads one layer's mixing) and ALTI's
# layer matrices before rollout, and each rolled-out method's own entry of the verb row
# ("self"): how much of its state the verb position keeps.

# %%
# NBVAL_CHECK_OUTPUT
local = {name: {"raw attention": maps[name]["attention"],
                "attention-norm + residual (RES1)": maps[name]["attention_norm_res"],
                "ALTI, one layer": cm.alti(MODELS[name][0], examples[name].tokens, rollout=False),
                "Value Zeroing": maps[name]["value_zeroing"]} for name in MODELS}
L = encoder.cfg.n_layers
print("share of prompts with subject > attractor, layer by layer")
print(f"{'':<33}|" + "".join(f"{'encoder L' + str(l):>12}" for l in range(L)) + " |"
      + "".join(f"{'decoder L' + str(l):>12}" for l in range(L)))
for meth in local["encoder"]:
    cells = [" ".join(f"{cue_ranking(local[n][meth], examples[n], l).share:>11.2f}"
                      for l in range(L)) for n in MODELS]
    print(f"{meth:<33}| " + " | ".join(cells))


def row_mean(mat: torch.Tensor, ex, col: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of mat[b, :, query_b, col_b], per layer."""
    b = torch.arange(len(ex))
    return mat[b, :, ex.query_pos.cpu(), col].mean(0)


print("\nthe verb row, per layer (mean over prompts): its own entry / subject / attractor")
for n in MODELS:
    ex = examples[n]
    for meth in ("ALTI, one layer", "Value Zeroing"):
        own, subj, attr = (row_mean(local[n][meth], ex, c) for c in
                           (ex.query_pos.cpu(), ex.cue_pos.cpu(), ex.distractor_pos.cpu()))
        print(f"  {n}, {meth:<16}: " + "  ".join(
            f"L{l} {own[l]:.2f}/{subj[l]:.2f}/{attr[l]:.2f}" for l in range(L)))
ex = examples["encoder"]
nxt = ex.query_pos.cpu() + 1
print("\nencoder, last layer: share of the [MASK] row on the word after it: attention "
      f"{row_mean(maps['encoder']['attention'], ex, nxt)[-1]:.2f}, Value Zeroing "
      f"{row_mean(maps['encoder']['value_zeroing'], ex, nxt)[-1]:.2f}")
vz_res = cm.rollout(maps["encoder"]["value_zeroing"], add_residual=True)
ex = examples["decoder"]
alti_rolled = [row_mean(maps["decoder"]["alti"], ex, c)[-1] for c in (ex.cue_pos.cpu(), ex.distractor_pos.cpu())]
print(f"decoder, ALTI rolled out, the verb row at the last layer: subject {alti_rolled[0]:.2f}, "
      f"attractor {alti_rolled[1]:.2f}")
ex = examples["encoder"]
print(f"encoder, Value Zeroing rolled out: subject > attractor {evals['encoder'].share['value_zeroing_rollout']:.2f}"
      f"; rolled out with 0.5 VZ + 0.5 I instead: {cue_ranking(vz_res, ex).share:.2f}")

# %% [markdown]
# ### Reading the results
# A share near 1 means the method puts the subject above the attractor in almost every prompt;
# 0.5 is a coin flip. It compares two entries only: 1.00 says the subject beats the attractor,
# not that the verb reads mostly the subject (its column is pale in the figure above). On the
# encoder, the methods that carry the mixing back through every layer find the subject most
# reliably (DecompX 1.00, as norms and carried to the logit; rollout 0.98; GlobEnc 0.94); the
# last layer alone is weaker (attention 0.75, attention-norm 0.62): the `[MASK]` reads the
# subject in layer 1, and mostly the word after it in the last layer. Two methods fail, Value
# Zeroing rolled out on the encoder (0.19) and ALTI on the decoder (0.21): the bonus below says
# why, and how far each method's ranking of the tokens is from gradient × input's and
# occlusion's. With 48 prompts on one task, this is a sanity check, not a verdict.
#
# ### Bonus: why two methods fail here (4 min)
# - **Value Zeroing rolled out prefers the attractor (0.19).** The `[MASK]` row's own entry is
#   near 0 in every layer (0.00 to 0.04): it only measures what the `[MASK]`'s own value vector
#   adds through attention to itself, while its residual stream, never zeroed, gets no credit.
#   Rolled out without an identity term, the `[MASK]`'s history is then replaced by the histories
#   of the tokens it reads (in the last layer, the word after it). Adding the residual back,
#   0.5 VZ + 0.5 I, gives 0.73. Attention rollout shows the same effect, milder: 0.71 without
#   the residual, 0.98 with it.
# - **Decoder: ALTI is below chance (0.21), while every other method scores 0.85 to 1.00.** This
#   is ALTI's definition at work, not noise. In layer 0 the verb position mixes in its previous
#   token, the attractor (0.27 of the row against 0.04 for the subject). In layers 1 and 2 ALTI's
#   layer matrices do put the subject first (0.90 and 1.00), but they also say the verb position
#   keeps 0.83 to 0.91 of its own state in layers 1 to 3, so the product $C_3 C_2 C_1 C_0$ mostly
#   carries layer 0's mixing forward: the rolled-out row ends with 0.13 on the subject and 0.17 on
#   the attractor. (Every layer-local method ranks the attractor first in layer 0.) Rollout
#   fixes that self share at 0.5 and lets layers 1 and 2 count. ALTI measures how much of the *whole vector* comes from each token; the number feature
#   the model uses is a small part of it.
# - **Gradients and occlusion** (the table below). On the encoder no mixing map's row ranks the
#   tokens the way gradient × input or occlusion does (every correlation lies between -0.08 and
#   0.38); DecompX carried to the logit comes closer (0.46 and 0.54, next bonus). On the decoder
#   the best is rollout against occlusion (0.63), then GlobEnc (0.42). A method can find the cue
#   and still order the other tokens differently from the model's sensitivity.
#
# Agreement with gradients and occlusion is only as good as those references are; notebook 01
# showed how much they disagree with each other. Ranking methods on one task with 48 prompts is
# a sanity check, not a verdict.

# %%
# Not compared by the tests: each Spearman averages the ranks of about 8 tokens per prompt, so a
# near-tie between two tokens' scores moves it by 0.0005, and some of these averages sit on a
# rounding boundary (0.025, 0.075): their second decimal is the machine's rounding.
print(f"{'Spearman with':<33}|{'encoder: |GxI|':>16}{'|occlusion|':>13} |{'decoder: |GxI|':>16}"
      f"{'|occlusion|':>13}")
for meth in methods:
    print(f"{name_of(meth):<33}|" + " |".join(f"{evals[n].rho_grad[meth]:>16.2f}{evals[n].rho_occ[meth]:>13.2f}"
                                     if meth in evals[n].share else f"{'n/a (pre-LN)':>29}"
                                     for n in ("encoder", "decoder")))

# %% [markdown]
# ### Bonus: DecompX to the prediction (4 min)
# DecompX's defining step (Modarressi et al. 2023, section 3.4) does not stop at the last layer:
# it carries each input token's vector through the head, so every token gets a signed share of
# each output logit, and every bias is shared among the tokens (no remainder): the shares sum to
# the logit. `cm.decompx_prediction(encoder, enc_tokens)` explains the `[MASK]`. The bridge's
# logits are centred over the vocabulary (compatibility mode), the head's are not, so compare a
# *difference* of two logits, which centring leaves alone.

# %%
# NBVAL_CHECK_OUTPUT
from tutorial_utils.course.printing import fixed
from tutorial_utils.tasks.vocab import SVA_VERBS

are, is_ = encoder.tokenizer.convert_tokens_to_ids(["are", "is"])
mask_pos = enc_str.index("[MASK]")
pred = trained_pred              # cm.decompx_prediction(encoder, enc_tokens), run in section 4
contrib = pred.contributions[0, :, are] - pred.contributions[0, :, is_]      # [T]
logits = encoder(enc_tokens)[0, mask_pos]
print("each token's contribution to logit(are) - logit(is) at the [MASK]:")
print("  " + ", ".join(f"{t} {fixed(c, 2, sign=True).strip()}" for t, c in zip(enc_str, contrib)))
print(f"sum {fixed(contrib.sum())} = the model's logit(are) - logit(is) {fixed(logits[are] - logits[is_])}")
dx = evals["encoder"].signed     # [48, T]: decompx_cue_contributions, kept by evaluate_on_cue
print(f"\n48 prompts, agreement logit difference (agreeing minus disagreeing forms of the "
      f"{len(SVA_VERBS)} verbs), mean {fixed(dx.sum(1).mean(), 1)}; mean contribution by position:")
print("  " + ", ".join(f"{r} {fixed(v, 2, sign=True).strip()}"
                       for r, v in zip(role_labels("encoder"), dx.mean(0))))

# %% [markdown]
# On this sentence *keys* pushes towards *are* most (+5.18), then *red* (+2.71), while the
# `[MASK]` itself pushes towards *is* (-1.00); the ten shares sum to the model's 7.61. Over the
# 48 prompts the subject supplies +23.05 of the mean agreement logit difference of 29.8, the
# attractor +0.70, the complement +7.99 and the `[MASK]` -2.69: the verb's number comes from the
# subject, with help from the word after the `[MASK]` (which the last layer reads most: the
# layer-by-layer table above). In the cue table this row puts the subject above the attractor in 1.00 of the
# prompts, as DecompX's norms do, and its ranking is closer to gradient × input's (0.46 against
# 0.35 for the norms) and occlusion's (0.54 against 0.38). Not like for like, though: DecompX
# explains the agreement *logit* difference (a sum of signed shares), gradient × input and
# occlusion the *probability* difference of section 5, which a softmax bends.
#
# ### Bonus: why the decoder's rolled-out rows end on *The* (5 min)
# In the verb-row figure above, the decoder's Value Zeroing rolled out sends most of the verb
# position's row to *The*, which no single layer does. Rollout multiplies the layers,
# $R_l = \text{VZ}_l R_{l-1}$: whatever the verb reads in layer $l$, it inherits that token's whole
# rolled-out history. Measure the share on *The* layer by layer, before and after rolling out:

# %%
# NBVAL_CHECK_OUTPUT
ex = examples["decoder"]
the_pos = 1                                                          # after <|endoftext|>
assert all(decoder.to_str_tokens(row)[the_pos] == "The" for row in ex.tokens)
b, q, subj = torch.arange(len(ex)), ex.query_pos.cpu(), ex.cue_pos.cpu()
for meth, local in (("value_zeroing_rollout", "value_zeroing"), ("rollout_no_res", "attention")):
    for what, mat in ((f"{name_of(local)}, one layer", maps["decoder"][local]),
                      (name_of(meth), maps["decoder"][meth])):
        rows = mat[b, :, q].mean(0)                                   # [L, T]: the verb row
        print(f"verb row, {what:<32}: on <|endoftext|> / The: " + "  ".join(
            f"L{l} {fixed(rows[l, 0])}/{fixed(rows[l, the_pos])}" for l in range(rows.shape[0])))
vz, vz_rolled = maps["decoder"]["value_zeroing"], maps["decoder"]["value_zeroing_rollout"]
print(f"\nValue Zeroing, layer 0, the subject's row: on The {fixed(vz[b, 0, subj, the_pos].mean())}, "
      f"on itself {fixed(vz[b, 0, subj, subj].mean())}")
print(f"Value Zeroing, layer 2, the verb row on the subject {fixed(vz[b, 2, q, subj].mean())}; "
      f"the subject's rolled-out row (to layer 1) on The {fixed(vz_rolled[b, 1, subj, the_pos].mean())}")
att0 = maps["decoder"]["attention"][:, 0]
print("layer 0, on <|endoftext|>, the rows of The / the subject: raw attention "
      f"{fixed(att0[:, the_pos, 0].mean())}/{fixed(att0[b, subj, 0].mean())}, Value Zeroing "
      f"{fixed(vz[:, 0, the_pos, 0].mean())}/{fixed(vz[b, 0, subj, 0].mean())}")

# %% [markdown]
# In no single layer does Value Zeroing give *The* more than 0.59 of the verb row (layer 1),
# yet rolled out it gives it 0.87 after layer 2 and 0.78 at the end. The product explains it. In
# layer 0 the subject's row goes to *The* (0.85) and hardly to itself (0.05): Value Zeroing never
# credits a token's own residual stream (section 3.2), so the subject's state counts as mostly
# *The*, and its rolled-out row after layer 1 is 0.90 *The*. In layer 2 the verb reads the
# subject (0.79) and inherits that history. Attention rollout without the residual drifts to the
# start too, but to `<|endoftext|>` (0.73 at the end): in layer 0 raw attention gives it 0.48 of
# the row of *The* and 0.34 of the subject's, where Value Zeroing gives it 0.08 and 0.10
# (zeroing its value changes those tokens little). In a causal model every rolled-out row drifts to the first positions, whose own rows can read only
# themselves and what precedes them; which one collects the mass depends on the method. *The* is
# not read for nothing: notebook 01 showed that this model's agreement depends on the
# sentence-initial *The* (without it, no preference for either verb form). But 0.78 measures
# rollout's bookkeeping (a token's history replaced by the histories of what it reads), not how
# much *The* moves the verb.

# %% [markdown]
# ## 6. Bonus: every layer, method by method (3 min)
#
# The layer-by-layer table in pictures: each layer's map for two methods on the encoder
# sentence, one colour scale for all panels. Value Zeroing is layer-local: on this sentence its
# `[MASK]` row reads `keys` in layer 1 and `red` in layers 2 and 3. ALTI is rolled out (its
# layer $l$ covers layers $0..l$), and its diagonal fades as the layers add up. In Colab a
# selector picks the model and method.

# %%
def layers_of(which: str, methods: list[str]):
    """Every layer of each method in `methods` for one sentence, on one colour scale."""
    m, toks, strs = MODELS[which]
    mats = torch.stack([cm.compute_mixing(m, toks[0], meth) for meth in methods])  # [M, L, T, T]
    names = [plotting.mixing_method_name(m) for m in methods]
    return plotting.attention_grid(
        mats, strs, f"{which}: every layer of {', '.join(names)}",
        layer_labels=names, head_labels=[f"layer {l}" for l in range(mats.shape[1])],
        cbar_label="share of row i", vmax=None, axis_labels=("query i", "source j"))


layers_of("encoder", ["value_zeroing", "alti"]);

# %%
if "google.colab" in sys.modules:
    import ipywidgets as widgets

    widgets.interact(lambda which, method: (layers_of(which, [method]), plt.show()),
                     which=["encoder", "decoder"], method=cm.methods_for(decoder))

# %% [markdown]
# ## Summary
# - Raw attention ignores what is moved (value norms), what stays (the residual) and LayerNorm;
#   each method above adds one of these back, and the decompositions are exact (checked above).
# - Rollout-style aggregation answers a different question (input tokens, whole model) from the
#   layer-local maps, and *how* a method rolls out matters: with a large self share (ALTI on the
#   decoder) the first layer dominates; with none (Value Zeroing) a token's own history is lost.
# - Every method computes from the weights in memory, so randomisation and edits count (random
#   weights take *keys* out of DecompX's `[MASK]` row), written back in the checkpoint's
#   parameterisation: compatibility mode's folded value bias and centred $W_O$ keep the sums
#   exact but move $\alpha_{ij} b_V W_O$ out of each piece.
# - On agreement, the methods that trace the encoder's `[MASK]` back through every layer (DecompX,
#   rollout, GlobEnc) found the subject most reliably, the `[MASK]` reads the subject in layer 1,
#   and DecompX carried to the prediction gives the subject most of the agreement logit
#   difference; no mixing map ranked the tokens like gradients or occlusion did. In the causal
#   decoder rolled-out rows drift to the first tokens. Read any such ranking together with how
#   the question was posed (which layer, which frame).
#
# **Next:** notebook 03 turns from *where information flows* to *which components compute the
# answer*: activation patching and the logit lens.
#
# ## 7. Bonus: Now on BERT-base and GPT-2 small (1 min)
# The cue test of section 5 for every method on BERT-base (12 layers, a real masked LM) and GPT-2
# small, with the `[CLS]`/`[SEP]` shares of section 1, printed next to what the papers report
# (Kobayashi et al. 2020: BERT's large weights on `[CLS]`/`[SEP]` move little; Ferrando et al.
# 2022 and Mohebbi et al. 2023: ALTI and Value Zeroing agree better with gradient and erasure
# attributions than raw attention does). It needs the Hugging Face hub (Colab has it); offline
# this cell prints one line and skips.

# %%
from tutorial_utils.course.large_model import run_section
RUN_LARGE = None  # None: run when the Hugging Face hub answers; True: always; False: skip
large = run_section("02", run=RUN_LARGE)
