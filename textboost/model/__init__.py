"""The network and how it is trained (paper 4.2-4.5, 5.1.2).

``textboost`` (the ``TextBoost`` wrapper, ``build_model``, ``build_fusion``), ``backbones``
(ELIC, hyperprior, LIC-TCM), ``tcm`` (LIC-TCM), ``padding``, ``fusion`` (the fusion blocks),
``text_adapter`` (word tokens for the text-conditioned variants), ``losses``, ``train_steps``
(one training step, stage freezing) and ``checkpoint`` (save / load, ``zoo:`` and MLflow URIs).

May import: ``textboost.config``, ``textboost.text``, ``textboost.errors``, ``textboost.zoo``
(lazily). ``build_model``, ``TextBoost`` and ``build_fusion`` are re-exported here.
"""

from textboost.model.textboost import TextBoost, build_fusion, build_model

__all__ = ["TextBoost", "build_fusion", "build_model"]
