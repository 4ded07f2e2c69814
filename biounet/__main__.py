"""``python -m biounet`` runs the command-line interface."""

from biounet.cli import main

if __name__ == "__main__":
    main(prog_name="biounet")
