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
# **Estimated time: 30 minutes.** Before opening a Transformer up, we apply the methods people
# already use on *any* model: test its behaviour, probe its hidden states, attribute its output to
# its input tokens. Each answers a real question, and each stops short of telling us *how* the
# model computes.
#
# **Learning objectives**
# - measure behaviour with minimal pairs (subject-verb agreement with attractors, Greater-Than);
# - train linear probes per layer, report **selectivity** against a control task, and test whether
#   a decodable direction is actually **used** by ablating it;
# - compute saliency, gradient x input, integrated gradients (with a completeness check) and
#   occlusion, and their **contrastive** versions ("why A and not B");
# - quantify how much the methods disagree, how IG depends on its baseline, and whether the
#   attributions survive a weight-randomisation sanity check.
#
# **Model.** This notebook runs the course's shipped offline model `tiny-gpt2-tasks` (4 layers,
# trained in this repository on the course tasks) everywhere, Colab included; the saved outputs
# below come from it, and every number quoted in the text is printed by a cell. To run it on GPT-2 small instead (online only), set the
# environment variable `TUTORIAL_MODEL=gpt2` before starting: a banner then reminds you that
# the text describes the shipped model.

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
import matplotlib.pyplot as plt
import numpy as np
import torch

from tutorial_utils import input_attribution as A
from tutorial_utils import plotting
from tutorial_utils import probing as P
from tutorial_utils.exercise_checks import nb01
from tutorial_utils.models import load_course_model, seed_everything
from tutorial_utils.tasks import accuracy, make_greater_than, make_sva

seed_everything(0)
torch.set_grad_enabled(False)  # the attribution functions turn gradients on where they need them

# %%
# NBVAL_IGNORE_OUTPUT
model = load_course_model("tiny-gpt2-tasks")
N = 100  # examples per condition; raise it on a GPU

# %% [markdown]
# ## 1. Behavioural evaluation with minimal pairs (5 min)
#
# A minimal pair changes one thing and asks whether the prediction follows. For agreement, *"The
# keys on the cabinet"* should continue with a plural verb; an **attractor** (a noun of the other
# number between subject and verb, here *cabinet*) is the classic trap (Linzen et al. 2016). The
# metric is the probability mass on the agreeing verb forms minus that on the disagreeing ones;
# accuracy is the share of prompts where it is positive.

# %%
# NBVAL_CHECK_OUTPUT
conditions = [("no attractor", "none", "train"), ("same-number attractor", "same", "train"),
              ("opposite attractor", "opposite", "train"),
              ("opposite attractor, new frames", "opposite", "heldout")]
sva_acc, sva_pd = {}, {}
print(f"{'condition':34s} accuracy  prob. diff")
for label, attractor, frames in conditions:
    ds = make_sva(model, n=N, frames_split=frames, attractor=attractor, seed=0)
    logits = model(ds.clean_tokens)
    sva_acc[label], sva_pd[label] = accuracy(logits, ds), float(ds.metric(logits))
    print(f"{label:34s} {sva_acc[label]:8.2f}  {sva_pd[label]:10.2f}")

# %% [markdown]
# Greater-Than (Hanna et al. 2023): *"The war lasted from the year 1741 to the year 17"* should
# continue with a two-digit year above 41. We split accuracy by the start year and also look at the
# whole predicted distribution over end years.

# %%
# NBVAL_CHECK_OUTPUT
gt = make_greater_than(model, n=400, frames_split="all", seed=0)
gt_logits = model(gt.clean_tokens)
correct = (gt.metric(gt_logits, per_example=True) > 0).float()
yy = torch.tensor(gt.meta["yy"])
decades = list(range(0, 100, 10))
gt_by_decade = [float(correct[(yy >= d) & (yy < d + 10)].mean()) for d in decades]
print(f"Greater-Than accuracy overall: {float(correct.mean()):.2f}")
print("by start year:", "  ".join(f"{d:02d}-{d + 9:02d}: {a:.2f}" for d, a in zip(decades, gt_by_decade)))

# p(end year | start year) on one frame, one prompt per start year
starts = list(range(2, 99))
prompts = [f"The war lasted from the year 17{s:02d} to the year 17" for s in starts]
year_ids = gt.candidate_ids[0]  # the 100 tokens "00".."99"
probs = model(model.to_tokens(prompts))[:, -1].softmax(-1)[:, year_ids]

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ax = axes[0]
ax.barh(list(sva_acc), list(sva_acc.values()), color="tab:blue")
ax.axvline(0.5, color="grey", ls="--", label="chance")
ax.set_xlim(0, 1); ax.set_xlabel("accuracy"); ax.set_title("Agreement (SVA) accuracy"); ax.legend()
ax = axes[1]
ax.plot([d + 5 for d in decades], gt_by_decade, "o-")
ax.set_ylim(0, 1.05); ax.set_xlabel("start year (two last digits, binned by decade)")
ax.set_ylabel("accuracy"); ax.set_title("Greater-Than accuracy by start year")
ax = axes[2]
im = ax.imshow(probs.numpy(), aspect="auto", origin="lower", extent=[-0.5, 99.5, 1.5, 98.5], cmap="viridis")
ax.plot([0, 99], [0, 99], color="white", lw=0.8, ls="--")
ax.set_xlabel("predicted end year YY"); ax.set_ylabel("start year YY")
ax.set_title("p(end year) for 'from the year 17YY to the year 17'")
fig.colorbar(im, ax=ax, label="probability")
fig.tight_layout()


# %% [markdown]
# **What behaviour can and cannot tell us.** These tables say *whether* the model agrees and
# compares years, and on which inputs it fails. Here the offline model is at 1.00 on agreement with attractors in training frames and
# drops only on frames it never saw (0.94), and Greater-Than is at 1.00 for every start decade. The
# tables cannot say *how*: a model that memorised templates and one that tracks the subject's number can
# give the same accuracy on the prompts we happened to try. For that we must look inside.

# %% [markdown]
# ## 2. Probing: decodable is not the same as used (8 min)
#
# A **probe** is a small classifier trained to read a property from a hidden state. We read the
# *number of the subject* from the residual stream at the last prompt position (where the verb is
# predicted), at every layer. Attractors of both numbers are mixed in, so the last token's own
# number says nothing about the subject's.
#
# Two controls keep the probe honest:
# - **disjoint nouns**: train on one set of nouns, test on nouns the probe never saw;
# - a **control task** (Hewitt & Liang 2019): give every word type a *random* label and train the
#   same probe on it. It can only succeed by memorising word identity. **Selectivity** = task
#   accuracy − control accuracy, on the same split (a split by example, where the same nouns occur
#   on both sides, so memorising is possible).

# %%
def subject_number_data(nouns, n, seed):
    """Residual stream at the last position [layers+1, 2n, d], subject number, subject word."""
    feats, labels, words, dsets = [], [], [], []
    for attractor in ("same", "opposite"):
        ds = make_sva(model, n=n, frames_split="train", nouns=nouns, attractor=attractor, seed=seed)
        feats.append(P.residual_stream(model, ds.clean_tokens, pos=ds.answer_pos))
        labels += [int(p) for p in ds.meta["plural"]]
        words += ds.meta["subject"]
        dsets.append(ds)
    return torch.cat(feats, 1), torch.tensor(labels), words, dsets

acts_train, y_train, words_train, _ = subject_number_data("train", N, seed=0)
acts_test, y_test, words_test, test_sets = subject_number_data("heldout", N // 2, seed=1)
layer_names = ["embed"] + [f"after L{l}" for l in range(model.cfg.n_layers)]
print(f"{acts_train.shape[1]} training prompts ({len(set(words_train))} subject words), "
      f"{acts_test.shape[1]} test prompts ({len(set(words_test))} unseen subject words)")

# %%
# NBVAL_CHECK_OUTPUT
# (a) disjoint nouns: train on the training nouns, test on held-out nouns
L1 = acts_train.shape[0]
heldout_acc = torch.tensor([P.train_probe(acts_train[l], y_train).accuracy(acts_test[l], y_test)
                            for l in range(L1)])
# (b) Hewitt & Liang: task vs control task on a random split of the training prompts
control = P.control_labels(words_train, y_train, seed=0)
tr, te = P.random_split(len(y_train), test_frac=0.3, seed=0)
res = P.probe_layers(acts_train, y_train, tr, te, control=control)
print(f"{'layer':>9s}  held-out nouns  task (split)  control  selectivity")
for l, name in enumerate(layer_names):
    print(f"{name:>9s}  {heldout_acc[l]:14.2f}  {res.test_accuracy[l]:12.2f}  "
          f"{res.control_test_accuracy[l]:7.2f}  {res.selectivity[l]:11.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
x = range(L1)
ax.plot(x, heldout_acc, "o-", label="subject number, held-out nouns")
ax.plot(x, res.test_accuracy, "s-", label="subject number, random split")
ax.plot(x, res.control_test_accuracy, "^--", label="control task (random label per word)")
ax.axhline(0.5, color="grey", ls=":", label="chance")
ax.set_xticks(list(x)); ax.set_xticklabels(layer_names)
ax.set_ylim(0.3, 1.05); ax.set_xlabel("residual stream (last prompt position)")
ax.set_ylabel("probe test accuracy"); ax.set_title("Linear probes for subject number, by layer")
ax.legend(fontsize=8); fig.tight_layout()


# %% [markdown]
# **Exercise 2.1** (medium, important · 5 min). Train a binary logistic-regression probe by
# gradient descent: minimise `mean BCE(sigmoid(X w + b), y) + weight_decay / 2 · ||w||²` and return
# `(w, b)`. The check compares your loss with the exact optimum on fresh synthetic data.

# %%
def train_binary_probe(X: torch.Tensor, y: torch.Tensor, weight_decay: float):
    ### BEGIN SOLUTION
    ### HINT: start from w = 0, b = 0 with requires_grad, use torch.optim.Adam (lr 0.05) or LBFGS
    ### HINT: torch.nn.functional.binary_cross_entropy_with_logits takes the logits X @ w + b
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
nb01.check_train_probe(train_binary_probe)


# %% [markdown]
# **Is the decodable direction used?** A probe shows the information is *there*, not that the
# model *reads* it (Ravichander et al. 2021; Elazar et al. 2021). A causal test: at each layer, set
# the component of the residual stream along the probe's direction to its average over the data
# (mean-ablation along one direction) and measure agreement on the held-out-noun prompts. A random
# direction is the control.

# %%
# NBVAL_CHECK_OUTPUT
def hook_for(l):
    L = model.cfg.n_layers
    return f"blocks.{l}.hook_resid_pre" if l < L else f"blocks.{L - 1}.hook_resid_post"

def agreement_after_ablation(direction, l):
    """Mean prob. diff and accuracy on the held-out-noun prompts after mean-ablating `direction`."""
    pds, accs = [], []
    for k, ds in enumerate(test_sets):
        feats = acts_test[l][k * len(ds):(k + 1) * len(ds)]
        mean_proj = float((acts_test[l] @ (direction / direction.norm())).mean())
        logits = P.ablate_direction(model, ds.clean_tokens, hook_for(l), direction,
                                    pos=ds.answer_pos, value=mean_proj)
        pds.append(float(ds.metric(logits))); accs.append(accuracy(logits, ds))
    return np.mean(pds), np.mean(accs)

base_pd = np.mean([float(ds.metric(model(ds.clean_tokens))) for ds in test_sets])
base_acc = np.mean([accuracy(model(ds.clean_tokens), ds) for ds in test_sets])
randoms = P.random_unit_vectors(model.cfg.d_model, 5, seed=0)
ablation = {"probe": [], "random": []}
print(f"no ablation: prob. diff {base_pd:.2f}, accuracy {base_acc:.2f}")
print(f"{'layer':>9s}  probe dir: prob. diff / acc   random dirs: prob. diff / acc")
for l in range(1, L1):
    u = P.train_probe(acts_train[l], y_train).direction()
    ablation["probe"].append(agreement_after_ablation(u, l))
    rnd = np.array([agreement_after_ablation(r, l) for r in randoms])
    ablation["random"].append(rnd.mean(0))
    print(f"{layer_names[l]:>9s}  {ablation['probe'][-1][0]:9.2f} / {ablation['probe'][-1][1]:.2f}"
          f"        {rnd[:, 0].mean():9.2f} / {rnd[:, 1].mean():.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
xs = range(1, L1)
ax.axhline(base_pd, color="black", ls="--", label="no ablation")
ax.plot(xs, [p for p, _ in ablation["probe"]], "o-", label="probe direction mean-ablated")
ax.plot(xs, [p for p, _ in ablation["random"]], "s-", label="random direction (mean of 5)")
ax.set_xticks(list(xs)); ax.set_xticklabels(layer_names[1:])
ax.set_xlabel("where the direction is ablated (last prompt position)")
ax.set_ylabel("agreement prob. diff (held-out nouns)")
ax.set_title("Causal check: ablating the probe direction"); ax.legend(fontsize=8); fig.tight_layout()

# %% [markdown]
# **Reading the two tables together.** The probe table says where subject number is
# linearly decodable on unseen nouns, and how much of that a memorising probe (the control task)
# could also reach. The ablation table says whether removing the probe's direction hurts agreement
# *more than removing a random direction* at the same place. Only that comparison speaks to use:
# a direction can be perfectly decodable and still be redundant (the information is also stored
# elsewhere) or ignored by later layers.
#
# Here subject number is decodable on unseen nouns from "after L2" on (accuracy 1.00, selectivity
# 0.43 there), yet mean-ablating the probe direction lowers the agreement prob. diff only from 1.00
# to 0.94 (after L2) and 0.99 (after L3), with accuracy still 1.00: decodable, but removing this one
# direction does not remove the behaviour.

# %% [markdown]
# ## 3. Input attribution (10 min)
#
# Attribution methods score each input token for one output. We attribute at the level of token
# embeddings $x_t$ (through a hook on `hook_embed`), for a scalar **target** $f$ of the logits:
# - **saliency**: $\lVert \partial f / \partial x_t \rVert_2$ (how sensitive, not in which direction);
# - **gradient x input**: $\sum_d \frac{\partial f}{\partial x_{t,d}} x_{t,d}$ (a first-order Taylor term);
# - **integrated gradients** (Sundararajan et al. 2017): $(x_t - x'_t)\cdot\int_0^1 \nabla_{x_t} f(x' + \alpha (x - x'))\,d\alpha$
#   from a baseline $x'$; **completeness**: the scores sum to $f(x) - f(x')$;
# - **occlusion / erasure**: $f(x) - f(x \text{ with token } t \text{ replaced or deleted})$.
#
# **Contrastive** targets ask "why A and not B" (Yin & Neubig 2022): $f = \text{logit}(A) - \text{logit}(B)$.
# With GPT-2 one asks why *"Can you stop the dog from"* continues with *barking* and not *crying*;
# with the offline model we ask a question from its own training distribution: why
# *"The keys on the cabinet"* continues with *" are"* and not *" is"*.

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
    print(f"target {tname}: f(x) = {float(comp.f_input):.2f}, f(x') = {float(comp.f_baseline):.2f}; "
          f"sum of IG = {float(comp.attribution_sum):.3f} vs f(x) - f(x') = {float(comp.delta):.3f} "
          f"(relative error {float(comp.relative_error):.4f})")

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
# "*are* rather than *is*", and do the four methods agree on the ranking? The completeness line above is the check to run every time you use IG: if the relative error is
# not small, use more steps.

# %% [markdown]
# **On average over a dataset.** One example can mislead. With the canonical frame *"The
# {subject} on the {attractor}"* every token sits at the same position, so we can average. We use
# the contrastive target (agreeing minus disagreeing form of *is/are*) and normalise each example's
# scores by their total absolute value. (Erasure deletes a token, shifts the prompt right
# and repeats BOS at the start: in the table below it gives every position the same average
# share, 0.20, so on this frame it does not separate the tokens at all.)

# %%
# NBVAL_CHECK_OUTPUT
canon = make_sva(model, n=50, frames_split="canonical", attractor="opposite", seed=3)
agree, disagree = canon.candidate_ids[:, 0], canon.candidate_ids[:, 6]  # is/are first in each list
contrast = A.contrastive_target(agree, disagree, pos=canon.answer_pos)
unk = model.tokenizer.unk_token_id
def all_methods(model, tokens, target):
    return {"saliency": A.saliency(model, tokens, target),
            "grad x input": A.gradient_x_input(model, tokens, target),
            "IG (zero)": A.integrated_gradients(model, tokens, target, baseline="zero", n_steps=64),
            "IG (mean)": A.integrated_gradients(model, tokens, target, baseline="mean", n_steps=64),
            "occlusion (<unk>)": A.occlusion(model, tokens, target, replacement=unk),
            "erasure (delete)": A.occlusion(model, tokens, target, replacement="delete")}
canon_scores = all_methods(model, canon.clean_tokens, contrast)
avg = torch.stack([(s[:, 1:] / s[:, 1:].abs().sum(-1, keepdim=True)).mean(0) for s in canon_scores.values()])
positions = ["The", "<subject>", "on", "the", "<attractor>"]
print(f"{'method':18s}" + "".join(f"{p:>12s}" for p in positions))
for name, row in zip(canon_scores, avg):
    print(f"{name:18s}" + "".join(f"{v:12.2f}" for v in row))

# %%
fig = plotting.heatmap(avg, "Mean normalised attribution, 'The {subject} on the {attractor}' (50 prompts)",
                       "input position", "method", positions, list(canon_scores),
                       cbar_label="score / sum |scores| (mean over prompts)", center=0, annotate=True,
                       figsize=(8, 4))


# %% [markdown]
# ### Exercises: implement the methods (10 min)
#
# Use `A.embedding_gradients(model, tokens, target_fn, embeds=None)`, which returns `(f(x) [B],
# df/dx [B, T, d])` (with `embeds` overriding the token embeddings), `A.token_embeddings(model,
# tokens)` and `A.target_values(model, tokens, target_fn, embeds=...)`.
#
# **Exercise 3.1** (easy · 3 min). Gradient x input, summed over the embedding dimension: `[B, T]`.

# %%
def my_gradient_x_input(model, tokens, target_fn):
    ### BEGIN SOLUTION
    ### HINT: x = A.token_embeddings(model, tokens); then _, g = A.embedding_gradients(model, tokens, target_fn)
    x = A.token_embeddings(model, tokens)
    _, g = A.embedding_gradients(model, tokens, target_fn, embeds=x)
    return (g * x).sum(-1)
    ### END SOLUTION


# %%
nb01.check_gradient_x_input(my_gradient_x_input, model)


# %% [markdown]
# **Exercise 3.2** (medium, important · 5 min). Integrated gradients with the midpoint Riemann
# sum: $\alpha_k = (k + 1/2)/n$, each with weight $1/n$; return $\sum_d (x - x')\cdot\overline{g}$, `[B, T]`.

# %%
def my_integrated_gradients(model, tokens, target_fn, baseline_embeds, n_steps):
    ### BEGIN SOLUTION
    ### HINT: loop over k, call A.embedding_gradients(..., embeds=baseline_embeds + alpha * (x - baseline_embeds))
    ### HINT: average the gradients, multiply by (x - baseline_embeds), sum over the last dimension
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
nb01.check_integrated_gradients(my_integrated_gradients, model)


# %% [markdown]
# **Exercise 3.3** (easy · 3 min). Occlusion: for every position `t >= 1`, replace the token by
# `replacement_id` and return `f(x) - f(x with token t replaced)` (`[B, T]`, position 0 scores 0).

# %%
def my_occlusion(model, tokens, target_fn, replacement_id):
    ### BEGIN SOLUTION
    ### HINT: f(x) = A.target_values(model, tokens, target_fn); edit a clone of tokens for each position
    f_x = A.target_values(model, tokens, target_fn)
    scores = torch.zeros(tokens.shape)
    for t in range(1, tokens.shape[1]):
        occluded = tokens.clone()
        occluded[:, t] = replacement_id
        scores[:, t] = f_x - A.target_values(model, occluded, target_fn)
    return scores
    ### END SOLUTION


# %%
nb01.check_occlusion(my_occlusion, model)

# %% [markdown]
# ## 4. Limits (7 min)
#
# ### 4.1 The methods disagree
# Spearman rank correlation between every pair of methods, per prompt, averaged over prompts of
# varied frames (positions 1 to the last prompt token).

# %%
# NBVAL_CHECK_OUTPUT
mixed = make_sva(model, n=24, frames_split="all", attractor="opposite", seed=5)
mixed_target = A.contrastive_target(mixed.candidate_ids[:, 0], mixed.candidate_ids[:, 6], pos=mixed.answer_pos)
mixed_scores = all_methods(model, mixed.clean_tokens, mixed_target)
T = mixed.clean_tokens.shape[1]
mask = (torch.arange(T)[None] >= 1) & (torch.arange(T)[None] <= mixed.answer_pos[:, None])
names, rho = A.method_agreement(mixed_scores, mask)
names_abs, rho_abs = A.method_agreement(mixed_scores, mask, absolute=True)
off = ~torch.eye(len(names), dtype=torch.bool)
print(f"mean pairwise Spearman (signed scores): {float(rho[off].mean()):.2f}, "
      f"range {float(rho[off].min()):.2f} .. {float(rho[off].max()):.2f}")
print(f"mean pairwise Spearman (|scores|):      {float(rho_abs[off].mean()):.2f}, "
      f"range {float(rho_abs[off].min()):.2f} .. {float(rho_abs[off].max()):.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 5))
plotting.heatmap(rho, "Rank agreement, signed scores", "method", "method", names, names,
                 cbar_label="mean Spearman rho", center=0, annotate=True, ax=axes[0])
plotting.heatmap(rho_abs, "Rank agreement, |scores|", "method", "method", names, names,
                 cbar_label="mean Spearman rho", center=0, annotate=True, ax=axes[1])
fig.tight_layout()

# %% [markdown]
# ### 4.2 Integrated gradients depends on its baseline, and on its number of steps
# The baseline defines "absence of input". Zero vectors, the mean embedding and the `<unk>`
# embedding are all defensible, and completeness holds for each in the limit of many steps, yet they explain different
# differences $f(x) - f(x')$. And completeness only holds up to the integration error: on a trained
# model the path can be sharp.

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
    axes[1].loglog(steps, errs, "o-", label=key)
axes[1].axhline(0.01, color="grey", ls=":", label="1%")
axes[1].set_xlabel("integration steps"); axes[1].set_ylabel("median |sum IG - (f(x) - f(x'))| / |f(x) - f(x')|")
axes[1].set_title("IG completeness error vs number of steps"); axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ### 4.3 Sanity check: randomise the weights (Adebayo et al. 2018)
# If an explanation reflects what the model learned, it should change when the learned weights are
# replaced by random ones of the same scale (here every weight but the token and position
# embeddings, so the inputs are the same). We measure the rank correlation between the trained and
# the randomised model's attributions of the same prompts: high correlation means the method mostly
# reflects the input, not the model.

# %%
# NBVAL_CHECK_OUTPUT
with A.randomized_weights(model, seed=0):
    random_scores = all_methods(model, mixed.clean_tokens, mixed_target)
print(f"{'method':18s} Spearman(trained, randomised): signed   |scores|")
sanity = {}
for name in mixed_scores:
    s = float(A.spearman(mixed_scores[name], random_scores[name], mask).nanmean())
    s_abs = float(A.spearman(mixed_scores[name].abs(), random_scores[name].abs(), mask).nanmean())
    sanity[name] = (s, s_abs)
    print(f"{name:18s} {s:33.2f} {s_abs:9.2f}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
xs = np.arange(len(sanity))
ax.bar(xs - 0.2, [v[0] for v in sanity.values()], 0.4, label="signed scores")
ax.bar(xs + 0.2, [v[1] for v in sanity.values()], 0.4, label="|scores|")
ax.axhline(0, color="black", lw=0.5)
ax.set_xticks(xs); ax.set_xticklabels(list(sanity), rotation=30, ha="right")
ax.set_ylabel("mean Spearman rho"); ax.set_ylim(-1, 1)
ax.set_title("Trained vs randomised weights: how similar are the attributions?")
ax.legend(fontsize=8); fig.tight_layout()

# %% [markdown]
# A method whose attributions barely change when the learned weights are destroyed is
# mostly describing the input (e.g. the size of the embeddings that gradient x input multiplies
# by), not the model's computation; a low correlation is necessary, not sufficient, for an
# explanation to be about the model. Here no method's correlation with its randomised-weights
# version exceeds 0.38 in absolute value (table above): on these prompts every method changes
# substantially when the weights are randomised.

# %% [markdown]
# ## Summary
#
# - **Behaviour** says *what* the model does on chosen inputs, never *how*.
# - **Probes** show what is linearly decodable; the control task and selectivity guard against
#   memorisation, and only an intervention shows whether the model uses the direction.
# - **Input attributions** answer "which tokens matter for this output"; contrastive targets make
#   the question sharper. But the methods disagree with each other, IG depends on its baseline and
#   its step count, and a sanity check is needed to know whether a method reflects the model at all.
# - None of these methods looks at the *mechanism*: which heads move which information where. The
#   next notebooks do: context mixing (02), then circuits (03, 04).
#
# **References.** Linzen et al. 2016; Hanna et al. 2023; Hewitt & Liang 2019; Elazar et al. 2021;
# Ravichander et al. 2021; Simonyan et al. 2014; Shrikumar et al. 2016; Sundararajan et al. 2017;
# Li et al. 2016; Yin & Neubig 2022; Adebayo et al. 2018.
