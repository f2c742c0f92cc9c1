"""Preprocess a keyphrase corpus: `python preprocess/preprocess.py --help` (same as `bertkpe preprocess`)."""
import sys

from bertkpe.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("preprocess", sys.argv[1:]))
