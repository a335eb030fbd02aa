"""``python -m reconciler`` runs the ``infinibay`` command line."""

from reconciler.cli import main

main.main()
