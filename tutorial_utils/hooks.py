"""Deprecated home of the validation helpers: use :mod:`tutorial_utils.validation`.

Kept as a re-export because ``context_mixing.norms`` (owned elsewhere) still imports it.
"""

from .validation import (available_hooks, check_head, check_hook_names, check_layer,
                         check_same_shape, check_tokens)

__all__ = ["available_hooks", "check_head", "check_hook_names", "check_layer",
           "check_same_shape", "check_tokens"]
