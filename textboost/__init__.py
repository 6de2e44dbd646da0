"""TextBoost: OCR-guided learned image compression for small scene text (paper sections 4-5).

Importing this package is light: no Ray, no MLflow, no torch until a submodule needs it.
"""

__version__ = "0.1.0"

from textboost.errors import TextBoostError  # noqa: E402

__all__ = ["TextBoostError", "__version__"]
