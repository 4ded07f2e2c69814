"""``python -m biounet`` runs the command-line interface."""

from biounet.cli import main

main(prog_name="biounet")
