"""``python -m logitlens`` runs the command line."""

from .cli import main

main()
