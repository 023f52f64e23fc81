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
# # 04 · Composition: how heads work together (induction and IOI)
#
# **Estimated time: 30 minutes core + 38 minutes bonus.**
#
# A circuit is more than a list of important heads: a later head *reads* what an earlier head
# wrote, through its query, key or value. Two of the field's best-known circuits, in our model:
# induction (a previous-token head feeding an induction head's keys) and indirect object
# identification (IOI: in GPT-2 small, heads that attend to the repeated name feed the queries of
# the heads that copy the answer, the name movers). Our model has both cores.
#
# **Learning objectives**
# - read Q-, K- and V-composition from the weights, and know what such a score can and cannot say;
# - prove a composition with path patching into one receiver input (query, key or value) alone;
# - recognise a copying OV circuit and measure it (copying score);
# - look for the IOI circuit class by class (attention, OV copying, direct logit attribution),
#   and measure the faithfulness of what is found.
#
# Labels: each exercise carries a difficulty (⭐ easy · ⭐⭐ medium · ⭐⭐⭐ hard) and an importance
# (🔵 optional · 🔵🔵 useful · 🔵🔵🔵 core), as in every notebook of the course.
#
# **Model.** Notebooks 00-03 and 05 dissect `tiny-gpt2-tasks` (with MLPs); this one dissects
# `tiny-attn-tasks` (4 layers x 8 heads, **attention-only**), and both name heads `aL.hH`, so
# `a3.h0` here is not the `a3.h0` of the other notebooks. It needs its own model because
# `tiny-gpt2-tasks` solves IOI without composing heads (a layer-0 head averages the names and its
# MLPs tell the name seen once from the one seen twice), while an attention-only model cannot
# count that way and has to compose heads across layers, as GPT-2 small does (its card,
# `data/models/tiny-attn-tasks/README.md`). **Every number printed below comes from this model.**
#
# References: Elhage et al. (2021) *A Mathematical Framework for Transformer Circuits*; Olsson et
# al. (2022) *In-context Learning and Induction Heads*; Wang et al. (2023) *Interpretability in
# the Wild* (IOI); Goldowsky-Dill et al. (2023) *Localizing Model Behavior with Path Patching*.

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
import torch

from tutorial_utils import composition as C
from tutorial_utils import path_patching as PP
from tutorial_utils.course.grading import report
from tutorial_utils.dla import direct_logit_attribution, head_value_bias_outputs, logit_diff_attribution
from tutorial_utils.course.checks import nb04
from tutorial_utils.course.printing import fixed, named_entries
from tutorial_utils.faithfulness import circuit_faithfulness, completeness_check, minimality_scores
from tutorial_utils.models import load_course_model, load_model, seed_everything
from tutorial_utils.names import head_name, parse_head
from tutorial_utils.plotting import attention_heatmap, bar, heatmap
from tutorial_utils.tasks import make_ioi
from tutorial_utils.tasks.ioi import valid_names

seed_everything(0)
_ = torch.set_grad_enabled(False)  # every intervention here is forward-only

# %%
# NBVAL_IGNORE_OUTPUT
model = load_course_model("tiny-attn-tasks", hooks=True)  # hooks=True: per-head outputs and q/k/v inputs
cfg = model.cfg
print(f"{cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, d_head {cfg.d_head}")
GRID = dict(xlabel="head", ylabel="layer", xticklabels=[str(h) for h in range(cfg.n_heads)],
            yticklabels=[str(l) for l in range(cfg.n_layers)])  # axis labels of every head grid

# %% [markdown]
# ## 1. Induction: two heads, one circuit (13 min)
#
# On a random sequence of tokens repeated twice, the second copy is predictable from the first:
# after token `A`, predict whatever followed `A` last time. Olsson et al. (2022) showed that two
# heads do this together. A **previous-token head** (an early layer) copies each token's
# predecessor into its position; an **induction head** (a later layer) then looks, from the
# current token `A`, for a position *whose predecessor was `A`*: its **key** must carry the
# previous-token head's output. That is K-composition.

# %%
# NBVAL_CHECK_OUTPUT
SEQ_LEN = 20
clean_rep, corrupted_rep = C.induction_patching_data(model, seq_len=SEQ_LEN, batch=16, seed=0)
logprobs = model(clean_rep).log_softmax(-1)
nll = -logprobs[:, :-1].gather(-1, clean_rep[:, 1:, None])[..., 0]
print(f"loss on the first copy {nll[:, 1:SEQ_LEN].mean():.2f}, on the second copy "
      f"{nll[:, SEQ_LEN + 1:].mean():.2f} (nats per token)")

# %%
# NBVAL_CHECK_OUTPUT
# the classes: induction heads (score >= 0.5, layer >= 1), previous-token heads below them (>= 0.4)
classes = C.induction_classes(model, clean_rep, SEQ_LEN, prev_threshold=0.4,
                              induction_threshold=0.5)
prev_scores, ind_scores = classes.prev_token_scores, classes.induction_scores
PREV_HEADS, IND_HEADS = classes.prev_heads, classes.induction_heads
PREV_HEAD = max(PREV_HEADS, key=lambda h: prev_scores[parse_head(h)])
IND_HEAD = max(IND_HEADS, key=lambda h: ind_scores[parse_head(h)])
print("previous-token heads:", {h: round(float(prev_scores[parse_head(h)]), 2) for h in PREV_HEADS})
print("induction heads     :", {h: round(float(ind_scores[parse_head(h)]), 2) for h in IND_HEADS})

# %% [markdown]
# ### Bonus: the two patterns (3 min)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
heatmap(prev_scores, title="Previous-token score (attention to position - 1)",
        ax=axes[0], cmap="Blues", cbar_label="score", **GRID)
heatmap(ind_scores, title="Induction score (attention to the token after the last copy)",
        ax=axes[1], cmap="Blues", cbar_label="score", **GRID)
plt.show()

# %%
_, cache = model.run_with_cache(clean_rep[:1])

labels = model.to_str_tokens(clean_rep[0])
fig, axes = plt.subplots(1, 2, figsize=(16, 7.5))  # wide enough for 41 token labels
for ax, name in zip(axes, (PREV_HEAD, IND_HEAD)):  # the strongest of each class
    l, h = parse_head(name)
    attention_heatmap(cache[f"blocks.{l}.attn.hook_pattern"][0, h], labels,
                      title=f"{name} on a repeated random sequence", ax=ax)
plt.show()

# %% [markdown]
# The previous-token head is a stripe just below the diagonal; the induction head is a stripe
# `SEQ_LEN - 1` positions below it, in the second copy only: from each token it attends to the
# token that *followed* the same token in the first copy.
#
# ### 1.1 Bonus: Composition read from the weights (7 min)
# Elhage et al. measure how much head B can read what head A writes by the Frobenius norm of the
# product of their matrices, divided by both matrices' norms. With row vectors (`x @ W`), A
# writes `x @ W_OV` (`W_OV = W_V W_O`) and B scores `x_q @ W_QK @ x_k^T` (`W_QK = W_Q W_K^T`), so
# A's output can enter B's **query** (`W_OV^A @ W_QK^B`), its **key** (`W_QK^B @ (W_OV^A)^T`)
# or its **value** (`W_OV^A @ W_OV^B`); the package's version is `tutorial_utils/composition.py`.
#
# #### Exercise 1.1 · Q-, K- and V-composition scores ⭐⭐ 🔵🔵 · 3 min
# Write `composition_score(W_later, W_OV, kind)`: `W_later` is B's `W_QK` for `kind` "q" or "k"
# and B's `W_OV` for "v"; `W_OV` is A's. Return `||product||_F / (||W_later||_F ||W_OV||_F)`.

# %%
def composition_score(W_later: torch.Tensor, W_OV: torch.Tensor, kind: str) -> torch.Tensor:
    ### BEGIN SOLUTION
    if kind == "k":
        product = W_later @ W_OV.T  # keys: x_q @ W_QK @ (x @ W_OV)^T
    else:
        product = W_OV @ W_later  # query or value: (x @ W_OV) @ W_QK or @ W_OV^B
    return product.norm() / (W_later.norm() * W_OV.norm())
    ### END SOLUTION
    ### HINT: follow A's output x @ W_OV into the formula of B's score or value; the key side sits transposed on the right of W_QK.
    ### HINT: `.norm()` of a matrix is its Frobenius norm.


# %%
composition_score = nb04.check_composition_score(composition_score)

# %%
# NBVAL_CHECK_OUTPUT
lp, hp = parse_head(PREV_HEAD)
li, hi = parse_head(IND_HEAD)
qk_ind, ov_ind, ov_prev = (C.qk_matrix(model, li, hi), C.ov_matrix(model, li, hi),
                           C.ov_matrix(model, lp, hp))
for kind, later in (("q", qk_ind), ("k", qk_ind), ("v", ov_ind)):
    print(f"{kind.upper()}-composition {PREV_HEAD} -> {IND_HEAD}: "
          f"{float(composition_score(later, ov_prev, kind)):.3f} "
          f"(random matrices of these shapes: {C.composition_baseline(model, kind):.3f})")
K_COMP = C.composition_scores(model, "k")
baseline = C.composition_baseline(model, "k")
print(f"largest K-composition into {IND_HEAD} from any earlier head: "
      f"{C.top_heads(K_COMP[:, :, li, hi][:li], 1)[0]} ({K_COMP[:, :, li, hi][:li].max():.3f})")
pairs = K_COMP[~K_COMP.isnan()]  # every (earlier head, later head) pair of the model
print(f"K-composition pairs above the random baseline: {int((pairs > baseline).sum())} of "
      f"{pairs.numel()}")

# %% [markdown]
# For the strongest previous-token -> induction pair only the K-score clears the random baseline
# (Q and V stay below it): the weights point at K-composition. But a weight-based score says
# what *could* compose on any input, not what the model *uses* on this task; and an
# attention-only model's heads all read the same residual stream, so K-scores above the
# baseline are common (last line), and another sender outscores the previous-token head. Path
# patching answers the causal question.
#
# ### 1.2 Composition proved by path patching
# Corrupt the first copy (other random tokens, so nothing predicts the second copy), and patch
# the previous-token head's output **into one input of the induction head only**: its query,
# its key or its value. The residual stream the induction head reads is a sum of every earlier
# head's output, so this single term can be swapped while every other path stays clean.
#
# #### Exercise 1.2 · one path-patching step into a key ⭐⭐ 🔵🔵🔵 · 3 min
# `k_input` is the induction head's key input, per head (`hook_k_input`, `[batch, pos, head,
# d_model]`). Replace the sender's term `out_current` by `out_source` for head `head` only.

# %%
def patch_key_input(k_input, out_current, out_source, head: int):
    ### BEGIN SOLUTION
    new = k_input.clone()
    new[:, :, head] = new[:, :, head] + (out_source - out_current)
    return new
    ### END SOLUTION
    ### HINT: the input is a sum of senders' outputs: subtract this sender's current output and add its source output.
    ### HINT: clone first; index the head axis (the third one).


# %%
patch_key_input = nb04.check_patch_key_input(patch_key_input)

# %% [markdown]
# Now use it in a hook. The model spreads the induction role over four heads, so we patch the
# whole class: the previous-token heads' summed output, swapped into every induction head's key. Cache the senders' per-head outputs (`hook_result`) on the clean and the
# corrupted run, then compare your number with the library's edge patching.

# %%
# NBVAL_CHECK_OUTPUT
targets = clean_rep[:, SEQ_LEN + 2:]


def second_copy_logprob(logits):
    """Mean log-probability of the second copy's tokens (the induction metric)."""
    lp_ = logits[:, SEQ_LEN + 1:-1].log_softmax(-1)
    return float(lp_.gather(-1, targets[..., None]).mean())


res_names = sorted({f"blocks.{parse_head(h)[0]}.attn.hook_result" for h in PREV_HEADS})
_, c_clean = model.run_with_cache(clean_rep, names_filter=res_names)
_, c_corr = model.run_with_cache(corrupted_rep, names_filter=res_names)


def summed_output(cache):
    return sum(cache[f"blocks.{l}.attn.hook_result"][:, :, h]
               for l, h in map(parse_head, PREV_HEADS))


out_clean, out_corr = summed_output(c_clean), summed_output(c_corr)
hooks = []
for layer in sorted({parse_head(h)[0] for h in IND_HEADS}):
    heads = [parse_head(h)[1] for h in IND_HEADS if parse_head(h)[0] == layer]

    def patch_keys(k, hook, heads=heads):
        for head in heads:
            k = patch_key_input(k, out_clean, out_corr, head)
        return k

    hooks.append((f"blocks.{layer}.hook_k_input", patch_keys))
m_clean = second_copy_logprob(model(clean_rep))
m_corr = second_copy_logprob(model(corrupted_rep))
m_patched = second_copy_logprob(model.run_with_hooks(clean_rep, fwd_hooks=hooks))
print(f"mean log-prob of the second copy: clean {m_clean:.2f}, corrupted {m_corr:.2f}, "
      f"previous-token heads -> induction heads' keys patched {m_patched:.2f}")
print(f"share of the induction effect removed: {(m_clean - m_patched) / (m_clean - m_corr):.2f}")

# %%
# NBVAL_CHECK_OUTPUT
evidence = C.induction_composition_patching(model, PREV_HEADS, IND_HEADS, seq_len=SEQ_LEN)
for kind, eff in evidence.effects.items():
    print(f"previous-token heads -> induction heads' {kind}: removes {eff:.2f} of the effect")
one_edge = C.induction_composition_patching(model, [PREV_HEAD], [IND_HEAD], seq_len=SEQ_LEN)
print(f"one edge only, {PREV_HEAD} -> {IND_HEAD}.k: removes {one_edge.effects['k']:.2f}")

# %% [markdown]
# Only the **key** path carries the effect: K-composition, shown causally. It removes 0.41, not
# all: at this threshold the previous-token class is one head, `a2.h3`, and the role is spread
# over more (`prev_threshold=0.3` adds `a2.h7`; the model card reports 0.63 for the two). One
# edge alone removes almost nothing: four induction heads share the work, so patch a *class*.
#
# ### 1.3 Bonus: What the induction head moves: a copying OV circuit (6 min)
# Once the induction head attends to the right token, its OV circuit must write *that token*
# into the stream. The **copying score** of a head: the fraction of tokens `t` whose own logit
# is among the top `k` of the *whole vocabulary* under `W_E[t] W_OV W_U`. This course uses the
# strict `k = 1`; Wang et al. use `k = 5` and feed the name's residual after GPT-2's first MLP
# instead of the bare embedding (this model has no MLPs).
#
# #### Exercise 1.3 · copying score ⭐⭐ 🔵🔵 · 3 min
# `emb [n, d]` holds the tokens' embeddings, `ids [n]` their ids. A token is copied when fewer
# than `k` tokens have a larger logit than its own.

# %%
def copying_score(emb, W_OV, W_U, ids, k: int = 1) -> float:
    ### BEGIN SOLUTION
    logits = emb @ W_OV @ W_U  # [n, d_vocab]
    beaten_by = (logits > logits.gather(1, ids[:, None])).sum(-1)  # tokens above the own logit
    return float((beaten_by < k).float().mean())
    ### END SOLUTION
    ### HINT: logits = emb @ W_OV @ W_U has one row per token; pick each row's own logit with gather.
    ### HINT: count the tokens whose logit is *strictly* larger than the own one; copied when that count < k.


# %%
copying_score = nb04.check_copying_score(copying_score)

# %%
# NBVAL_CHECK_OUTPUT
all_ids = torch.arange(2, cfg.d_vocab)  # every token but BOS and <unk>
emb = model.W_E[all_ids]
ov_ind_head = C.ov_matrix(model, li, hi)
class_ov = sum(C.ov_matrix(model, *parse_head(h)) for h in IND_HEADS)
for k in (1, 5):
    print(f"copying score (top-{k}) over all {len(all_ids)} tokens: induction head {IND_HEAD} "
          f"{copying_score(emb, ov_ind_head, model.W_U, all_ids, k):.2f}, the {len(IND_HEADS)} "
          f"induction heads' OV summed {copying_score(emb, class_ov, model.W_U, all_ids, k):.2f}, "
          f"previous-token head {PREV_HEAD} {copying_score(emb, ov_prev, model.W_U, all_ids, k):.2f}")


def own_rank(W_OV):
    """Median rank of each token's own logit under emb @ W_OV @ W_U (0 = top-1)."""
    logits = emb @ W_OV @ model.W_U
    return int((logits > logits.gather(1, all_ids[:, None])).sum(1).median())


print(f"median rank of a token's own logit among {cfg.d_vocab} (random OV: about "
      f"{cfg.d_vocab // 2}): {IND_HEAD} {own_rank(ov_ind_head)}, induction heads "
      f"summed {own_rank(class_ov)}, {PREV_HEAD} {own_rank(ov_prev)}")

# %% [markdown]
# Top-1 among 1,819 logits is strict: a head's OV circuit has rank `d_head` (16), which does not
# forbid top-1 copying but crowds every token into 16 dimensions, where its own logit rarely
# beats all its neighbours'. Top-5 is looser, and the *rank* of the own logit (last line) finer: the induction
# heads put it far above a random circuit's middle rank (the previous-token head near the
# bottom), so they copy, weakly per head, better summed. The test also reads only `W_E[t]`,
# while at the attended position the residual holds layers 0-2's outputs too.
#
# ## 2. Indirect object identification: a circuit of classes? (11 min)
#
# "When Mary and John went to the store, John gave a drink to" -> " Mary". Wang et al. (2023)
# found in GPT-2 small a circuit of head *classes*: **name movers** (late heads that attend from
# the final position to the indirect object and copy it), **S-inhibition heads** (that tell the
# name movers, through their *queries*, not to attend to the repeated subject) and
# **duplicate-token and induction heads** (that detect that the subject occurs twice). We look
# for each class in our model, from the logits backwards. The corruption replaces the second
# subject mention by a third name, so no name is repeated: an ABC prompt. (Wang et al.'s ABC
# distribution draws all three names afresh; we keep IO and S1, so the runs differ *only* in
# the repetition, at a price met in 2.2.)

# %%
# NBVAL_CHECK_OUTPUT
ioi = make_ioi(model, n=24, frames_split="canonical", seed=0)
ld_clean = float(ioi.metric(model(ioi.clean_tokens)))
ld_corr = float(ioi.metric(model(ioi.corrupted_tokens)))
print("clean    :", ioi.clean_prompts[0], "->", ioi.answers[0])
print("corrupted:", ioi.corrupted_prompts[0])
print(f"logit difference IO - S: clean {ld_clean:.2f}, corrupted {ld_corr:.2f}")

# %% [markdown]
# ### 2.1 The heads that decide: direct effect, attention, copying
# Path patching each head into the logits alone gives its *direct* effect: the share of the
# clean - corrupted logit difference lost when only that head's direct path sees the corrupted
# run. If this model has name movers, they are among these heads.

# %%
# NBVAL_CHECK_OUTPUT
direct = PP.path_patching(model, ioi, senders=None, receivers=["logits"])
direct_grid = C.head_grid(model, direct)  # [layer, head] share of clean - corrupted
DIRECT_HEADS = [h for h in C.top_heads(direct_grid, 3) if direct_grid[parse_head(h)] >= 0.1]
NEGATIVE = [h for h in C.top_heads(direct_grid, 2, largest=False)
            if direct_grid[parse_head(h)] <= -0.1]
print("heads with a direct effect >= 0.10:",
      {h: round(float(direct_grid[parse_head(h)]), 2) for h in DIRECT_HEADS})
print("negative heads (direct effect <= -0.10):",
      {h: round(float(direct_grid[parse_head(h)]), 2) for h in NEGATIVE})

# %%
pos = C.ioi_positions(ioi)
att_io = C.attention_between(model, ioi.clean_tokens, pos["END"], pos["IO"])
att_s2 = C.attention_between(model, ioi.clean_tokens, pos["END"], pos["S2"])
name_ids = torch.tensor([model.to_single_token(f" {n}") for n in valid_names(model)])
copy_names = C.copying_scores(model, name_ids)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
heatmap(direct_grid, title="Direct effect on the logit difference", ax=axes[0], center=0,
        cbar_label="share of clean - corrupted", **GRID)
heatmap(att_io - att_s2, title="Attention END -> IO minus END -> S2", ax=axes[1], center=0,
        cbar_label="attention difference", **GRID)
heatmap(copy_names, title=f"Copying score over {len(name_ids)} names (max {copy_names.max():.2f} "
        f"of 1)", ax=axes[2], cmap="Blues", cbar_label="fraction copied (top-1 of vocabulary)",
        **GRID)
plt.show()

# %% [markdown]
# ### Bonus: direct logit attribution by hand (4 min)
# A third view needs no corruption at all: **direct logit attribution** (DLA). The final
# residual stream at END is a sum of every head's output; the final LayerNorm divides it by one
# scale per prompt, then `W_U` reads it. So each head's *direct* share of `logit(IO) -
# logit(S)` is its output at END, divided by that scale, projected on `W_U[:, IO] - W_U[:, S]`.
# A head's output is $A(xW_V + b_V)W_O$ ($x$ the LayerNorm's output), value bias included: the
# attention weights sum to 1, so every head adds its constant $b_V W_O$ (with the LayerNorm
# bias's share $\beta W_V W_O$). Compatibility mode folded these constants into the layer's
# output bias, so `hook_result` lacks them; the cell below adds each head's back
# (`head_value_bias_outputs`, computed from the unfolded weights), as the library does.
#
# #### Exercise 2.1 · direct logit attribution of each head ⭐⭐ 🔵🔵🔵 · 3 min
# `result [B, H, d]`: each head's output at END (one layer); `scale [B, 1]`: the final
# LayerNorm's scale; `io_ids`, `s_ids [B]`. Return `[H]`: the mean over prompts of each head's DLA.

# %%
def head_dla(result, scale, W_U, io_ids, s_ids):
    ### BEGIN SOLUTION
    direction = (W_U[:, io_ids] - W_U[:, s_ids]).T  # [B, d]: one direction per prompt
    normalised = result / scale[:, :, None]  # what W_U sees of each head's output
    return (normalised * direction[:, None]).sum(-1).mean(0)
    ### END SOLUTION
    ### HINT: the logits read the *normalised* stream: x / scale @ W_U (the LayerNorm's weight is folded into W_U).
    ### HINT: broadcast the per-prompt direction over the head axis, dot over d_model, then average over prompts.


# %%
head_dla = nb04.check_head_dla(head_dla)

# %% [markdown]
# ### The candidates side by side
# Direct effect, DLA (yours, checked against `tutorial_utils.dla`), attention and copying:

# %%
# NBVAL_CHECK_OUTPUT
anti_names = C.copying_scores(model, name_ids, negative=True)  # top-1 of -W_E W_OV W_U
# attention in the corrupted run, to the same positions (S2's position now holds the third name)
att_io_c = C.attention_between(model, ioi.corrupted_tokens, pos["END"], pos["IO"])
att_s2_c = C.attention_between(model, ioi.corrupted_tokens, pos["END"], pos["S2"])
# your DLA on the clean run, every layer, checked against the library's (tutorial_utils.dla)
_, cache_ioi = model.run_with_cache(ioi.clean_tokens)
b, end = torch.arange(len(ioi)), pos["END"]
io_ids, s_ids = ioi.candidate_ids[:, 0], ioi.candidate_ids[:, 1]
scale = cache_ioi["ln_final.hook_scale"][b, end]  # [batch, 1]
value_bias = head_value_bias_outputs(model)  # [L, H, d]: each head's b_V W_O, folded into b_O
dla = torch.stack([head_dla(cache_ioi[f"blocks.{l}.attn.hook_result"][b, end] + value_bias[l],
                            scale, model.W_U, io_ids, s_ids)
                   for l in range(cfg.n_layers)])  # [L, H]
res = direct_logit_attribution(model, ioi.clean_tokens, end, ioi.candidate_ids[:, :2],
                               cache=cache_ioi)
per_component = logit_diff_attribution(res, io_ids, s_ids).mean(1)  # [n_components]
lib_grid = torch.tensor([[float(per_component[res.labels.index(head_name(l, h))])
                          for h in range(cfg.n_heads)] for l in range(cfg.n_layers)])
print(f"your DLA against tutorial_utils.dla: max difference {(dla - lib_grid).abs().max():.3f}")
TO_IO = [h for h in C.top_heads(att_io, 3) if att_io[parse_head(h)] >= 0.3]
for h in dict.fromkeys(DIRECT_HEADS + NEGATIVE + TO_IO):  # each head once, in this order
    lh = parse_head(h)
    print(f"{h}: direct effect {direct_grid[lh]:+.2f}, DLA {dla[lh]:+.2f}; attention END->IO "
          f"{att_io[lh]:.2f} (corrupted {att_io_c[lh]:.2f}), END->S2 {att_s2[lh]:.2f} (corrupted "
          f"{att_s2_c[lh]:.2f}); copying {copy_names[lh]:.2f}, anti-copying {anti_names[lh]:.2f}")

# %% [markdown]
# A name mover is identified two ways at once: its **attention** (from END to the indirect
# object, not to the subject) and its **OV circuit** (it copies whatever name it attends to).
# The head with the largest direct effect (first line) passes both tests: it attends from END to
# IO, almost never to the second mention of the subject (S2), and its OV circuit copies about two
# names in three (top-1 among every token of the vocabulary; our strict test). **It is a name
# mover.** The next two heads do the opposite: they attend from END to S2, and their OV circuits,
# negated, copy a share of the names (anti-copying): they push the subject's logit *down*, so
# their DLA is positive too. Wang et al. call heads that attend to S2 at END **S-inhibition
# heads**; in GPT-2 their job is to tell the name movers, through their queries, not to attend
# to S. Do ours?

# %%
lh_of = parse_head
NAME_MOVERS = [h for h in DIRECT_HEADS if att_io[lh_of(h)] > att_s2[lh_of(h)]
               and copy_names[lh_of(h)] > anti_names[lh_of(h)]]
S_INHIBITION = [h for h in DIRECT_HEADS if att_s2[lh_of(h)] > att_io[lh_of(h)]]
print("name movers (attend END -> IO, copy):", NAME_MOVERS)
print("S-inhibition candidates (attend END -> S2):", S_INHIBITION)

# %% [markdown]
# ### 2.2 What feeds the name mover? Q-composition
# A head's behaviour depends on its **query** (what END asks for), its **keys** (what each
# position offers) and its **values** (what it moves). Path patch every earlier head into the
# name mover's query, keys and values separately.
#
# The library call below does this for every sender at once. Written out for one sender and
# the query, it is the step you wrote for a key in Exercise 1.2, on another hook
# (`hook_q_input`) and another position (END).

# %%
# NBVAL_CHECK_OUTPUT
def into(receivers):
    """Normalised effect of each head patched into the given receiver inputs, as [L, H]."""
    return C.head_grid(model, PP.path_patching(model, ioi, senders=None, receivers=receivers))


by_input = {kind: into([f"{h}.{kind}" for h in NAME_MOVERS]) for kind in ("q", "k", "v")}
for kind, grid in by_input.items():  # the two largest |effects|, if above 0.02 (below: noise order)
    top = C.top_heads(grid.abs(), 2)
    print(f"into the name movers' {kind}: " + named_entries((h, grid[parse_head(h)]) for h in top))

# %%
# one colour scale for the three panels, so that equal colours mean equal effects
vmax = max(float(g.abs().max()) for g in by_input.values())
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, (kind, grid) in zip(axes, by_input.items()):
    heatmap(grid, title=f"Each head -> the name movers' {kind} (shared scale)", ax=ax,
            center=0, cbar_label="share of clean - corrupted", **GRID)
    ax.images[0].set_clim(-vmax, vmax)
plt.show()

# %% [markdown]
# On one scale, the **query** panel lights up: the two S-inhibition candidates of 2.1 feed the
# name mover's query, while its keys and values get almost nothing that differs between the
# runs. The name mover attends to IO *because* of what these heads write at END: Q-composition,
# Wang et al.'s S-inhibition -> name-mover edge, shown causally. (The corruption changes only
# S2, so the name mover's keys, IO and S1, are the same in both runs: a blind spot of this
# corruption for K-composition, not evidence against it.)

# %%
q_scores = {head_name(l, h): float(by_input["q"][l, h])
            for l in range(cfg.n_layers) for h in range(cfg.n_heads)}
QUERY_SOURCES = sorted(h for h, x in q_scores.items() if abs(x) >= 0.1)  # |effect| >= 0.10
print("heads feeding the name movers' queries:", QUERY_SOURCES,
      "= the S-inhibition candidates" if set(QUERY_SOURCES) <= set(S_INHIBITION) else "")
into_s_inh_v = into([f"{h}.v" for h in S_INHIBITION])
VALUE_SOURCES = [h for h in C.top_heads(into_s_inh_v.abs(), 2)
                 if abs(into_s_inh_v[parse_head(h)]) >= 0.1]
print("heads feeding the S-inhibition heads' values:",
      {h: round(float(into_s_inh_v[parse_head(h)]), 2) for h in VALUE_SOURCES})

# %% [markdown]
# ### 2.3 Bonus: What the S-inhibition heads move, and how they find S (5 min)
# They move S2's representation to END; it comes from an earlier head (printed above). Where
# does that head attend from a name, S2 say? And is there a head that notices the repetition
# (S2 attending back to S1, Wang et al.'s duplicate-token heads)?

# %%
# NBVAL_CHECK_OUTPUT
att_s2_s2 = C.attention_between(model, ioi.clean_tokens, pos["S2"], pos["S2"])
att_s2_s1 = C.attention_between(model, ioi.clean_tokens, pos["S2"], pos["S1"])
for h in VALUE_SOURCES:
    lh = parse_head(h)
    print(f"{h} at S2: attention to itself {att_s2_s2[lh]:.2f}, to S1 {att_s2_s1[lh]:.2f}")
dup = C.top_heads(att_s2_s1, 1)[0]
print(f"the head attending most from S2 to S1 (a duplicate-token pattern): {dup} "
      f"{att_s2_s1[parse_head(dup)]:.2f}, direct effect {direct_grid[parse_head(dup)]:+.2f}")

# %% [markdown]
# The value source attends from a name to that name itself: it re-writes the token as a richer
# "extended embedding", the role GPT-2's first MLP plays for its name movers (Wang et al. 2023).
# A duplicate-token pattern exists, but it carries nothing to the logits, and the S-inhibition
# heads attend to S2's *position* as much in the corrupted run, where it holds a name that is
# not repeated (2.1: 0.86 and 0.89 clean, 0.85 and 0.88 corrupted). So they find the subject by
# its place in the sentence, not by its repetition. Is that "the most recent name"? A
# hand-written test: put a third name after the subject, as some training sentences did.

# %%
# NBVAL_CHECK_OUTPUT
probe = ["When Anna and Tom went to the store, Tom called Jack and sent a drink to",
         "When Maria and Steve went to the store, Steve saw Fred and gave a key to"]
_, probe_cache = model.run_with_cache(model.to_tokens(probe))
assert len(set(map(len, map(model.to_str_tokens, probe)))) == 1  # same length: no padding
for i, text in enumerate(probe):
    toks = model.to_str_tokens(text)  # BOS first, as in the forward pass
    top = model.to_str_tokens(model(model.to_tokens(text))[0, -1].argmax())
    print(f"{text!r} -> {top[0]!r}")
    for h in S_INHIBITION + NAME_MOVERS:
        l, hh = parse_head(h)
        pat = probe_cache[f"blocks.{l}.attn.hook_pattern"][i, hh, -1]  # from END
        j = pat.topk(2).indices.tolist()
        print(f"  {h} from END: " + ", ".join(f"{toks[k]!r} {pat[k]:.2f}" for k in j))

# %% [markdown]
# The S-inhibition heads still attend mostly to the subject, not to the most recent name: they
# read the sentence's structure (the subject of the second clause), which the training
# sentences with a third name forced. In the second prompt the third name draws 0.28 and 0.16 of
# their attention (against 0.51 and 0.59 for the subject), and the name mover no longer attends to IO (its top positions are
# not names); the answer survives there through the S-inhibition heads' own push on S (their
# DLA in 2.1): the chain seen weakening on a harder input. GPT-2 has a further step this model
# skips: duplicate-token and induction heads that *detect* the repetition and feed the
# S-inhibition heads.

# %% [markdown]
# ## 3. The whole circuit, and how faithful it is (6 min)
# `iterative_path_patching` automates the walk we just did by hand: from the logits it keeps
# every edge whose patching moves the logit difference by at least `threshold` of the gap, then
# examines what feeds the nodes it kept.

# %%
# NBVAL_CHECK_OUTPUT
kept, steps = PP.iterative_path_patching(model, ioi, threshold=0.1, max_nodes=16)
for (s, r), x in sorted(kept, key=lambda t: -abs(t[1])):
    print(f"{s:>6} -> {r:<9} {x:+.2f}")
circuit_nodes = sorted({s for (s, _), _ in kept} | {r.rsplit(".", 1)[0] for (_, r), _ in kept
                                                     if r != "logits"})
print("nodes:", circuit_nodes)

# %% [markdown]
# Besides the head -> head edges, the walk keeps edges from the embeddings into `a0.h0` (its
# value and its query) and into an S-inhibition head's value: the value source reads the names
# themselves.
#
# #### Exercise 3.1 · faithfulness ⭐ 🔵🔵 · 2 min
# Run the circuit alone (every edge outside it carries its value from the corrupted prompt) and
# compare its metric `F(C)` with the full model's `F(M)` and the fully corrupted run's `F(∅)`:
# `(F(C) - F(∅)) / (F(M) - F(∅))`. (Wang et al. compare `F(C)` with `F(M)` directly: their `F(∅)`
# is about 0, ours is not.)

# %%
def faithfulness(m_circuit: float, m_full: float, m_corrupted: float) -> float:
    ### BEGIN SOLUTION
    return (m_circuit - m_corrupted) / (m_full - m_corrupted)
    ### END SOLUTION
    ### HINT: measure both the circuit and the full model from the corrupted baseline.


# %%
# NBVAL_CHECK_OUTPUT
fr = circuit_faithfulness(model, ioi, [e for e, _ in kept])
faithfulness = nb04.check_faithfulness(faithfulness, fr.metric_circuit, fr.metric_clean,
                                      fr.metric_empty, fr.faithfulness)
print(f"edge circuit of {len(kept)} edges: logit difference {fr.metric_circuit:.2f} of "
      f"{fr.metric_clean:.2f} (corrupted {fr.metric_empty:.2f}); faithfulness {fr.faithfulness:.2f} "
      f"(unnormalised F(C) / F(M): {fr.metric_circuit / fr.metric_clean:.2f})")

# %% [markdown]
# The circuit reproduces about three fifths of the clean - corrupted gap: the name mover, the
# S-inhibition heads and their value source are the core of the mechanism, not all of it (lower
# the threshold to see more, e.g. the card's weaker name mover `a2.h4`).
#
# ## 4. Bonus: completeness and minimality (4 min)
# Faithfulness is one number: a circuit can reach it while leaving out components that back
# each other up or whose effects cancel (Wang et al.'s backup and negative name movers). Wang et
# al. add two tests: **completeness** (removing the same subset from the circuit and from the
# full model should hurt both alike) and **minimality** (every node should matter: removing it
# from the circuit should cost something).

# %%
# NBVAL_CHECK_OUTPUT
node_circuit = circuit_nodes  # the nodes of section 3's edges, "embed" included
heads_only = [n for n in node_circuit if n.startswith("a")]
subsets = [[]] + [[h] for h in heads_only] + [heads_only[1:]]  # K = {}, each head, a pair
comp = completeness_check(model, ioi, node_circuit, subsets)
mini = minimality_scores(model, ioi, node_circuit)
print("completeness (logit difference; clean - corrupted gap "
      f"{fr.metric_clean - fr.metric_empty:.2f}):")
print(f"  {'K removed':<18} {'F(C minus K)':>12} {'F(M minus K)':>12} {'|difference|':>12}")
for k, fc, fm, inc in zip(comp.subsets, comp.metric_circuit_minus_k, comp.metric_model_minus_k,
                          comp.incompleteness):
    print(f"  {', '.join(k) or 'nothing':<18} {fc:>+12.2f} {fm:>+12.2f} {inc:>12.2f}")
print("minimality (drop in the circuit's metric when one node is removed, K = {}):")
for n, v in sorted(mini.items(), key=lambda t: -abs(t[1])):
    print(f"  {n:>6} {v:+.2f}")

# %% [markdown]
# Reading the table: with nothing removed, the difference is the faithfulness gap of the *node*
# circuit (it keeps every edge between its nodes, so it scores above the edge circuit of
# section 3: 5.33 against 4.53). Removing any one head costs the circuit more than the full
# model: outside the circuit, other heads (the small cells of the direct-effect grid in 2.1)
# partly make up for it, most for the S-inhibition head `a1.h5` and the name mover. Those
# differences, up to a quarter of the clean - corrupted gap, say the circuit is the core of the
# mechanism but not all of it, as its faithfulness did. Removing the name mover and both
# S-inhibition heads brings circuit and model alike to the corrupted run (-0.69 and -0.76,
# against -0.68): nothing outside the circuit replaces the three.
# Minimality holds in its simplest form: removing any node from the circuit costs a large part
# of the gap. (Wang et al. search, for each node v, for a subset K that makes v matter most,
# `|F(C \ (K ∪ {v})) - F(C \ K)|`; we show K = {} only, which already suffices here.)
#
# ## 5. Bonus: Other corruptions, and the automatic circuit (6 min)
# A corruption decides what path patching can see: ours changes only S2, so the name mover's
# keys (IO, S1) are the same in both runs and K-composition into it cannot show. Wang et al.'s
# ABC distribution replaces all three names; a third choice replaces only IO, so the answer
# itself moves. Same prompts, same heads, three corruptions:

# %%
# NBVAL_CHECK_OUTPUT
nm, nm_lh = NAME_MOVERS[0], parse_head(NAME_MOVERS[0])
for corruption in ("s2", "abc", "io"):
    ds_c = make_ioi(model, n=24, frames_split="canonical", seed=0, corruption=corruption)
    gap = float(ds_c.metric(model(ds_c.clean_tokens)) - ds_c.metric(model(ds_c.corrupted_tokens)))
    d = C.head_grid(model, PP.path_patching(model, ds_c, senders=None, receivers=["logits"]))
    q, k = (C.head_grid(model, PP.path_patching(model, ds_c, senders=None,
                                                receivers=[f"{nm}.{kind}"])) for kind in "qk")
    top = lambda g: named_entries((h, g[parse_head(h)]) for h in C.top_heads(g.abs(), 2))
    print(f"{corruption:>3}: gap {gap:5.2f}; direct effect {nm} {fixed(d[nm_lh], sign=True)}, "
          f"{' '.join(f'{h} {fixed(d[parse_head(h)], sign=True)}' for h in S_INHIBITION)}; "
          f"into {nm}.q: {top(q)}; into {nm}.k: {top(k)}")

# %% [markdown]
# Under the ABC distribution the same heads carry more (the name mover and the S-inhibition
# heads' query edges), and a **key** edge appears: the layer-0 head `a0.h0`, whose
# self-attention re-writes each name (section 2.3), feeds the name mover's keys. The name mover finds
# names through that representation: K-composition our S2-only corruption could not see,
# because it left the keys alone. Replacing only IO leaves the S-inhibition heads nothing to
# report (S is the same in both runs: their effects are 0), and the name mover carries most of
# the gap by itself (direct effect 0.73); of its inputs only the key path from `a0.h0` carries
# anything (0.17; its query nothing, and its value input is not measured here). Each corruption asks
# which heads carry the information that *differs* between its two runs, so a circuit is only
# ever "the circuit for this corruption".
#
# ### 5.2 The automatic circuit
# Notebook 05 scores every edge at once with EAP-IG (attribution patching with integrated
# gradients). On the same IOI prompts: take its top edges, as many as the hand-found circuit of
# section 3 has, and compare the two circuits edge by edge and by faithfulness (both evaluated by
# edge-level interchange: every edge outside the circuit carries its corrupted value).

# %%
# NBVAL_CHECK_OUTPUT
from tutorial_utils.circuits import Graph, eap_ig_scores, evaluate_graph, top_n

graph = Graph.from_model(model)
hand = graph.copy()
hand.in_graph = torch.zeros_like(hand.in_graph)
for edge, _ in kept:
    hand.set_edge(edge, True)
with torch.enable_grad():  # EAP-IG needs gradients; this notebook turned them off
    ig = eap_ig_scores(model, graph, ioi, steps=5)
auto = graph.copy()
auto.in_graph = top_n(graph, ig, len(kept))
hand_e, auto_e = set(hand.edge_names()), set(auto.edge_names())
print(f"EAP-IG's top {len(kept)} edges (of {graph.n_edges}): {len(hand_e & auto_e)} shared with "
      "the hand-found circuit")
print("only EAP-IG  :", sorted(auto_e - hand_e))
print("only by hand :", sorted(hand_e - auto_e))
m_hand, m_auto = evaluate_graph(model, graph, ioi, [hand.in_graph, auto.in_graph]).tolist()
for label, m in (("hand-found", m_hand), ("EAP-IG top", m_auto)):
    print(f"{label:>10} circuit: logit difference {m:.2f}, faithfulness "
          f"{(m - ld_corr) / (ld_clean - ld_corr):.2f}")

# %% [markdown]
# The two methods agree on nine of ten edges, from one backward pass per interpolation step
# against one forward per edge and walk step. Where they differ is instructive: EAP-IG picks an
# S-inhibition head's edge into the query of the *weaker* name mover `a2.h4` (the card lists it),
# a second copy of the chain that the 10% threshold of section 3 cut, and drops an edge from
# the embeddings into the layer-0 head's query; its
# circuit is a little more faithful. A threshold on single edges and a ranking of all edges
# find the same core and differ at the margin, as notebook 05 shows on Greater-Than.
#
# ## 6. Bonus: Side by side with GPT-2 small's published classes (2 min)
#
# | class (Wang et al. 2023, GPT-2 small, published) | heads in GPT-2 small | role | in this model (printed above) |
# | --- | --- | --- | --- |
# | name movers | 9.9, 9.6, 10.0 | attend END -> IO, copy it | one, `a3.h6` (section 2.1): attends END -> IO, copies about two names in three (top-1); a weaker one, `a2.h4`, in the card |
# | negative name movers | 10.7, 11.10 | attend to IO, write *against* it | none with a direct effect <= -0.10 |
# | S-inhibition | 7.3, 7.9, 8.6, 8.10 | attend to S2; tell the name movers, through their **queries**, not to attend to S | `a1.h5`, `a1.h1`: attend END -> S2 and feed the name mover's query (section 2.2); they also push S down directly, which GPT-2's do not |
# | duplicate token / induction | 0.1, 3.0 / 5.5, 6.9 | detect that S repeats; feed S-inhibition | a duplicate-token pattern exists (section 2.3) but carries nothing: the S-inhibition heads find S by its place |
# | previous token | 2.2, 4.11 | feed the induction heads' keys | the previous-token heads of section 1 feed induction, not IOI |
#
# What carries over from GPT-2: the name mover, its query fed by heads that attend to the
# subject (Q-composition), and a representation of the name built by an early component
# (GPT-2's MLP0, here the layer-0 head that attends to itself). What does not: the upstream
# chain that *detects* the repetition, and the clean division of labour (our S-inhibition heads
# also write to the logits). Induction (section 1) has the same *mechanism* as in GPT-2 and the
# other models Olsson et al. studied, K-composition of previous-token and induction heads, but
# spread over more heads: the one-head previous-token class carries 0.41 of the effect through
# the induction heads' keys, and the rest runs through other previous-token heads.
#
# ## 7. Bonus: Now on GPT-2 small (1 min)
# The same calls on GPT-2 small: previous-token and induction scores of its 144 heads with
# K-composition by path patching into the induction heads' keys, and on IOI the heads that
# attend from END to the names, next to Wang et al.'s published classes (name movers 9.9, 9.6,
# 10.0; S-inhibition 7.3, 7.9, 8.6, 8.10). It needs the Hugging Face hub (Colab has it); offline
# this cell prints one line and skips.

# %%
from tutorial_utils.course.large_model import run_section
RUN_LARGE = None  # None: run when the Hugging Face hub answers; True: always; False: skip
large = run_section("04", run=RUN_LARGE)
