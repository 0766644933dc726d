"""``python -m lesionkg.cli``: the ``lesionkg`` command."""

from lesionkg.cli import main

main()
