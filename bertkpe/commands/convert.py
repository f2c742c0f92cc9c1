"""`bertkpe convert-checkpoint`: an original BERT-KPE checkpoint file as a checkpoint directory."""
from __future__ import annotations

import argparse
import sys

from bertkpe.convert import ConversionError, convert_checkpoint
from bertkpe.dataset_classes import DATASET_CLASSES
from bertkpe.options import MODEL_CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("original", metavar="ORIGINAL_FILE", help="checkpoint file saved by the original BERT-KPE")
    parser.add_argument("output_dir", metavar="OUT_DIR", help="checkpoint directory to write")
    parser.add_argument("--model_class", default=None,
                        choices=MODEL_CLASS_NAMES,
                        help="head of the checkpoint (default: from its args)")
    parser.add_argument("--pretrain_model_type", required=True,
                        help="encoder it was trained from: hub id or folder (config and tokenizer are taken from it)")
    parser.add_argument("--dataset_class", default=None, choices=sorted(DATASET_CLASSES),
                        help="dataset it was trained on (default: from its args)")
    parser.add_argument("--stemmer", default=None,
                        help="phrase stemmer (default: the dataset class's: none for openkp, porter for kp20k, "
                             "the --language's for multidata)")
    parser.add_argument("--language", default=None, help="multidata: the corpus language (e.g. fr, pt-PT)")


def run(args: argparse.Namespace, given: set[str]) -> int:
    try:
        report = convert_checkpoint(args.original, args.output_dir, args.model_class, args.pretrain_model_type,
                                    args.dataset_class, args.stemmer, args.language)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stderr)
    print(f"wrote {args.output_dir}", file=sys.stderr)
    return 0
