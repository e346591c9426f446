"""``python -m lhtrio`` is the ``lhtrio`` command."""

from lhtrio.cli import main

main()
