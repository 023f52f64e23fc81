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
# # 00 · Primer: the residual stream, attention patterns and an induction head
#
# **Estimated time: 26 minutes core + 2 minutes bonus.**
#
# This notebook proves that the whole pipe works (model, hooks,
# cache, plots) and introduces the one picture every later notebook relies on.
#
# **Learning objectives**
# - load a model as a TransformerLens `TransformerBridge` and read its activations with `run_with_cache`;
# - verify numerically that the final residual stream is the sum of what the embeddings, every
#   attention layer and every MLP wrote into it;
# - read attention patterns, interactively and as static heatmaps;
# - find an induction head on repeated random tokens and measure it with an induction score.
#
# **Model.** This notebook runs the course's shipped offline model `tiny-gpt2-tasks` (4 layers,
# 4 heads, trained in this repository on the course's tasks) everywhere, Colab included, and the
# saved outputs below come from it. To run it on GPT-2 small instead (online only), set the
# environment variable `TUTORIAL_MODEL=gpt2` before starting: a banner then reminds you that
# the text describes the shipped model.
#
# **Two models, one notation.** Notebooks 00-03 and 05 dissect `tiny-gpt2-tasks` (with MLPs) and
# notebook 04 dissects `tiny-attn-tasks` (attention-only, 8 heads per layer); every notebook names
# head H of layer L `aL.hH` (`a3.h0`: layer 3, head 0), and `a3.h0` of one model is not `a3.h0` of
# the other. Notebook 04 needs its own model because `tiny-gpt2-tasks` solves indirect-object
# identification without heads composing (a layer-0 head averages the names and its MLPs tell
# the name seen once from the one seen twice: `data/models/tiny-attn-tasks/README.md`), while an
# attention-only model cannot count that way and has to compose heads across layers, as GPT-2
# small does.
#
# Labels: each exercise carries a difficulty (⭐ easy · ⭐⭐ medium · ⭐⭐⭐ hard) and an importance
# (🔵 optional · 🔵🔵 useful · 🔵🔵🔵 core), as in every notebook of the course.

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
import torch
import circuitsvis as cv
import matplotlib.pyplot as plt

from tutorial_utils import induction, plotting
from tutorial_utils.course.checks import nb00
from tutorial_utils.models import load_course_model, seed_everything

seed_everything(0)
torch.set_grad_enabled(False);  # this notebook only reads activations

# %% [markdown]
# ## 1. A model, its tokens and its cache (6 min)
#
# The bridge wraps a Hugging Face model and exposes *hook points*: named places where activations
# can be read or changed. `enable_compatibility_mode()` (done by `load_model`) gives the classic
# TransformerLens numerics: LayerNorm weights folded into the next linear map and weights centred.

# %%
model = load_course_model("tiny-gpt2-tasks")
cfg = model.cfg
print(f"{cfg.n_layers} layers, {cfg.n_heads} heads per layer, d_model = {cfg.d_model}, "
      f"vocabulary = {cfg.d_vocab}, context = {cfg.n_ctx}")

# %% [markdown]
# Tokens first. As in GPT-2, a word and the space before it form one token, and a year is cut
# into a century and two digits: the Greater-Than task depends on this.

# %%
# NBVAL_CHECK_OUTPUT
prompt = "The war lasted from the year 1741 to the year 17"
tokens = model.to_tokens(prompt)  # prepends the BOS token
str_tokens = model.to_str_tokens(prompt)
print(str_tokens)

# %%
# NBVAL_CHECK_OUTPUT
logits, cache = model.run_with_cache(tokens)
probs = logits[0, -1].softmax(-1)
top = probs.topk(8)
print("most likely next tokens after", repr(prompt))
for p, i in zip(top.values, top.indices):
    print(f"  {model.tokenizer.decode([int(i)])!r:>8}  p = {p:.3f}")
year_ids = [model.tokenizer.convert_tokens_to_ids(f"{y:02d}") for y in range(100)]
p_years = probs[year_ids]
print(f"probability on years above 41: {p_years[42:].sum():.2f}, on years up to 41: {p_years[:42].sum():.2f}")
print(f"cache holds {len(cache)} activations, e.g. blocks.0.attn.hook_pattern "
      f"{tuple(cache['blocks.0.attn.hook_pattern'].shape)}  [batch, head, query, key]")


# %% [markdown]
# ## 2. The residual stream is a sum (6 min)
#
# Every block *reads* the residual stream and *adds* its output back to it. Nothing else writes to
# it, so the stream after the last block is exactly
#
# $$x_L = \underbrace{x_0}_{\text{token + position embedding}} + \sum_{l=0}^{L-1} \text{attn\_out}_l + \sum_{l=0}^{L-1} \text{mlp\_out}_l .$$
#
# This additivity is what later lets us attribute the output to components, patch single paths, and
# read intermediate states with the logit lens.
#
# #### Exercise 2.1 · rebuild the residual stream ⭐ 🔵🔵🔵 · 3 min
# Rebuild $x_L$ from the cache: `hook_embed`, `hook_pos_embed`,
# `blocks.{l}.hook_attn_out`, `blocks.{l}.hook_mlp_out`.

# %%
def residual_sum(cache, n_layers: int) -> torch.Tensor:
    """x_0 + sum of every attention and MLP output, [batch, pos, d_model]."""
    ### BEGIN SOLUTION
    total = cache["hook_embed"] + cache["hook_pos_embed"]
    for layer in range(n_layers):
        total = total + cache[f"blocks.{layer}.hook_attn_out"] + cache[f"blocks.{layer}.hook_mlp_out"]
    return total
    ### END SOLUTION
    ### HINT: Start from the sum of the two embedding hooks, then add two cache entries per layer.


# %%
residual_sum = nb00.check_residual_sum(residual_sum, model)

# %%
# NBVAL_CHECK_OUTPUT
final = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
error = (residual_sum(cache, cfg.n_layers) - final).abs().max().item()
print(f"x_L == x_0 + sum of writers, to float rounding (max |difference| < 1e-4): {error < 1e-4}")

# %% [markdown]
# How much does each writer contribute at the last position? The norm of each term gives a first,
# rough picture (a large norm is not the same as a large *effect* on the prediction: notebooks 03
# to 05 measure effects).

# %%
pos = -1
labels = ["embed"] + [f"{kind}{l}" for l in range(cfg.n_layers) for kind in ("attn", "mlp")]
terms = [cache["hook_embed"][0, pos] + cache["hook_pos_embed"][0, pos]]
for l in range(cfg.n_layers):
    terms += [cache[f"blocks.{l}.hook_attn_out"][0, pos], cache[f"blocks.{l}.hook_mlp_out"][0, pos]]
norms = torch.stack(terms).norm(dim=-1)
plotting.bar(norms, labels, f"Norm of each writer's output at the last token ({str_tokens[-1]!r})",
             "L2 norm", "component");

# %% [markdown]
# ### Bonus: why the last MLP's bar is so tall (1 min)
# One writer dwarfs the others. Compare it with the final residual stream itself:

# %%
# NBVAL_CHECK_OUTPUT
x_final = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"][0, pos]
cos = torch.nn.functional.cosine_similarity(terms[-1], x_final, dim=0)
print(f"norm of {labels[-1]}: {terms[-1].norm():.0f}; norm of x_L: {x_final.norm():.0f}; "
      f"cosine between them: {cos:.2f}")

# %% [markdown]
# The last MLP writes almost the whole final residual stream, in size and in direction. That is
# where the prediction is made: the final LayerNorm divides `x_L` by its size before the
# unembedding, so the size itself buys nothing, and what counts is the direction the last MLP
# gives the stream (notebook 03 shows, with direct logit attribution, that it upweights the years
# after the start year). The small writers are not unimportant either: `a0.h0`, inside `attn0`'s
# bar, moves the start year to this position, the step everything else depends on.

# %% [markdown]
# ## 3. Attention patterns (4 min)
#
# `hook_pattern` holds, for each head, a `[query, key]` matrix whose rows are probability
# distributions: how much each position reads from each earlier position (the model is causal,
# so the upper triangle is zero). `circuitsvis` draws them interactively; the static heatmaps
# below show the same numbers and survive GitHub, PDF export and offline reading.

# %%
cv.attention.attention_patterns(tokens=str_tokens, attention=cache["blocks.0.attn.hook_pattern"][0])

# %%
patterns = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0] for l in range(cfg.n_layers)])
plotting.attention_grid(patterns, str_tokens, "Attention patterns of every head on the Greater-Than prompt");

# %%
plotting.attention_heatmap(patterns[0, 0], str_tokens, "a0.h0 (layer 0, head 0)");

# %% [markdown]
# ## 4. An induction head (10 min)
#
# Take a sequence of random tokens and repeat it. The first copy is unpredictable; the second is
# predictable *if the model can look back at what followed the current token last time*. Heads that
# do this are **induction heads** (Elhage et al. 2021; Olsson et al. 2022): at a position $q$ in the
# second copy they attend to $q - L + 1$, the token after the earlier occurrence of the current token,
# which shows up as a stripe parallel to the diagonal, $L-1$ positions to its left.

# %%
# NBVAL_CHECK_OUTPUT
seq_len = 20
rep_tokens = induction.model_repeated_tokens(model, seq_len=seq_len, batch=16, seed=0)
rep_logits, rep_cache = model.run_with_cache(rep_tokens)
loss = induction.per_token_loss(rep_logits, rep_tokens).mean(0)  # [2 * seq_len]
print(f"mean loss on the first copy:  {loss[1:seq_len].mean():.2f}")
print(f"mean loss on the second copy: {loss[seq_len + 1:].mean():.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(range(1, 2 * seq_len + 1), loss.numpy(), marker=".")
ax.axvline(seq_len + 0.5, color="grey", linestyle="--", label="start of the repeat")
ax.set_title("Loss per position on repeated random tokens (mean over 16 sequences)")
ax.set_xlabel("position of the predicted token")
ax.set_ylabel("cross-entropy (nats)")
ax.legend()
fig.tight_layout()


# %% [markdown]
# The loss falls from the second token of the repeat on. The first one (position 21) cannot be
# predicted: it follows the last token of the first copy, which has not occurred before, so
# there is nothing to look back at (the mean above starts after it).
#
# #### Exercise 4.1 · the induction score ⭐⭐ 🔵🔵🔵 · 4 min
# Write the induction score: for patterns `[batch, head, query, key]`
# of `BOS + r + r` with `len(r) = seq_len`, the attention from each query $q$ of the second copy
# ($q = L+1, \dots, 2L$) to key $q - L + 1$, averaged over those queries and over the batch.
# Return `[head]`.

# %%
def induction_score(patterns: torch.Tensor, seq_len: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len + 1].mean(dim=(-3, -1))
    ### END SOLUTION
    ### HINT: Index the last two axes with two index tensors of the same length: `patterns[..., q, k]`.
    ### HINT: With q = arange(seq_len + 1, 2 * seq_len + 1) the keys are q - seq_len + 1; then average over the batch axis and the query axis.


# %%
induction_score = nb00.check_induction_score(induction_score)

# %%
# NBVAL_CHECK_OUTPUT
scores = torch.stack([induction_score(rep_cache[f"blocks.{l}.attn.hook_pattern"], seq_len)
                      for l in range(cfg.n_layers)])  # [layer, head]
best_layer, best_head = divmod(int(scores.argmax()), cfg.n_heads)
print(f"best induction head: a{best_layer}.h{best_head}, score {scores.max():.2f}")

# %%
plotting.heatmap(scores, "Induction score of every head", "head", "layer",
                 [str(h) for h in range(cfg.n_heads)], [str(l) for l in range(cfg.n_layers)],
                 cbar_label="induction score", annotate=True, cmap="magma", figsize=(5.5, 3.8));

# %%
rep_str = [model.tokenizer.decode([int(t)]) for t in rep_tokens[0]]
plotting.attention_heatmap(rep_cache[f"blocks.{best_layer}.attn.hook_pattern"][0, best_head], rep_str,
                           f"a{best_layer}.h{best_head} on a repeated random sequence: the induction stripe");

# %% [markdown]
# Induction heads need two layers working together: an earlier head writes *"the token before me
# was X"* into each position, and the induction head's query (*"I am X"*) matches that key. This is
# **composition** across layers through the residual stream, the theme of notebooks 03 to 05
# (notebook 04 shows this very composition with path patching).
#
# ## Summary
# - The residual stream is a running sum: embeddings plus every attention and MLP output, exactly.
# - Attention patterns show where each head reads from; they are a starting point, not an
#   explanation (notebook 02 shows why raw attention can mislead).
# - A repeated random sequence exposes induction heads through a drop in loss and a diagonal stripe.
#
# **Next:** notebook 01 applies the model-agnostic methods (behavioural tests, probing, input
# attribution) to the same model and shows what they can and cannot tell us.
#
# ## 5. Bonus: Now on GPT-2 small (1 min)
# The same measurements on GPT-2 small: the residual stream rebuilt from its 12 layers, and the
# induction score of its 144 heads next to the induction heads reported for it in the literature
# (Olsson et al. 2022; e.g. heads 5.1, 5.5 and 6.9). It needs the Hugging Face hub (Colab has
# it); offline this cell prints one line and skips.

# %%
from tutorial_utils.course.large_model import run_section
RUN_LARGE = None  # None: run when the Hugging Face hub answers; True: always; False: skip
large = run_section("00", run=RUN_LARGE)
