"""`python -m bertkpe COMMAND ...`, as `bertkpe COMMAND ...` (and `torchrun -m bertkpe ...`)."""
import sys

from bertkpe.cli import main

sys.exit(main())
