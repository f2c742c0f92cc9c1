"""`bertkpe train` (`scripts/train.py`): train a head on preprocessed data, or continue a run."""
from __future__ import annotations

import argparse

from bertkpe.options import TrainOptions, add_train_arguments, from_namespace
from bertkpe.runtime import setup_runtime, teardown_runtime
from bertkpe.training import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace, given: set[str]) -> int:
    options = from_namespace(TrainOptions, args)
    runtime = setup_runtime(options.no_cuda)
    try:
        train(options, given, runtime)
        return 0
    finally:
        teardown_runtime(runtime)
