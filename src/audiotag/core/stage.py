"""Shared plumbing of the stage scripts in ``stages/``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from audiotag.core.errors import AudioError, DataSourceError, ManifestError, ParamsError

# Errors of the user's making: log one clear message, no traceback, exit status 2.
USER_ERRORS = (ParamsError, ManifestError, AudioError, DataSourceError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> None:
    """Configure logging, run ``main``, turn user errors into a message and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        main()
    except USER_ERRORS as err:
        logging.getLogger("audiotag").error("error: %s", err)  # one line on stderr
        sys.exit(2)
