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
# # 01 · Model-agnostic baselines: behaviour, probing, input attribution, and their limits
#
# **Estimated time: 30 minutes core + 61 minutes bonus.**
#
# Before opening a Transformer up, we apply the methods people use on *any* model: test its
# behaviour, probe its hidden states, attribute its output to its input tokens. Each answers a
# real question; none tells us *how* the model computes.
#
# **Learning objectives**
# - measure behaviour with minimal pairs, with a metric that is not saturated;
# - probe every layer and report **selectivity** against a correctly specified control task;
# - implement gradient x input and integrated gradients (with its completeness check), and
#   their **contrastive** versions ("why A and not B");
# - (bonus) occlusion; how much the methods disagree, and whether they depend on the weights;
#   whether a decodable property is **used**, by erasing it.
#
# Labels: each exercise carries a difficulty (⭐ easy · ⭐⭐ medium · ⭐⭐⭐ hard) and an importance
# (🔵 optional · 🔵🔵 useful · 🔵🔵🔵 core), as in every notebook of the course.
#
# **Model.** The course's shipped offline model `tiny-gpt2-tasks` (4 layers, trained in this
# repository on the course tasks), everywhere, Colab included: every number quoted in the text is
# printed by a cell. The last section runs the same measurements on GPT-2 small when online.

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
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm

from tutorial_utils import concept_erasure as E
from tutorial_utils import input_attribution as A
from tutorial_utils import plotting
from tutorial_utils import probing as P
from tutorial_utils.course.checks import nb01
from tutorial_utils.course.grading import report
from tutorial_utils.course.printing import fixed
from tutorial_utils.models import load_course_model, seed_everything
from tutorial_utils.tasks import accuracy, make_greater_than, make_sva

seed_everything(0)
torch.set_grad_enabled(False)  # the attribution functions turn gradients on where they need them

# %%
# NBVAL_IGNORE_OUTPUT
model = load_course_model("tiny-gpt2-tasks")
N = 100  # examples per condition; raise it on a GPU


def sva_logit_diff(logits, ds, per_example=False):
    """Mean over the verb pairs of logit(agreeing form) - logit(disagreeing form), at the answer
    position: unlike the probability difference, it does not depend on how much probability
    the model gives to words that are not verbs, and it does not saturate at 1."""
    lg = logits[torch.arange(len(ds)), ds.answer_pos] if logits.ndim == 3 else logits
    vals = (lg.gather(-1, ds.candidate_ids) * ds.candidate_sign).sum(-1) / (ds.candidate_ids.shape[1] / 2)
    return vals if per_example else float(vals.mean())

# %% [markdown]
# ## 1. Behavioural evaluation with minimal pairs (7 min)
#
# A minimal pair changes one thing and asks whether the prediction follows: *"The keys on the
# cabinet"* should continue with a plural verb, despite the **attractor** *cabinet* (Linzen et
# al. 2016). Three numbers: **accuracy** (more probability on the agreeing verb forms), the
# **probability difference** (agreeing minus disagreeing mass) and the **logit difference**
# (agreeing minus disagreeing logit, averaged over verb pairs), read with the **verb mass**.

# %%
# NBVAL_CHECK_OUTPUT
conditions = [("no attractor", "none", "train"), ("same-number attractor", "same", "train"),
              ("opposite attractor", "opposite", "train"),
              ("opposite attractor, new frames", "opposite", "heldout")]
sva_rows = {}
print(f"{'condition':32s} accuracy  prob. diff  logit diff  verb mass")
for label, attractor, frames in conditions:
    ds = make_sva(model, n=N, frames_split=frames, attractor=attractor, seed=0)
    logits = model(ds.clean_tokens)
    p_last = logits[torch.arange(len(ds)), ds.answer_pos].softmax(-1)
    sva_rows[label] = (accuracy(logits, ds), float(ds.metric(logits)), sva_logit_diff(logits, ds),
                       float(p_last.gather(-1, ds.candidate_ids).sum(-1).mean()))
    print(f"{label:32s} {sva_rows[label][0]:8.2f}  {sva_rows[label][1]:10.2f}  "
          f"{sva_rows[label][2]:10.2f}  {sva_rows[label][3]:9.2f}")
    if attractor == "none":
        top = p_last.mean(0).topk(4)
        print("   most likely next tokens after a bare subject: " + ", ".join(
            f"{model.tokenizer.decode([int(i)])!r} {float(v):.2f}" for v, i in zip(top.values, top.indices)))

# %% [markdown]
# The "no attractor" row looks like a failure (prob. diff 0.19) but is not one: after a bare
# subject the model expects *" that"* (0.21) or a preposition, as in most agreement sentences it
# was trained on, so only 0.20 of the mass is on verbs and the probability difference cannot
# exceed that; the logit difference, which ignores the other words, is 5.46. Read a probability
# difference together with the mass it is taken from. On frames it never saw, the model still
# agrees across an attractor (accuracy 0.94). Behaviour says *whether* the model agrees, not
# *how*: a model that memorised templates and one that tracks the subject's number can give the
# same numbers.
#
# ### Bonus: Greater-Than, and the picture (4 min)
# Greater-Than (Hanna et al. 2023): *"The war lasted from the year 1741 to the year 17"* should
# continue with a two-digit year above 41. Accuracy is the share of prompts with more probability
# on the later years; the probability difference is p(later years) - p(earlier or same years).

# %%
# NBVAL_CHECK_OUTPUT
gt = make_greater_than(model, n=400, frames_split="all", seed=0)
gt_logits = model(gt.clean_tokens)
gt_pd = gt.metric(gt_logits, per_example=True)
yy = torch.tensor(gt.meta["yy"])
decades = list(range(0, 100, 10))
in_decade = [(yy >= d) & (yy < d + 10) for d in decades]
gt_acc_by_decade = [float((gt_pd[m] > 0).float().mean()) for m in in_decade]
gt_pd_by_decade = [float(gt_pd[m].mean()) for m in in_decade]
print(f"Greater-Than accuracy {float((gt_pd > 0).float().mean()):.2f}, prob. diff {float(gt_pd.mean()):.2f}")
print("prob. diff by start year:", "  ".join(f"{d:02d}-{d + 9:02d}: {v:.2f}" for d, v in zip(decades, gt_pd_by_decade)))

# p(end year | start year) on one frame, one prompt per start year
starts = list(range(2, 99))
prompts = [f"The war lasted from the year 17{s:02d} to the year 17" for s in starts]
year_ids = gt.candidate_ids[0]  # the 100 tokens "00".."99"
probs = model(model.to_tokens(prompts))[:, -1].softmax(-1)[:, year_ids]

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
ax = axes[0]
ys = np.arange(len(sva_rows))
for k, (name, col) in enumerate([("accuracy", "tab:blue"), ("prob. diff", "tab:orange"),
                                 ("verb mass", "tab:grey")]):
    idx = {"accuracy": 0, "prob. diff": 1, "verb mass": 3}[name]
    ax.barh(ys + (k - 1) * 0.27, [r[idx] for r in sva_rows.values()], 0.27, color=col, label=name)
ax.set_yticks(ys); ax.set_yticklabels(list(sva_rows)); ax.set_xlim(0, 1.05)
ax.set_xlabel("value"); ax.set_title("Agreement (SVA)")
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
ax = axes[1]
ax.plot([d + 5 for d in decades], gt_acc_by_decade, "o--", color="tab:blue", label="accuracy")
ax.plot([d + 5 for d in decades], gt_pd_by_decade, "s-", color="tab:orange", label="prob. diff")
ax.set_ylim(0, 1.05); ax.set_xlabel("start year YY (binned by decade)")
ax.set_ylabel("value"); ax.set_title("Greater-Than by start year"); ax.legend(fontsize=8, loc="lower left")
ax = axes[2]
im = ax.imshow(probs.clamp_min(1e-5).numpy(), aspect="auto", origin="lower",
               extent=[-0.5, 99.5, 1.5, 98.5], cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1))
ax.plot([0, 99], [0, 99], color="white", lw=0.8, ls="--")
ax.set_xlabel("predicted end year YY"); ax.set_ylabel("start year YY")
ax.set_title("p(end year), 'from the year 17YY to the year 17'")
fig.colorbar(im, ax=ax, label="probability (log scale)")
fig.tight_layout()

# %% [markdown]
# The model agrees with attractors in training frames and drops only on frames it never saw
# (logit difference 7.44 instead of 9.02); Greater-Than accuracy is 1.00 for every start decade,
# but the probability difference shows how confident it is (0.96 for start years 00-09, 0.83 for
# 80-89), and on the log scale the right-hand panel shows the triangle: probability on end years
# after the start year.

# %% [markdown]
# ## 2. Probing: what is decodable (11 min)
#
# A **probe** is a small classifier that reads a property from a hidden state: here the *number
# of the subject*, from the residual stream at the last prompt position, at every layer, with
# attractors of both numbers. Two controls:
# - **disjoint nouns**: test on nouns the probe never saw;
# - a **control task** (Hewitt & Liang 2019): every word type gets a *random* label, and each
#   example the label of the word at the probed position, learnable only by memorising words.
#   **Selectivity** = task accuracy − control accuracy, on the same split.

# %%
def subject_number_data(nouns, n, seed):
    """Residual stream at the last position [layers+1, 2n, d], subject number, probed tokens."""
    feats, labels, probed, dsets = [], [], [], []
    for attractor in ("same", "opposite"):
        ds = make_sva(model, n=n, frames_split="train", nouns=nouns, attractor=attractor, seed=seed)
        feats.append(P.residual_stream(model, ds.clean_tokens, pos=ds.answer_pos))
        labels += [int(p) for p in ds.meta["plural"]]
        probed.append(ds.clean_tokens[torch.arange(len(ds)), ds.answer_pos])
        dsets.append(ds)
    return torch.cat(feats, 1), torch.tensor(labels), torch.cat(probed), dsets

acts_train, y_train, probed_train, train_sets = subject_number_data("train", N, seed=0)
acts_test, y_test, _, test_sets = subject_number_data("heldout", N // 2, seed=1)
layer_names = ["embed"] + [f"after L{l}" for l in range(model.cfg.n_layers)]
L1 = acts_train.shape[0]
print(f"{acts_train.shape[1]} training prompts, {acts_test.shape[1]} test prompts (unseen subject "
      f"nouns); {len(probed_train.unique())} distinct words at the probed (last) position")

# %% [markdown]
# ### Bonus: a probe by hand (5 min)
#
# #### Exercise 2.1 · a logistic-regression probe ⭐⭐ 🔵🔵 · 4 min
# Train a binary logistic-regression probe by gradient descent: minimise
# `mean BCE(sigmoid(X w + b), y) + weight_decay / 2 · ||w||²` and return `(w, b)`. The check
# compares your loss with the exact optimum on synthetic data and names the usual mistakes.

# %%
def train_binary_probe(X: torch.Tensor, y: torch.Tensor, weight_decay: float):
    ### BEGIN SOLUTION
    ### HINT: start from w = 0, b = 0 with requires_grad; torch.optim.LBFGS (line_search_fn="strong_wolfe") converges in one .step(closure); Adam with lr 0.05 needs a few hundred steps
    ### HINT: binary_cross_entropy_with_logits takes the logits X @ w + b; the penalty is on w only. Gradients are off in this notebook: wrap the loop in torch.enable_grad()
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y.float())
                + 0.5 * weight_decay * (w ** 2).sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()
    ### END SOLUTION


# %%
train_binary_probe = nb01.check_train_probe(train_binary_probe)

# %% [markdown]
# ### The control task
#
# #### Exercise 2.2 · the control task ⭐⭐ 🔵🔵🔵 · 4 min
# Write Hewitt & Liang's control task for a probe that reads position `pos[n]` of example `n`:
# give every token type one random label, drawn from the empirical distribution of `labels`
# (so the control task has the same label balance as the real one), and return for each example
# the label of the token **at its probed position**, `[N]`.

# %%
def control_task_labels(tokens: torch.Tensor, pos: torch.Tensor, labels: torch.Tensor, seed: int):
    ### BEGIN SOLUTION
    ### HINT: the word type of example n is tokens[n, pos[n]]; a dict from type to label makes the label a function of the type alone
    ### HINT: random.Random(seed).choice(labels.tolist()) draws from the empirical label distribution
    import random

    words = tokens[torch.arange(len(tokens)), pos].tolist()
    rng = random.Random(seed)
    pool = labels.tolist()
    table = {w: rng.choice(pool) for w in sorted(set(words))}
    return torch.tensor([table[w] for w in words])
    ### END SOLUTION


# %%
control_task_labels = nb01.check_control_task(control_task_labels)

# %% [markdown]
# `P.control_task(tokens, pos, labels, seed)` is the same definition (drawn in another order);
# we average the control accuracy over 5 random draws.

# %%
# NBVAL_CHECK_OUTPUT
# (a) disjoint nouns: train on the training nouns, test on held-out nouns
heldout_acc = torch.tensor([P.train_probe(acts_train[l], y_train).accuracy(acts_test[l], y_test)
                            for l in range(L1)])
# (b) Hewitt & Liang: task vs control task on a random split of the training prompts
tr, te = P.random_split(len(y_train), test_frac=0.3, seed=0)
res = P.probe_layers(acts_train, y_train, tr, te)
def mean_control_accuracy(word_types):
    ctrl = [P.control_labels(word_types, y_train, seed=s) for s in range(5)]
    return torch.stack([P.probe_layers(acts_train, c, tr, te).test_accuracy for c in ctrl]).mean(0)
control_acc = mean_control_accuracy(probed_train.tolist())
selectivity = res.test_accuracy - control_acc
print(f"{'layer':>9s}  held-out nouns  task (split)  control  selectivity")
for l, name in enumerate(layer_names):
    print(f"{name:>9s}  {heldout_acc[l]:14.2f}  {res.test_accuracy[l]:12.2f}  "
          f"{control_acc[l]:7.2f}  {selectivity[l]:11.2f}")
# for comparison: a control task labelled by the *subject* word, which the last position does not hold
subject_words = [w for ds in train_sets for w in ds.meta["subject"]]
wrong = res.test_accuracy - mean_control_accuracy(subject_words)
print("selectivity if the control labels followed the subject word instead: "
      + ", ".join(f"{n} {float(s):.2f}" for n, s in zip(layer_names, wrong)))

# %%
fig, ax = plt.subplots(figsize=(7.5, 4))
x = range(L1)
ax.plot(x, heldout_acc, "o-", label="subject number, held-out nouns")
ax.plot(x, res.test_accuracy, "s-", label="subject number, random split")
ax.plot(x, control_acc, "^--", label="control task (random label per word at the probed position)")
ax.axhline(0.5, color="grey", ls=":", label="chance")
ax.set_xticks(list(x)); ax.set_xticklabels(layer_names)
ax.set_ylim(0.3, 1.05); ax.set_xlabel("residual stream (last prompt position)")
ax.set_ylabel("probe test accuracy"); ax.set_title("Linear probes for subject number, by layer")
ax.legend(fontsize=8, loc="lower right"); fig.tight_layout()

# %% [markdown]
# **Reading the probe table.** Subject number is decodable on unseen nouns from "after L2" on
# (1.00). The control task is easy at the embeddings (0.88: there the representation *is* the
# word) and harder with depth (0.75 after L2): selectivity 0.25 after L2. A control task labelled
# by the *subject* word, a tempting mistake, inflates it (0.34, last line). Whether the model
# *uses* what is decodable is bonus section 5.

# %% [markdown]
# ## 3. Input attribution (12 min)
#
# Attribution methods score each input token for one output. We attribute at the level of token
# embeddings $x_t$ (through a hook on `hook_embed`), for a scalar **target** $f$ of the logits:
# - **saliency** (Simonyan et al. 2014): $\lVert \partial f / \partial x_t \rVert_2$ (how sensitive, not in which direction);
# - **gradient x input**: $\sum_d \frac{\partial f}{\partial x_{t,d}} x_{t,d}$ (a first-order Taylor term);
# - **integrated gradients** (Sundararajan et al. 2017): $(x_t - x'_t)\cdot\int_0^1 \nabla_{x_t} f(x' + \alpha (x - x'))\,d\alpha$
#   from a baseline $x'$ (BOS keeps its own embedding in $x'$, so it scores 0); **completeness**:
#   the scores sum to $f(x) - f(x')$;
# - **occlusion / erasure**: $f(x) - f(x \text{ with token } t \text{ replaced or deleted})$ (Li et
#   al. 2016; they divide by the unerased score, which does not change a prompt's ranking).
#
# **Contrastive** targets ask "why A and not B" (Yin & Neubig 2022): $f = \text{logit}(A) - \text{logit}(B)$
# for every method (their contrastive erasure uses $p(A) - p(B)$).
#
# Tools for the exercises: `A.embedding_gradients(model, tokens, target_fn, embeds=None)` returns
# `(f(x) [B], df/dx [B, T, d])`; `A.token_embeddings(model, tokens)`; `A.target_values(...)`.

# %% [markdown]
# #### Exercise 3.1 · gradient x input ⭐ 🔵🔵 · 2 min
# Gradient x input, summed over the embedding dimension: `[B, T]`.

# %%
def my_gradient_x_input(model, tokens, target_fn):
    ### BEGIN SOLUTION
    ### HINT: get the embeddings x, then the gradient of the target with respect to them; the score is their product, summed over d
    x = A.token_embeddings(model, tokens)
    _, g = A.embedding_gradients(model, tokens, target_fn, embeds=x)
    return (g * x).sum(-1)
    ### END SOLUTION


# %%
my_gradient_x_input = nb01.check_gradient_x_input(my_gradient_x_input, model)


# %% [markdown]
# #### Exercise 3.2 · integrated gradients ⭐⭐ 🔵🔵🔵 · 5 min
# Integrated gradients with the midpoint Riemann sum: $\alpha_k = (k + 1/2)/n$ for
# $k = 0..n-1$, each with weight $1/n$; return $\sum_d (x - x')\cdot\overline{g}$, `[B, T]`. On a
# linear target the answer is exactly $(x - x')\cdot w$ for any $n$; on any target the scores
# sum to $f(x) - f(x')$ as $n$ grows.

# %%
def my_integrated_gradients(model, tokens, target_fn, baseline_embeds, n_steps):
    ### BEGIN SOLUTION
    ### HINT: the path points are baseline_embeds + alpha * (x - baseline_embeds); pass each as embeds= to A.embedding_gradients
    ### HINT: average the gradients over the path, then multiply by (x - baseline_embeds) and sum over the last dimension
    x = A.token_embeddings(model, tokens)
    total = torch.zeros_like(x)
    for k in range(n_steps):
        alpha = (k + 0.5) / n_steps
        _, g = A.embedding_gradients(model, tokens, target_fn,
                                     embeds=baseline_embeds + alpha * (x - baseline_embeds))
        total += g / n_steps
    return ((x - baseline_embeds) * total).sum(-1)
    ### END SOLUTION


# %%
my_integrated_gradients = nb01.check_integrated_gradients(my_integrated_gradients, model)


# %% [markdown]
# ### Bonus: occlusion by hand (4 min)
#
# #### Exercise 3.3 · occlusion ⭐ 🔵🔵 · 3 min
# For every position `t >= 1`, replace the token by `replacement_id` and return
# `f(x) - f(x with token t replaced)` (`[B, T]`, position 0 scores 0).

# %%
def my_occlusion(model, tokens, target_fn, replacement_id):
    ### BEGIN SOLUTION
    ### HINT: f(x) = A.target_values(model, tokens, target_fn); edit a fresh clone of the tokens for each position
    f_x = A.target_values(model, tokens, target_fn)
    scores = torch.zeros(tokens.shape)
    for t in range(1, tokens.shape[1]):
        occluded = tokens.clone()
        occluded[:, t] = replacement_id
        scores[:, t] = f_x - A.target_values(model, occluded, target_fn)
    return scores
    ### END SOLUTION


# %%
my_occlusion = nb01.check_occlusion(my_occlusion, model)

# %% [markdown]
# ### One prompt, four methods
# Why does *"The keys on the cabinet"* continue with *" are"*, and why *" are"*
# rather than *" is"*? The library's versions of the four methods:

# %%
prompt = "The keys on the cabinet"
tokens = model.to_tokens(prompt)
labels = model.to_str_tokens(prompt)
are, is_ = model.to_single_token(" are"), model.to_single_token(" is")
targets = {"logit(' are')": A.logit_target(are), "logit(' are') - logit(' is')": A.contrastive_target(are, is_)}
methods = {
    "saliency": lambda t: A.saliency(model, tokens, t),
    "grad x input": lambda t: A.gradient_x_input(model, tokens, t),
    "integrated gradients": lambda t: A.integrated_gradients(model, tokens, t, baseline="zero", n_steps=64),
    "occlusion (<unk>)": lambda t: A.occlusion(model, tokens, t, replacement=model.tokenizer.unk_token_id),
}
single = {tname: torch.cat([m(t) for m in methods.values()]) for tname, t in targets.items()}

# %%
# NBVAL_CHECK_OUTPUT
for tname, t in targets.items():
    ig = single[tname][2:3]
    comp = A.ig_completeness(model, tokens, t, ig, baseline="zero")
    print(f"target {tname}: f(x) = {float(comp.f_input):.1f}, f(x') = {float(comp.f_baseline):.1f}; "
          f"sum of IG = {float(comp.attribution_sum):.1f} vs f(x) - f(x') = {float(comp.delta):.1f} "
          f"(relative error {float(comp.relative_error):.1%})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
for ax, (tname, scores) in zip(axes, single.items()):
    # each row scaled by its largest |score| so that methods with different units share a colour scale
    s = scores[:, 1:] / scores[:, 1:].abs().amax(-1, keepdim=True)
    plotting.heatmap(s, f"target {tname}", "input token", "method", labels[1:], list(methods),
                     cbar_label="score / max |score| of the row", center=0, annotate=True, ax=ax)
fig.suptitle(f"Attributions for {prompt!r} (BOS omitted)")
fig.tight_layout()

# %% [markdown]
# Compare the two panels: which tokens gain or lose credit when the question becomes
# "*are* rather than *is*", and do the four methods agree on the ranking? The completeness line
# above is the check to run every time you use IG: if the relative error is not small, use more
# steps. (Occlusion by `<unk>` gives every token but the last nearly the full score: bonus
# section 6 shows that this says more about `<unk>` than about the tokens.) The methods do not
# agree, and each answers its own question; bonus section 4 measures how much they disagree
# and whether they depend on the learned weights at all.

# %% [markdown]
# ## 4. Bonus: Limits: the methods disagree, and may not depend on the model (7 min)
#
# Spearman rank correlation between every pair of methods, per prompt, averaged over prompts of
# varied frames (positions 1 to the last prompt token); then the sanity check of Adebayo et al.
# (2018): replace every learned weight but the embeddings by random ones of the same scale and
# see whether the attributions change. High correlation with the randomised model means the
# method mostly describes the input, not the model.
#
# Six methods: the four above, IG from the mean token embedding, and an **erasure** that deletes
# token $t$ and reads the prediction one position earlier (`A.contrastive_erasure`: deleting
# shortens the prompt; bonus section 6 shows why shifting it right to keep the positions is worse).

# %%
unk = model.tokenizer.unk_token_id


def all_methods(model, tokens, target, target_ids, answer_pos):
    return {"saliency": A.saliency(model, tokens, target),
            "grad x input": A.gradient_x_input(model, tokens, target),
            "IG (zero)": A.integrated_gradients(model, tokens, target, baseline="zero", n_steps=64),
            "IG (mean)": A.integrated_gradients(model, tokens, target, baseline="mean", n_steps=64),
            "occlusion (<unk>)": A.occlusion(model, tokens, target, replacement=unk),
            "erasure (shift left)": A.contrastive_erasure(model, tokens, *target_ids, answer_pos)}


# %%
mixed = make_sva(model, n=24, frames_split="all", attractor="opposite", seed=5)
mixed_ids = (mixed.candidate_ids[:, 0], mixed.candidate_ids[:, 6])
mixed_target = A.contrastive_target(*mixed_ids, pos=mixed.answer_pos)
mixed_scores = all_methods(model, mixed.clean_tokens, mixed_target, mixed_ids, mixed.answer_pos)
T = mixed.clean_tokens.shape[1]
mask = (torch.arange(T)[None] >= 1) & (torch.arange(T)[None] <= mixed.answer_pos[:, None])
names, rho = A.method_agreement(mixed_scores, mask)
off = ~torch.eye(len(names), dtype=torch.bool)
print(f"mean pairwise Spearman (signed scores): {float(rho[off].mean()):.2f}, "
      f"range {float(rho[off].min()):.2f} .. {float(rho[off].max()):.2f}")
with A.randomized_weights(model, seed=0):
    random_scores = all_methods(model, mixed.clean_tokens, mixed_target, mixed_ids, mixed.answer_pos)
print(f"{'method':21s} Spearman(trained, randomised): signed   |scores|")
sanity = {}
for name in mixed_scores:
    s = float(A.spearman(mixed_scores[name], random_scores[name], mask).nanmean())
    s_abs = float(A.spearman(mixed_scores[name].abs(), random_scores[name].abs(), mask).nanmean())
    sanity[name] = (s, s_abs)
    print(f"{name:21s} {s:30.2f} {s_abs:9.2f}")

# %%
# NBVAL_CHECK_OUTPUT
# What the tables above say, at a precision that another machine's rounding cannot change: each
# Spearman above averages the ranks of 5 or 6 tokens per prompt, so a near-tie between two tokens'
# scores moves its second decimal (that cell's output is not compared by the tests).
largest = max(abs(v) for pair in sanity.values() for v in pair)
print(f"mean pairwise Spearman between methods {float(rho[off].mean()):.1f}; largest "
      f"|Spearman(trained, randomised)| of any method {largest:.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [0.85, 1]})
plotting.heatmap(rho, "Rank agreement between methods (signed scores)", "method", "method", names,
                 names, cbar_label="mean Spearman rho", center=0, annotate=True, ax=axes[0])
ax = axes[1]
xs = np.arange(len(sanity))
ax.bar(xs - 0.2, [v[0] for v in sanity.values()], 0.4, label="signed scores")
ax.bar(xs + 0.2, [v[1] for v in sanity.values()], 0.4, label="|scores|")
ax.axhline(0, color="black", lw=0.5)
ax.set_xticks(xs); ax.set_xticklabels(list(sanity), rotation=30, ha="right")
ax.set_ylabel("mean Spearman rho"); ax.set_ylim(-1, 1)
ax.set_title("Trained vs randomised weights: how similar are the attributions?")
ax.legend(fontsize=8, loc="lower left"); fig.tight_layout(w_pad=4)

# %% [markdown]
# The methods rank the tokens differently (mean pairwise rho 0.22): "which token matters" has no
# single answer; each method answers its own question (sensitivity, a first-order term, a path
# integral from a chosen baseline, the effect of one edit). Against the randomised model no
# signed correlation exceeds 0.33 in absolute value (saliency's). The one large number is
# occlusion's magnitudes, at -0.63: with random weights, occlusion with `<unk>` ranks the
# tokens' importance nearly in reverse, which is as far from reproducing the trained map as no
# correlation at all. So on these prompts every method depends on the learned weights, which is
# necessary, not sufficient, for an explanation to be about the model. None of these methods
# says *how* the model computes: the later notebooks open it up.

# %% [markdown]
# ### Bonus: layer by layer, as Adebayo et al. do it (6 min)
# The check above randomised every weight at once, and a few correlations came out *negative*
# (tokens ranked in reverse). Is that anti-correlation, or the luck of one random draw? Adebayo et
# al.'s check is **cascading**: randomise the output layer, then block 3 as well, then block 2,
# ... and watch the correlation with the trained model's attributions fall step by step
# (`A.cascading_randomization`). Then draw the all-at-once randomisation with three seeds: the
# cascade's last step randomises every layer, the same draw as `A.randomized_weights` with the
# same seed, so seed 0 repeats the table above (IG here with 16 steps instead of 64).

# %%
ig16, occ_unk = {"baseline": "zero", "n_steps": 16}, {"replacement": unk}
cascade = {name: A.cascading_randomization(model, mixed.clean_tokens, mixed_target, method, mask=mask,
                                           **kw)
           for name, method, kw in (("saliency", "saliency", {}), ("grad x input", "grad_x_input", {}),
                                    ("IG (zero, 16 steps)", "integrated_gradients", ig16),
                                    ("occlusion (<unk>)", "occlusion", occ_unk))}
steps = next(iter(cascade.values())).labels
print(f"{'randomised up to':20s}" + "".join(f"{name:>22s}" for name in cascade))
for k, label in enumerate(steps):
    print(f"{label:20s}" + "".join(f"{fixed(float(r.mean()[k]), 1, sign=True):>22s}"
                                   for r in cascade.values()))
by_seed = {name: [float(A.cascading_randomization(model, mixed.clean_tokens, mixed_target, method,
                                                  seed=sd, mask=mask, **kw).mean()[-1])
                  for sd in range(3)]
           for name, method, kw in (("IG (zero, 16 steps)", "integrated_gradients", ig16),
                                    ("occlusion (<unk>)", "occlusion", occ_unk))}
for name, vals in by_seed.items():
    print(f"{name}, every block random (last step), seeds 0-2: " + ", ".join(fixed(v, 1, sign=True) for v in vals))

# %%
# NBVAL_CHECK_OUTPUT
# The facts the tables show, at a precision another machine's rounding cannot change (each
# Spearman averages the ranks of 5 or 6 tokens per prompt: its second decimal is noise).
after_output = max(abs(float(r.mean()[1])) for r in cascade.values())
ig_flips = min(by_seed["IG (zero, 16 steps)"]) < -0.1 and max(by_seed["IG (zero, 16 steps)"]) > 0.1
occ_small = max(abs(v) for v in by_seed["occlusion (<unk>)"]) < 0.3
print(f"every method's mean Spearman once the output layer is random is below 0.5 in absolute "
      f"value: {after_output < 0.5}; at the last step IG's sign changes with the seed: {ig_flips}; "
      f"occlusion stays below 0.3 in absolute value for every seed: {occ_small}")

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.6))
for name, r in cascade.items():
    ax.plot(range(len(steps)), r.mean().numpy(), "o-", label=name)
ax.axhline(0, color="black", lw=0.5)
ax.set_xticks(range(len(steps))); ax.set_xticklabels(steps, rotation=20)
ax.set_xlabel("weights randomised (cumulatively, from the top)")
ax.set_ylabel("mean Spearman with the trained model")
ax.set_title("Cascading randomisation (Adebayo et al. 2018)")
ax.legend(fontsize=8); fig.tight_layout()

# %% [markdown]
# Every method loses most of its agreement with the trained model as soon as the unembedding is
# random: on this model an attribution to the verb's logits is mostly decided by the read-out.
# What is left is small and depends on the draw (the seed lines): IG's last step goes from +0.2
# to -0.2 across three seeds, occlusion's stays between -0.2 and 0.0. The signed negative
# correlations of the all-at-once check are the spread of a single draw over a few tokens, not a
# systematic reversal. A method that kept a high correlation all the way down would be
# describing the input, not the model.

# %% [markdown]
# ## 5. Bonus: Decodable, but is it used? Erasing subject number (18 min)
#
# A probe shows the information is *there*, not that the model *reads* it (Ravichander et al.
# 2021; Elazar et al. 2021). The causal test is to remove the information and measure the
# behaviour. Two things make such a test convincing:
# - a **metric that is not saturated**: the logit difference (section 1), not the probability
#   difference, which sits at its ceiling of 1.00 on these prompts and can barely move (to 0.94
#   in the last cell of this section, while the logit difference falls from 8.60 to 4.80);
# - a **removal that leaves nothing linear behind**: removing one probe direction may not be
#   enough when the property is spread over several directions. **Iterative nullspace projection**
#   (INLP, Ravfogel et al. 2020) trains a probe, projects its direction out, trains a new probe
#   on the projected data, and repeats, until a fresh probe is at chance. With orthonormal probe
#   directions $u_i$, $P = I - \sum_i u_i u_i^\top$ projects onto the intersection of their
#   nullspaces. Ravfogel et al. apply $x \mapsto Px$; we apply $x \mapsto \mu + P(x - \mu)$
#   ($\mu$ the mean of the fitting data), which sets the removed coordinates to their mean
#   instead of to 0: a mean-ablation of $k$ directions at once, which moves the activations less
#   far from what the next layer expects. The two differ by a constant vector, so a probe with a
#   bias reads exactly as much from one as from the other.
#
# Because the subject's number can be carried by the subject and any token after it, we erase
# at **every position** from the subject on (positions 2-5; *The* and BOS come before it and
# cannot carry it), with one eraser per position (fitted on that position's activations), on
# the prepositional frames, whose positions are aligned.

# %% [markdown]
# #### Exercise 5.1 · iterative nullspace projection ⭐⭐⭐ 🔵🔵 · 6 min
# Return an orthonormal basis `[n_iterations, d]` of the removed subspace. Centre `X`; then, each
# iteration, train `P.train_probe(Z_projected, y, standardize=False)` on the data projected onto
# the nullspace of the directions found so far, take `w = weight[1] - weight[0]`, make it
# orthogonal to the earlier directions, normalise it, and add it to the basis.

# %%
def my_inlp(X: torch.Tensor, y: torch.Tensor, n_iterations: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    ### HINT: projecting Z onto the nullspace of orthonormal rows B is Z - (Z @ B.T) @ B
    ### HINT: a probe trained on projected data can still have tiny components along old directions: remove them (Gram-Schmidt) before normalising
    Z = X - X.mean(0)
    basis = torch.zeros(0, X.shape[1])
    for _ in range(n_iterations):
        Zp = Z - (Z @ basis.T) @ basis
        probe = P.train_probe(Zp, y, standardize=False)
        w = (probe.weight[1] - probe.weight[0]).float()
        w = w - (w @ basis.T) @ basis
        basis = torch.cat([basis, (w / w.norm())[None]])
    return basis
    ### END SOLUTION


# %%
my_inlp = nb01.check_inlp(my_inlp)

# %%
# NBVAL_CHECK_OUTPUT
K = 8  # directions removed per position
hooks = {f"after L{l}": f"blocks.{l + 1}.hook_resid_pre" for l in range(model.cfg.n_layers - 1)}
sets = {}
for split, nouns, n, seed in (("train", "train", 250, 0), ("test", "heldout", 60, 1)):
    ds = [make_sva(model, n=n, frames_split="train", nouns=nouns, attractor=a, seed=seed)
          for a in ("same", "opposite")]
    ds = [d.subset([i for i in range(len(d)) if int(d.answer_pos[i]) == 5]) for d in ds]  # "The S prep the A"
    sets[split] = ds
test_tokens = torch.cat([d.clean_tokens[:, :6] for d in sets["test"]])
y_pp = {k: torch.tensor([int(p) for d in v for p in d.meta["plural"]]) for k, v in sets.items()}
print(f"{len(y_pp['train'])} training prompts, {len(y_pp['test'])} held-out-noun test prompts, "
      f"erasers at positions 2-5 (subject, preposition, 'the', attractor)")


def logit_diff_with(erasers, hook):
    """Logit difference on the test prompts with erasers {position: eraser} at `hook`."""
    vals = [sva_logit_diff(E.run_with_eraser(model, d.clean_tokens, hook, erasers) if erasers
                           else model(d.clean_tokens), d, per_example=True) for d in sets["test"]]
    return float(torch.cat(vals).mean())


erasure = {}
print(f"{'layer':>9s} | probe acc. (last pos.) | logit diff: none  1 dir@last  {K} dirs@last  "
      f"{K} dirs@every  {K} random@every")
for name, hook in hooks.items():
    acts = {k: torch.cat([P.collect_activations(model, d.clean_tokens[:, :6], hook)[hook] for d in v])
            for k, v in sets.items()}
    ers = {p: E.inlp(acts["train"][:, p], y_pp["train"], K) for p in range(2, 6)}
    one = E.inlp(acts["train"][:, 5], y_pp["train"], 1)
    rnd = {p: E.random_eraser(model.cfg.d_model, K, ers[p].mean, seed=p) for p in ers}
    before = P.train_probe(acts["train"][:, 5], y_pp["train"]).accuracy(acts["test"][:, 5], y_pp["test"])
    after = P.train_probe(ers[5](acts["train"][:, 5].double()).float(), y_pp["train"]).accuracy(
        ers[5](acts["test"][:, 5].double()).float(), y_pp["test"])
    erasure[name] = [logit_diff_with({}, hook), logit_diff_with({5: one}, hook),
                     logit_diff_with({5: ers[5]}, hook), logit_diff_with(ers, hook),
                     logit_diff_with(rnd, hook)]
    print(f"{name:>9s} | {before:9.2f} -> {after:.2f}      | " + "  ".join(f"{v:10.2f}" for v in erasure[name]))

# %%
fig, ax = plt.subplots(figsize=(9, 4))
cols = ["no erasure", "1 direction, last position", f"{K} directions, last position",
        f"{K} directions, every position", f"{K} random directions, every position"]
xs = np.arange(len(erasure))
for k, c in enumerate(cols):
    ax.bar(xs + (k - 2) * 0.16, [v[k] for v in erasure.values()], 0.16, label=c)
ax.axhline(0, color="black", lw=0.5)
ax.set_xticks(xs); ax.set_xticklabels([f"erased {n}" for n in erasure])
ax.set_ylabel("agreement logit difference\n(held-out nouns)")
ax.set_title("Erasing subject number (INLP) and the agreement it supports")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)); fig.tight_layout()

# %% [markdown]
# **What the numbers show.** With 8 directions per position a fresh probe on held-out nouns drops
# to or towards chance at the last position (0.72 → 0.49 after L0, 0.85 → 0.47 after L1,
# 1.00 → 0.59 after L2: some number is still linearly readable there on unseen nouns; the
# "before" values differ from section 2's table because these are other prompts, the
# prepositional frames only, with about twice as many for training), and erasing at every
# position drops the agreement logit difference from 8.71 to 0.93 (after L0), 0.55 (after L1) and 0.76 (after
# L2), while 8 random directions at every position leave it at 8.34 or more. So the model does
# use linearly decodable subject number. *Where* it reads it moves with depth: erasing at the
# last position alone does nothing after L0 and L1 (8.75, 8.60: the number is still on the
# subject and the tokens after it) and almost everything after L2 (1.04), once it has been moved
# to the position that predicts the verb; there even one INLP direction is enough (1.15).
#
# **Why a weaker test concludes "decodable but not used".** Mean-ablate one probe direction at
# the last position after L2 and read the probability difference. The next cell runs that
# test: the probability difference barely moves because it is saturated,
# while the logit difference shows a large drop; and the direction matters, since a probe fitted
# on standardised features (as `P.train_probe` does by default) and one fitted on the raw
# activations point in different directions, of which the model's agreement depends on one far
# more than on the other.

# %%
# NBVAL_CHECK_OUTPUT
l, hook = 3, "blocks.3.hook_resid_pre"  # residual stream after L2, last prompt position
print(f"no ablation: prob. diff {np.mean([float(ds.metric(model(ds.clean_tokens))) for ds in test_sets]):.2f}, "
      f"logit diff {np.mean([sva_logit_diff(model(ds.clean_tokens), ds) for ds in test_sets]):.2f}")
print("mean-ablating one direction after L2, at the last position:")
directions = {"a standardised probe's (the weak test)": P.train_probe(acts_train[l], y_train).direction(),
              "a raw-activation probe's": P.train_probe(acts_train[l], y_train, standardize=False).direction()}
directions.update({f"a random one (seed {s})": u for s, u in
                   enumerate(P.random_unit_vectors(model.cfg.d_model, 3, seed=0))})
for label, u in directions.items():
    value = float((acts_test[l] @ u).mean())  # mean-ablation along u
    out = [P.ablate_direction(model, ds.clean_tokens, hook, u, pos=ds.answer_pos, value=value) for ds in test_sets]
    print(f"  {label:41s} prob. diff "
          f"{np.mean([float(ds.metric(o)) for ds, o in zip(test_sets, out)]):.2f}, "
          f"logit diff {np.mean([sva_logit_diff(o, ds) for ds, o in zip(test_sets, out)]):.2f}")
u_std, u_raw = list(directions.values())[:2]  # unit vectors
print(f"cosine between the two probe directions: {float(u_std @ u_raw):.2f}")

# %% [markdown]
# (These are section 2's held-out prompts, all frames, hence 8.60 rather than the 8.71 of the
# prepositional frames above.) With the standardised probe's direction, the probability
# difference moves from 1.00 to 0.94 while the logit difference falls from 8.60 to 4.80; the
# raw-activation probe's direction, at cosine 0.78 to it, brings it to 0.97; three random
# directions leave it between 8.56 and 8.61. The weak test's conclusion comes from the
# saturated metric and the choice of direction, not from the model ignoring subject number.
#
# Two caveats: the eraser is linear, so nonlinearly encoded number could survive it; and an
# eraser moves activations off their distribution, which is why the random-subspace control of
# the same rank, around the same mean, is needed.

# %% [markdown]
# ## 6. Bonus: Attribution over a dataset, and the inputs erasure creates (6 min)
#
# With the canonical frame *"The {subject} on the {attractor}"* every token sits at the same
# position, so we can average (contrastive target: agreeing minus disagreeing form of *is/are*;
# each example's scores divided by their total absolute value). **Erasure** needs care.
# Deleting a token shortens the prompt; the library's `occlusion(..., replacement="delete")`
# keeps positions by shifting the prompt right and repeating BOS at the start, a sequence this
# model never saw. We run it next to the erasure of section 4, which keeps the input well-formed
# (delete the token and read the prediction one position earlier).

# %%
# NBVAL_CHECK_OUTPUT
canon = make_sva(model, n=50, frames_split="canonical", attractor="opposite", seed=3)
canon_ids = (canon.candidate_ids[:, 0], canon.candidate_ids[:, 6])  # is/are first in each list
contrast = A.contrastive_target(*canon_ids, pos=canon.answer_pos)
canon_scores = all_methods(model, canon.clean_tokens, contrast, canon_ids, canon.answer_pos)
canon_scores["erasure (BOS shift)"] = A.occlusion(model, canon.clean_tokens, contrast, replacement="delete")
avg = torch.stack([(s[:, 1:] / s[:, 1:].abs().sum(-1, keepdim=True)).mean(0) for s in canon_scores.values()])
positions = ["The", "<subject>", "on", "the", "<attractor>"]
print(f"{'method':21s}" + "".join(f"{p:>12s}" for p in positions))
for name, row in zip(canon_scores, avg):
    print(f"{name:21s}" + "".join(f"{v:12.2f}" for v in row))
f_x = A.target_values(model, canon.clean_tokens, contrast)
f_del = f_x[None] - canon_scores["erasure (BOS shift)"][:, 1:].T
print(f"f(x) = {float(f_x.mean()):.2f}; after a BOS-shift deletion of each position: "
      + ", ".join(f"{float(v):.2f}" for v in f_del.mean(1)))
f_unk = f_x[None] - canon_scores["occlusion (<unk>)"][:, 1:].T
print(f"f(x) = {float(f_x.mean()):.2f}; after replacing each position by <unk>:      "
      + ", ".join(f"{float(v):.2f}" for v in f_unk.mean(1)))

# %%
fig = plotting.heatmap(avg, "Mean normalised attribution, 'The {subject} on the {attractor}' (50 prompts)",
                       "input position", "method", positions, list(canon_scores),
                       cbar_label="score / sum |scores| (mean over prompts)", center=0, annotate=True,
                       figsize=(8.5, 4.2))

# %% [markdown]
# The BOS-shift erasure gives every position the same share (0.20) because the model collapses
# on a prompt that starts with two BOS tokens: whichever token is deleted, the target falls from
# 9.12 to about 0 (second-to-last line above), so every deletion looks equally important. That
# is a property of the off-distribution input, not of the tokens. Occlusion by `<unk>` is nearly
# as flat (0.22 to 0.25 on the first four positions) for the same reason: `<unk>` never occurs in
# the model's training corpus, and putting it in place of *The*, the subject, *on* or *the* drops
# the target from 9.12 to between -1.55 and -0.13 (last line); only in place of the attractor,
# the last token, does it leave 5.69. Deleting and reading one position earlier separates the
# tokens: removing *on* barely matters (0.01), each of the other tokens about equally (0.22 to
# 0.26). (Deleting the attractor, the last token, leaves a prompt ending in *the*, where no verb
# is expected, so that score says little about the attractor itself.) Every erasure or occlusion
# method asks the model about an input it may never have seen; check what the model does on it.

# %% [markdown]
# ### Bonus: why *The* gets so much credit (3 min)
# Every faithful-looking method above credits *The* at least as much as the subject (IG most of
# all). Is that an artefact? Ask the model: change the first word and read the agreement.

# %%
# NBVAL_CHECK_OUTPUT
are, is_ = model.to_single_token(" are"), model.to_single_token(" is")
for text in ["The keys on the cabinet", "The key on the cabinets", "keys on the cabinet",
             "key on the cabinets", "His keys on the cabinet", "His key on the cabinets"]:
    lg = model(model.to_tokens(text))[0, -1]
    print(f"{text!r:28s} logit(' are') - logit(' is') = {fixed(float(lg[are] - lg[is_]), 1, sign=True)}")

# %% [markdown]
# It is not an artefact. With *The* the model agrees with the subject (+10 for *keys*, -8 for
# *key*); without it, it has no preference at all; after *His* it no longer tracks the subject,
# and on *His key on the cabinets* it follows the attractor. Every agreement sentence of its
# training corpus starts with *The* followed by the subject, and the model learned exactly that
# template: it finds the subject as the word after a sentence-initial *The*. The attributions to
# *The* are faithful; it is the model that is narrow (notebook 06 finds a feature for a plural
# subject *after "The"*).

# %% [markdown]
# ## 7. Bonus: IG depends on its baseline and its number of steps (7 min)
# The baseline defines "absence of input". Zero vectors, the mean embedding and the `<unk>`
# embedding are all defensible, and completeness holds for each in the limit of many steps, yet
# they explain different differences $f(x) - f(x')$. And completeness only holds up to the
# integration error: on a trained model the path can be sharp.

# %%
# NBVAL_CHECK_OUTPUT
baselines = {"zero": "zero", "mean": "mean", "<unk>": unk}
ig_by_base = {k: A.integrated_gradients(model, mixed.clean_tokens, mixed_target, baseline=b, n_steps=64)
              for k, b in baselines.items()}
_, rho_base = A.method_agreement(ig_by_base, mask)
for k, b in baselines.items():
    comp = A.ig_completeness(model, mixed.clean_tokens, mixed_target, ig_by_base[k], baseline=b)
    print(f"baseline {k:6s}: mean f(x') = {float(comp.f_baseline.mean()):6.2f}, "
          f"median completeness error {float(comp.relative_error.median()):.4f}, "
          f"max {float(comp.relative_error.max()):.4f}")
print("Spearman between IG baselines: zero-mean {:.2f}, zero-unk {:.2f}, mean-unk {:.2f}".format(
    float(rho_base[0, 1]), float(rho_base[0, 2]), float(rho_base[1, 2])))
# is the <unk> baseline's disagreement an integration error? Redo it with 4x the steps
ig_unk_256 = A.integrated_gradients(model, mixed.clean_tokens, mixed_target, baseline=unk, n_steps=256)
err_256 = float(A.ig_completeness(model, mixed.clean_tokens, mixed_target, ig_unk_256,
                                  baseline=unk).relative_error.median())
rho_256 = float(A.method_agreement({"zero": ig_by_base["zero"], "<unk>": ig_unk_256}, mask)[1][0, 1])
print(f"<unk> baseline, 256 steps: median completeness error "
      f"{'<1e-3' if err_256 < 1e-3 else f'{err_256:.4f}'}, Spearman with zero {rho_256:.2f}")
steps = [16, 64, 256]
sva_metric = A.metric_target(mixed)  # probability difference: a sharper function than a logit difference
step_err = {"logit diff, zero baseline": [], "prob. diff, zero baseline": []}
for n in steps:
    for key, tgt in zip(step_err, (mixed_target, sva_metric)):
        ig = A.integrated_gradients(model, mixed.clean_tokens, tgt, baseline="zero", n_steps=n)
        step_err[key].append(float(A.ig_completeness(model, mixed.clean_tokens, tgt, ig).relative_error.median()))
for key, errs in step_err.items():
    # below 1e-4 the error is float noise that varies with the CPU's thread count
    print(f"median completeness error, {key}: "
          + ", ".join(f"{n}: {e:.1e}" if e >= 1e-4 else f"{n}: <1e-4" for n, e in zip(steps, errs)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
plotting.heatmap(rho_base, "IG with different baselines (mean Spearman)", "baseline", "baseline",
                 list(baselines), list(baselines), cbar_label="mean Spearman rho", center=0,
                 annotate=True, ax=axes[0])
for key, errs in step_err.items():
    axes[1].loglog(steps, [max(e, 1e-4) for e in errs], "o-", label=key)  # below 1e-4: float noise
for n, errs_at_n in zip(steps, zip(*step_err.values())):
    if min(errs_at_n) < 1e-4:  # plotted at 1e-4: say so on the figure
        axes[1].annotate("below 1e-4\n(float noise)", (n, 1e-4), textcoords="offset points",
                         xytext=(-10, -2), ha="right", va="top", fontsize=8)
axes[1].set_ylim(2e-5, 2)
axes[1].set_xticks(steps); axes[1].set_xticklabels([str(n) for n in steps]); axes[1].minorticks_off()
axes[1].axhline(0.01, color="grey", ls=":", label="1%")
axes[1].set_xlabel("integration steps"); axes[1].set_ylabel("median |sum IG - (f(x) - f(x'))| / |f(x) - f(x')|")
axes[1].set_title("IG completeness error vs number of steps"); axes[1].legend(fontsize=8)
fig.tight_layout(w_pad=3)

# %% [markdown]
# The zero and mean baselines rank tokens alike (0.85) while the `<unk>` baseline ranks them
# almost independently (-0.01 with both). That is not the `<unk>` baseline's larger integration
# error at 64 steps (median 0.0666): with 256 steps its completeness error is below 1e-3 and the
# correlation with the zero baseline is still -0.01. The choice of "absence" is part of the
# question IG answers (and `<unk>`, which this model never saw in training, is an absence it
# reacts to strongly, as the occlusion results of section 6 showed). The probability difference
# needs far more steps than the logit difference for the same completeness error (16 steps:
# 7.8e-01 vs 8.1e-02).

# %% [markdown]
# ## Summary
#
# - **Behaviour** says *what* the model does on chosen inputs, never *how*; read a probability
#   difference together with the mass it is taken from, and prefer an unsaturated metric.
# - **Probes** show what is linearly decodable; the control task labels the word *at the probed
#   position*, and selectivity guards against memorisation.
# - **Input attributions** answer "which tokens matter for this output"; contrastive targets make
#   the question sharper, but the methods disagree with each other, IG depends on its baseline
#   and its step count, and erasure-style methods run the model on inputs it may never have seen
#   (bonus sections 6 and 7).
# - Only an **intervention** shows whether the model uses what a probe finds, and a weak test (a
#   saturated metric, one arbitrarily chosen direction) can mislead.
# - None of these methods looks at the *mechanism*: which heads move which information where. The
#   next notebooks do: context mixing (02), then circuits (03, 04, 05).
#
# **References.** Linzen et al. 2016; Hanna et al. 2023; Hewitt & Liang 2019; Elazar et al. 2021;
# Ravichander et al. 2021; Ravfogel et al. 2020; Simonyan et al. 2014; Shrikumar et al. 2016;
# Sundararajan et al. 2017; Li et al. 2016; Yin & Neubig 2022; Adebayo et al. 2018.

# %% [markdown]
# ## 8. Bonus: Now on GPT-2 small (1 min)
# The same measurements on GPT-2 small: agreement and Greater-Than behaviour, a subject-number
# probe with its control task, and input attributions on agreement prompts, printed next to the
# published figures for GPT-2 small (its probability difference on Greater-Than, 0.817 in Hanna
# et al. 2023, and on agreement, 0.351 in the EACL 2024 tutorial's slides). It needs the Hugging Face
# hub (Colab has it); offline this cell prints one line and skips.

# %%
from tutorial_utils.course.large_model import run_section
RUN_LARGE = None  # None: run when the Hugging Face hub answers; True: always; False: skip
large = run_section("01", run=RUN_LARGE)
