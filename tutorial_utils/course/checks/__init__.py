"""Exercise checks, one module per notebook (``nb01``, ``nb02``, ...), built on
:mod:`tutorial_utils.course.grading`."""
