"""Plumbing every stage uses: params, atomic I/O, errors, the registry, the stage runner."""
