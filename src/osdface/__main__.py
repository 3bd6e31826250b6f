"""``python -m osdface`` is the ``osdface`` command."""

from .cli import main

main()
