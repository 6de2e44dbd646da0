"""Words and what the method derives from them, without a network (paper 4.1-4.3).

``words`` (the ``Word`` record), ``geometry`` (polygons, boxes, rasterising), ``filtering``
(which OCR words are sent), ``side_info`` (the side-info bytes), ``guidance`` (guidance maps),
``colours`` (word colours in the side info and colour guidance maps), ``strength`` (per-word
text-path levels and the decoder's strength map), ``vocab`` (the built-in
word list) and ``ocr`` (readers of TextOCR / ICDAR 2015 annotations and RapidOCR output).

May import: ``textboost.errors``, ``textboost.varint`` and each other; never ``model``,
``codec``, ``scoring`` or ``data`` (the shard build imports these modules without torch models).
"""
