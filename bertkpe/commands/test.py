"""`bertkpe test` (`scripts/test.py`): decode and score dev and eval with a checkpoint."""
from __future__ import annotations

import argparse

from bertkpe.evaluation import test_checkpoint
from bertkpe.options import TestOptions, add_test_arguments, from_namespace
from bertkpe.runtime import setup_runtime, teardown_runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_test_arguments(parser)


def run(args: argparse.Namespace, given: set[str]) -> int:
    options = from_namespace(TestOptions, args)
    runtime = setup_runtime(options.no_cuda)
    try:
        test_checkpoint(options, runtime)
        return 0
    finally:
        teardown_runtime(runtime)
