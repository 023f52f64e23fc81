"""The offline decoders: their corpus generator, tokenizer, training script and evaluation.

Train the current recipe (version 6, attention-only, shipped as ``tiny-attn-tasks``, notebook 04)
and choose its checkpoint: ``python -m tutorial_utils.course.offline_model.train --out runs/v6`` then
``python -m tutorial_utils.course.offline_model.select runs/v6 --out data/models/tiny-attn-tasks``.
Version 3 (the previous ``tiny-attn-tasks``) is the recipe of commit b2b305a.
The older ``tiny-gpt2-tasks`` (version 2, with MLPs) was trained by this package as of commit
a0018b1 (``git show a0018b1:tutorial_utils/course/offline_model/train.py``).
"""
