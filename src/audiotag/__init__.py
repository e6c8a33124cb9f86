"""audiotag: a reproducible DVC pipeline for audio tagging and classification experiments."""

__version__ = "0.1.0"
