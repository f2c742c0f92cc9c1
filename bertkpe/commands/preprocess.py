"""`bertkpe preprocess`: read a corpus, locate its present keyphrases, write JSON lines."""
from __future__ import annotations

import argparse
import logging
import sys

from bertkpe.data.sources import MissingSourceError
from bertkpe.dataset_classes import DATASET_CLASSES, TEXT_KINDS
from bertkpe.files import LineError
from bertkpe.preprocessing import PreprocessError, preprocess


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset_class", required=True, choices=sorted(DATASET_CLASSES),
                        help="source layout: OpenKP jsonl, KP20K json lines, or a LIAAD corpus (folder or zip)")
    parser.add_argument("--source_dataset_dir", required=True,
                        help="folder holding openkp/ or kp20k/ (or those folders themselves); for multidata "
                             "the LIAAD corpus folder or .zip")
    parser.add_argument("--output_path", required=True, help="files go to OUTPUT_PATH/DATASET_NAME/")
    parser.add_argument("--dataset_name", default=None,
                        help="name of the output folder and files (default: the dataset class)")
    parser.add_argument("--max_phrase_words", type=int, default=5,
                        help="present keyphrases longer than this are counted (models cannot predict them)")
    parser.add_argument("--language", default=None, help="multidata: language tag overriding the corpus lan.txt")
    parser.add_argument("--text_kind", default=None, choices=TEXT_KINDS,
                        help="what the documents are, which picks their document-pooling weights when they are "
                             "ranked (default: the dataset class's: papers for kp20k, pages for openkp; for "
                             "multidata, unrecorded, ranked as papers unless a test or extraction says otherwise)")
    parser.add_argument("--split_seed", type=int, default=42, help="multidata: seed of the train/dev/eval shuffle")
    parser.add_argument("--split_ratio", type=float, nargs=3, default=[0.7, 0.15, 0.15],
                        metavar=("TRAIN", "DEV", "EVAL"), help="multidata: split proportions")
    parser.add_argument("--split_file", default=None,
                        help="multidata: reuse this split.json instead of drawing a split")
    parser.add_argument("--skip_bad_lines", action="store_true",
                        help="skip (and count) malformed records instead of stopping")


def run(args: argparse.Namespace, given: set[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        preprocess(args)
    except (LineError, MissingSourceError, PreprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
