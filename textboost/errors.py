"""The project's error types. Every bad input ends in a subclass of ``TextBoostError``."""


class TextBoostError(Exception):
    """Base class: a clear message naming the thing that is wrong and what to do."""


class ConfigError(TextBoostError):
    """Unknown key, wrong type or invalid combination in a config."""


class AnnotationError(TextBoostError):
    """Malformed OCR annotation (TextOCR JSON, ICDAR 2015 ground truth, OCR engine output)."""


class GeometryError(TextBoostError):
    """A polygon that cannot be repaired into a usable text box."""


class SideInfoError(TextBoostError):
    """Corrupt, truncated or hostile side-info bytes."""


class ContainerError(TextBoostError):
    """Corrupt, truncated or foreign codec container, or a container for another model."""


class ImageError(TextBoostError):
    """An image that cannot be decoded."""


class ShardError(TextBoostError):
    """A shard, its commit marker or the manifest is missing, truncated or inconsistent."""


class CheckpointError(TextBoostError):
    """A checkpoint that cannot be loaded or does not match the requested model."""


class ZooError(CheckpointError):
    """Unknown model zoo name, a model without its card, or a model that cannot be shipped."""


class StorageError(TextBoostError):
    """A file or folder that cannot be read or written (a directory given as a file, a path
    under a file, a full disk, missing permissions)."""


class ServiceError(TextBoostError):
    """A service (MLflow tracking server, database, object store) that cannot be reached, does
    not answer in time, or is not what its URI says."""
