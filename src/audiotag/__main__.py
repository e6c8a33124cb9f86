"""``python -m audiotag``: the ``audiotag`` command (see :mod:`audiotag.cli`)."""

from audiotag.cli import main

main()
