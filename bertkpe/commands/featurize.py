"""`bertkpe featurize`: build the feature stores of preprocessed splits ahead of a run.

A training or test run builds a missing store itself (one process builds, the others
wait for it); building ahead keeps that out of a distributed run's start, and of its
time on the GPUs. Flags are those a run passes, so the stores are the ones it looks for.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from bertkpe.data.features import FeatureOptions
from bertkpe.data.preprocessed import SPLITS, PreprocessedData
from bertkpe.data.tokenizers import check_max_token_of, load_tokenizer
from bertkpe.evaluation import split_store
from bertkpe.options import (DEFAULT_ENCODER, TRAIN, add_data_arguments, add_document_arguments, document_options,
                             resolve_encoder)
from bertkpe.runtime import setup_logging

logger = logging.getLogger("bertkpe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, "required")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=None,
                        help="splits to build (default: every split the preprocessed folder has)")
    group = parser.add_argument_group("features (as the run will ask for them)")
    group.add_argument("--pretrain_model_type", default=DEFAULT_ENCODER,
                       help="the encoder (hub id, folder or `default`) or a checkpoint folder: its tokenizer")
    group.add_argument("--pretrain_model_path", default=None,
                       help="folder holding a folder named --pretrain_model_type (the original toolkit's layout)")
    group.add_argument("--max_token", type=int, default=TRAIN.max_token, help="sub-tokens per encoder window")
    add_document_arguments(group)
    group.add_argument("--max_phrase_words", type=int, default=TRAIN.max_phrase_words, help="longest n-gram candidate")


def run(args: argparse.Namespace, given: set[str]) -> int:
    setup_logging()
    if args.dataset_class is None:
        raise SystemExit("bertkpe featurize: --dataset_class is required")
    encoder = resolve_encoder(args.pretrain_model_type, args.pretrain_model_path)
    try:
        check_max_token_of(args.max_token, encoder)
        max_doc_tokens, window_overlap = document_options(args.max_token, args.max_doc_tokens, args.window_overlap)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    tokenizer = load_tokenizer(encoder)
    features = FeatureOptions(tokenizer=encoder, max_token=args.max_token, max_phrase_words=args.max_phrase_words,
                              max_doc_tokens=max_doc_tokens, window_overlap=window_overlap)
    data = PreprocessedData(Path(args.preprocess_folder), args.dataset_name or args.dataset_class, args.dataset_class)
    splits = args.splits or [split for split in SPLITS if data.split_file(split).is_file()]
    if not splits:
        raise SystemExit(f"error: no preprocessed split of {data.name} in {data.folder}")
    for split in splits:
        started = time.perf_counter()
        store = split_store(data, split, tokenizer, features, args.cached_features_dir, args.feature_workers)
        logger.info("%s: %d documents, %.1f MB (%.0f bytes a document), ready in %.1f s", split, len(store),
                    store.nbytes / 1e6, store.nbytes / max(len(store), 1), time.perf_counter() - started)
    return 0
