"""Reference solutions of the course's exercises, one module per notebook (``nb00`` ...).

Each function has the signature of the notebook's exercise (without a ``my_`` prefix) and the
code its solution cell shows. Three uses: the exercise checks compare a student's answer with
it; when an exercise is not done or fails its check, the cells after it run on it
(:mod:`tutorial_utils.course.answers`); and the tests check that every check passes it.
A reference is self-contained: it reads no notebook variable.
"""
