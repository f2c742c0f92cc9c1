"""`bertkpe test` as a script: `python scripts/test.py --help` lists the flags."""
import sys

from bertkpe.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("test", sys.argv[1:]))
