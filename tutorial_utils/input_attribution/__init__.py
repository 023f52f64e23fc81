"""Input attribution at the token-embedding level: saliency, gradient x input, integrated
gradients, occlusion, and the tools to compare them and to check that they depend on the model.

Every method explains a scalar **target** per example, ``f(x)_b = target_fn(output)[b]``, where
``output`` is the model's logits ``[B, T, V]`` (or, with ``target_hook``, the activation at that
hook). It returns one score per input token, a tensor ``[B, T]``. Inputs are the token
embeddings ``x[b, t] = W_E[tokens[b, t]]`` (the output of ``hook_embed``); the position
embeddings (and, for BERT, the token-type embeddings and the embedding LayerNorm) are part of
the function being explained. The methods work on any ``TransformerBridge``: a decoder from
:func:`tutorial_utils.models.load_model` or an encoder from ``load_encoder``.

One concept per module:

* :mod:`.targets`: what is explained (:func:`logit_target`, :func:`prob_target`,
  :func:`contrastive_target` (Yin & Neubig 2022, "why A and not B"), :func:`metric_target`);
* :mod:`.forward`: embeddings, baselines, the forward pass from embeddings, padding;
* :mod:`.gradients`: saliency (Simonyan et al. 2014; Li et al. 2016), gradient x input
  (Shrikumar et al. 2016), integrated gradients (Sundararajan et al. 2017) and its
  completeness check;
* :mod:`.occlusion`: occlusion / erasure (Zeiler & Fergus 2014; Li et al. 2016);
* :mod:`.sanity`: one entry point, rank agreement between methods, and the model-randomisation
  sanity check of Adebayo et al. (2018), all at once or cascading layer by layer.

Targets. ``target_fn`` maps the output of a batch aligned with ``tokens`` (``[B, T, V]``) to
``[B]``. Methods that evaluate many variants of the batch (IG steps, occluded copies) stack the
variants along the batch dimension for one forward pass and call ``target_fn`` on each block of
``B`` rows separately, so a target never has to know about the stacking.

Padded batches. Every method takes ``attention_mask`` (``[B, T]``, 1 = real token); without
it, an encoder's ``[PAD]`` and a decoder's trailing BOS run are taken as padding, and a
decoder's BOS before real tokens (left padding) is refused (:mod:`tutorial_utils.model_checks`).
Padded positions score 0; a target that reads one is refused.

>>> model = load_model("offline")                                        # doctest: +SKIP
>>> tokens = model.to_tokens("When Mary and John went to the store, John gave a drink to")
>>> target = contrastive_target(model.to_single_token(" Mary"), model.to_single_token(" John"))
>>> integrated_gradients(model, tokens, target, n_steps=64)              # [1, T]  doctest: +SKIP
"""

from .forward import (EMBED_HOOK, Baseline, baseline_embeddings, embed_hook,
                      embedding_gradients, run_from_embeddings, target_values, token_embeddings)
from .gradients import (IG_RULES, MAX_IG_STEPS, IGCompleteness, gradient_x_input,
                        ig_alphas_and_weights, ig_completeness, integrated_gradients, saliency)
from .occlusion import contrastive_erasure, occlusion
from .sanity import (METHODS, RANDOMISATION_MODES, RandomisationCheck, attribute,
                     cascading_randomization, layer_groups, method_agreement, randomized_layers,
                     randomized_weights, spearman)
from .targets import TargetFn, contrastive_target, logit_target, metric_target, prob_target

__all__ = [
    "Baseline", "EMBED_HOOK", "IGCompleteness", "IG_RULES", "MAX_IG_STEPS", "METHODS",
    "RANDOMISATION_MODES", "RandomisationCheck", "TargetFn", "attribute", "baseline_embeddings",
    "cascading_randomization", "contrastive_erasure", "contrastive_target", "embed_hook",
    "embedding_gradients", "gradient_x_input", "ig_alphas_and_weights", "ig_completeness",
    "integrated_gradients", "layer_groups", "logit_target", "method_agreement", "metric_target",
    "occlusion", "prob_target", "randomized_layers", "randomized_weights", "run_from_embeddings",
    "saliency", "spearman", "target_values", "token_embeddings",
]
