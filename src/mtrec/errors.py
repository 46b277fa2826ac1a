"""Exceptions with actionable messages; the CLI turns them into one readable line."""


class MtrecError(Exception):
    """Base class: an expected failure the operator can act on (no traceback needed)."""


class ConfigError(MtrecError):
    """params.yaml or an override is invalid."""


class DataSourceError(MtrecError):
    """A dataset could not be fetched, verified or read."""


class ChecksumMismatch(DataSourceError):
    """A downloaded archive does not match its pinned checksum."""


class DataValidationError(MtrecError):
    """The data gate failed: one or more expectations on the raw tables did not hold."""


class ArtifactError(MtrecError):
    """An input a stage needs (table, checkpoint, report) is missing or malformed."""


class StageFailed(MtrecError):
    """A pipeline stage run through DVC in a run workspace exited non-zero."""


class WorkerDied(MtrecError):
    """A worker process training a stage's runs ended without a result (killed, crashed)."""


class RegistryError(MtrecError):
    """The model registry cannot do what was asked (no such alias, nothing to roll back to)."""
