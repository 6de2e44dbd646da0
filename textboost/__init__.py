"""TextBoost: OCR-guided learned image compression for small scene text (paper sections 4-5).

Importing this package is light: no Ray, no MLflow, no torch until a submodule needs it.
"""

import warnings

__version__ = "0.1.0"

# compressai scripts a module with torch.jit on import: not the user's concern. Set here so
# every process that imports the package (CLI, jobs, Ray workers) stays quiet about it.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from textboost.errors import TextBoostError  # noqa: E402

__all__ = ["TextBoostError", "__version__"]
