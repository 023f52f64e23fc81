"""Deprecated name of :mod:`tutorial_utils.grading` (the exercise-check core: compare a
student's function with the reference and report pass/fail). Kept as a re-export because
``exercise_checks/nb02.py`` (owned elsewhere) imports it; new code imports
``tutorial_utils.grading``. Input validation is :mod:`tutorial_utils.validation`."""

from .grading import *  # noqa: F401,F403
from .grading import __all__  # noqa: F401
