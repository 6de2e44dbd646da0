"""Images to bytes and back (paper 4.4): the file format and what fills it.

``image_codec`` (``encode_image`` / ``decode_full``: image + OCR words -> container bytes and
back with a ``TextBoost`` model), ``container`` (the ``TBX`` container format) and
``baselines`` (Pillow JPEG/WebP/AVIF baselines and the backbone-only decode), ``legibility``
(``select_legible``: which words to send and at which strength, from the encoder's OCR check of
the decoder's output).

May import: ``textboost.text``, ``textboost.model``, ``textboost.scoring`` (lazily: the
matching rule and the default spotter), ``textboost.errors``, ``textboost.varint``.
"""
