"""`bertkpe` command line: one sub-command per pipeline stage.

Each module of bertkpe/commands defines `add_arguments(parser)` and `run(args, given)`
(`given`: the options written on the command line); this file only wires them together,
so `bertkpe train ...` and `python scripts/train.py ...` share one flag surface.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from bertkpe.options import given_options

COMMANDS = {
    "preprocess": ("bertkpe.commands.preprocess", "read a corpus, locate present keyphrases, write JSON lines"),
    "featurize": ("bertkpe.commands.featurize", "build the feature stores of preprocessed splits ahead of a run"),
    "train": ("bertkpe.commands.train", "train a keyphrase head on preprocessed data"),
    "test": ("bertkpe.commands.test", "decode and score a checkpoint on dev/eval"),
    "score": ("bertkpe.commands.score", "score a predictions file against a reference file"),
    "extract": ("bertkpe.commands.extract", "extract keyphrases from raw text with a checkpoint"),
    "push": ("bertkpe.commands.push", "publish a checkpoint on the Hugging Face Hub with its model card"),
    "convert-checkpoint": ("bertkpe.commands.convert",
                           "turn an original BERT-KPE checkpoint into a checkpoint directory"),
}


def build_parser(command: str) -> argparse.ArgumentParser:
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"bertkpe {command}", description=help_text,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    return parser


def run_command(command: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(COMMANDS[command][0])
    parser = build_parser(command)
    args = parser.parse_args(list(argv))
    return int(module.run(args, given_options(parser, list(argv))) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<20} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: bertkpe COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return run_command(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
