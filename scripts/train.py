"""`bertkpe train` as a script: `python scripts/train.py --help` lists the flags."""
import sys

from bertkpe.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv[1:]))
