"""What only the course needs, apart from the library a researcher imports.

* :mod:`~tutorial_utils.course.grading` -- the exercise-check core (compare a student's answer
  with the reference, report one line);
* :mod:`~tutorial_utils.course.checks` -- one module of exercise checks per notebook
  (``checks.nb00`` ... ``checks.nb05``);
* :mod:`~tutorial_utils.course.solutions` -- the reference solution of every exercise;
* :mod:`~tutorial_utils.course.answers` -- what the cells after an exercise use: the student's
  answer when its check passes, else the reference ("Exercise N not done: continuing with the
  reference solution");
* :mod:`~tutorial_utils.course.exercises` -- the student-version generator
  (``python -m tutorial_utils.course.exercises``), with
  :mod:`~tutorial_utils.course.exercise_cells` reading an exercise's two cells;
* :mod:`~tutorial_utils.course.colab` -- the first cell of every notebook (Colab install);
* :mod:`~tutorial_utils.course.large_model` -- the "Now on GPT-2 small / BERT" sections;
* :mod:`~tutorial_utils.course.offline_model` -- the corpus, tokenizer, training, selection and
  model cards of the shipped offline models.

The course imports the library; the library never imports the course.
"""
