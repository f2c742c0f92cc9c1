"""`bertkpe featurize`: build the feature stores of preprocessed splits ahead of a run.

A training or test run builds a missing store itself (one process builds, the others
wait for it); building ahead keeps that out of a distributed run's start, and of its
time on the GPUs. Flags are those a run passes, so the stores are the ones it looks for.
"""
from __future__ import annotations

import argparse
import logging
import time

from bertkpe import config
from bertkpe.data.features import FeatureOptions
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.evaluation import split_store
from bertkpe.runtime import setup_logging

logger = logging.getLogger("bertkpe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_data_arguments(parser, "required")
    parser.add_argument("--splits", nargs="+", choices=("train", "dev", "eval"), default=None,
                        help="splits to build (default: every split the preprocessed folder has)")
    group = parser.add_argument_group("features (as the run will ask for them)")
    group.add_argument("--pretrain_model_type", default=config.DEFAULT_ENCODER,
                       help="the encoder (hub id, folder or `default`) or a checkpoint folder: its tokenizer")
    group.add_argument("--pretrain_model_path", default=None,
                       help="folder holding a folder named --pretrain_model_type (the original toolkit's layout)")
    group.add_argument("--max_token", type=int, default=510, help="sub-tokens per encoder window")
    config.add_document_arguments(group)
    group.add_argument("--max_phrase_words", type=int, default=5, help="longest n-gram candidate")


def run(args: argparse.Namespace) -> int:
    setup_logging()
    if args.dataset_class is None:
        raise SystemExit("bertkpe featurize: --dataset_class is required")
    encoder = config.resolve_encoder(args.pretrain_model_type, args.pretrain_model_path)
    config.check_max_token_flag(args.max_token, encoder)
    config.resolve_document_flags(args)
    tokenizer = load_tokenizer(encoder)
    options = FeatureOptions(tokenizer=encoder, max_token=args.max_token, max_phrase_words=args.max_phrase_words,
                             max_doc_tokens=args.max_doc_tokens, window_overlap=args.window_overlap)
    splits = args.splits or [split for split in ("train", "dev", "eval") if config.split_file(args, split).is_file()]
    if not splits:
        raise SystemExit(f"error: no preprocessed split of {config.dataset_name(args)} in {args.preprocess_folder}")
    for split in splits:
        started = time.perf_counter()
        store = split_store(args, split, tokenizer, options)
        logger.info("%s: %d documents, %.1f MB (%.0f bytes a document), ready in %.1f s", split, len(store),
                    store.nbytes / 1e6, store.nbytes / max(len(store), 1), time.perf_counter() - started)
    return 0
