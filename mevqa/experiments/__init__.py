"""Experiments over subject-independent folds.

- ``split``: the ``mevqa split`` command (LOSO, k-fold and cross-dataset splits)
- ``cv``: the ``mevqa cv`` command (train, predict and score configs over the folds; pooled table with CIs)
"""
