"""Training and validation data that the package makes itself: ``synth`` (synthetic
scene-text images), ``synth_backgrounds`` (their backgrounds), ``synth_sets`` (sets of them
written in the TextOCR / ICDAR 2015 formats) and ``assets`` (``python -m
textboost.data.assets``: photos, fonts and the validation set).

May import: ``textboost.text``, ``textboost.errors``.
"""
