"""Exceptions with actionable messages; the CLI turns them into one readable line."""

# Where ``python -m mtrec`` records an expected failure (:class:`MtrecError`) when this
# variable names a file: DVC reports any failing command alike, and a run workspace must tell
# "the data or the config is wrong, a retry fails the same way" from a crash or a kill.
ERROR_FILE_ENV = "MTREC_ERROR_FILE"


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


class StageRejected(MtrecError):
    """A stage run through DVC in a run workspace stopped on an expected error (data gate,
    config, missing input): a retry would fail the same way."""


class StageFailed(RuntimeError):
    """A stage run through DVC in a run workspace exited non-zero without an expected error
    (a crash, a kill, a DVC fault): worth a retry, which restores the finished stages."""


class WorkerDied(MtrecError):
    """A worker process training a stage's runs ended without a result (killed, crashed)."""


class RegistryError(MtrecError):
    """The model registry cannot do what was asked (no such alias, nothing to roll back to)."""
