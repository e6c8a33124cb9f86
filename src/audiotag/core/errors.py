"""Errors of the user's making (bad input), shown as one clear line by the stage runner."""


class ParamsError(ValueError):
    """A params.yaml problem; the message names the key."""


class AudioError(RuntimeError):
    """An unreadable or empty audio file; the message names it."""


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names the file and row."""


class DataSourceError(RuntimeError):
    """A dataset that cannot be fetched, verified or unpacked; the message names the file."""
