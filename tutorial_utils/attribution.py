"""Deprecated name of :mod:`tutorial_utils.input_attribution` (saliency, gradient x input,
integrated gradients, occlusion: attribution to *input tokens*). Kept as a re-export because
``context_mixing.evaluation`` (owned elsewhere) imports it; new code imports
``tutorial_utils.input_attribution``. Edge attribution is :mod:`tutorial_utils.circuits`."""

from .input_attribution import *  # noqa: F401,F403
from .input_attribution import __all__  # noqa: F401
