"""``python -m ghl_real_estate_ai.cli`` runs the ``jorge`` command."""

from ghl_real_estate_ai.cli import main

main()
