"""Decoding a split with a model and scoring it; the `bertkpe test` command."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from bertkpe import config
from bertkpe.checkpoints import resolve_checkpoint
from bertkpe.data.batching import iterate, length_grouped_batches, token_lengths, window_counts
from bertkpe.data.features import DocumentFeatures, FeatureOptions, load_features, load_tokenizer
from bertkpe.decoding import PhrasePooling, RankedPhrases, rank_batch
from bertkpe.dataset_classes import dataset_class
from bertkpe.metrics import ScoringConfig, format_scores, read_doc_words, read_keyphrase_file, score
from bertkpe.models import KeyphraseModel, load_model, read_kpe_config
from bertkpe.runtime import (Runtime, seed_everything, set_precision, setup_logging, setup_runtime,
                             teardown_runtime)

logger = logging.getLogger("bertkpe")


@torch.inference_mode()
def decode_documents(model: KeyphraseModel, documents: Sequence[DocumentFeatures], runtime: Runtime,
                     batch_size: int, top_k: int, pad_token_id: int = 0, description: str = "decode",
                     pooling: PhrasePooling = PhrasePooling()) -> list[RankedPhrases]:
    """Ranked phrases for every document, in document order. A batch holds at most
    `batch_size` encoder windows. Under torchrun each rank decodes a share of the
    length-sorted batches and rank 0 gathers them, so every document is decoded exactly once."""
    was_training = model.training
    model.eval()
    batches = length_grouped_batches(token_lengths(documents).tolist(), batch_size, shuffle=False,
                                     windows=window_counts(documents))
    mine = batches[runtime.rank::runtime.world_size]
    results: list[tuple[int, RankedPhrases]] = []
    progress = tqdm(total=sum(map(len, mine)), desc=description, unit="doc", leave=False,
                    disable=not runtime.is_main)
    for batch in iterate(documents, mine, pad_token_id):
        with runtime.autocast():
            ranked = rank_batch(model, batch, [documents[i] for i in batch.indices], top_k, runtime.device, pooling)
        results.extend(zip(batch.indices, ranked))
        progress.update(len(batch.indices))
    progress.close()
    if runtime.distributed:
        gathered: list[Any] = [None] * runtime.world_size
        dist.all_gather_object(gathered, results)
        results = [item for part in gathered for item in part]
    model.train(was_training)
    by_index = dict(results)
    return [by_index[index] for index in range(len(documents))]


def predictions_by_url(predictions: Sequence[RankedPhrases]) -> dict[str, list[list[str]]]:
    return {ranked.url: ranked.phrases for ranked in predictions}


def scoring_of(args: argparse.Namespace, split: str) -> ScoringConfig:
    """The split's scoring configuration: its dataset class's, with the stemmer its data was matched with."""
    kind = dataset_class(args.dataset_class)
    return kind.scoring(config.data_stemmer(config.split_file(args, split)), present_only=args.present_only)


# Document lengths in sub-tokens (the whole document, read or not), for scores by length.
LENGTH_BUCKETS = (("0-512", 0, 512), ("512-1k", 512, 1024), ("1k-2k", 1024, 2048), ("2k-4k", 2048, 4096),
                  ("4k-8k", 4096, 8192), (">8k", 8192, math.inf))


def score_split(predictions: Sequence[RankedPhrases], reference_path: Path, scoring: ScoringConfig,
                present_only_source: Path | None = None, doc_tokens: Mapping[str, int] | None = None
                ) -> dict[str, Any]:
    """Scores of a split, with their configuration under "scoring"; given each document's
    length, also F1/P/R@5 and @10 by length bucket under "by_length" (buckets with documents)."""
    references = read_keyphrase_file(reference_path)
    doc_words = read_doc_words(present_only_source) if present_only_source is not None else None
    ranked = predictions_by_url(predictions)
    scores = score(ranked, references, scoring, doc_words=doc_words)
    if doc_tokens is not None:
        by_length = dataclasses.replace(scoring, ks=(5, 10))
        scores["by_length"] = {}
        for name, low, high in LENGTH_BUCKETS:
            urls = [url for url in references if low <= doc_tokens.get(url, 0) < high]
            if urls:
                bucket = score({url: ranked[url] for url in urls}, {url: references[url] for url in urls},
                               by_length, doc_words=None if doc_words is None else {url: doc_words[url] for url in urls})
                scores["by_length"][name] = {key: value for key, value in bucket.items() if key != "scoring"}
    return scores


def format_split_scores(scores: dict[str, Any]) -> str:
    """The score table at the configuration's ks, under a line naming the configuration."""
    scoring = ScoringConfig(**scores["scoring"])
    lines = [f"scoring: {scoring.describe()}", format_scores(scores, scoring.ks)]
    for name, bucket in scores.get("by_length", {}).items():
        lines.append(f"{name:>7} sub-tokens: {bucket['num_docs']:5d} documents, F1@5 {bucket['F1@5']:.4f}, "
                     f"F1@10 {bucket['F1@10']:.4f}")
    return "\n".join(lines)


def write_predictions(path: Path, predictions: Sequence[RankedPhrases]) -> None:
    """OpenKP submission layout, one JSON line per document, in source order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as out:
        for ranked in predictions:
            out.write(json.dumps({"url": ranked.url, "KeyPhrases": ranked.phrases, "Scores": ranked.scores},
                                 ensure_ascii=False) + "\n")
    os.replace(out.name, path)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as out:
        json.dump(value, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(out.name, path)


def evaluate_split(model: KeyphraseModel, documents: Sequence[DocumentFeatures], args: argparse.Namespace,
                   split: str, runtime: Runtime, pad_token_id: int
                   ) -> tuple[dict[str, Any] | None, list[RankedPhrases]]:
    """Decode one split and, where it has references, score it (on rank 0)."""
    scoring = scoring_of(args, split)
    top_k = args.return_num or max(k for k in scoring.ks if isinstance(k, int))
    pooling = PhrasePooling(getattr(args, "phrase_pooling", "max"))  # runs saved before it existed: max
    predictions = decode_documents(model, documents, runtime, args.per_gpu_test_batch_size, top_k,
                                   pad_token_id, description=split, pooling=pooling)
    reference = config.reference_file(args, split)
    if not runtime.is_main or not reference.is_file():
        return None, predictions
    source = config.split_file(args, split) if args.present_only else None
    doc_tokens = {doc.url: doc.doc_tokens for doc in documents}
    scores = score_split(predictions, reference, scoring, source, doc_tokens)
    scores["unread"] = {"documents_cut": sum(doc.words_cut > 0 for doc in documents),
                        "words": sum(doc.words_cut for doc in documents),
                        "gold_occurrences": sum(doc.gold_cut for doc in documents)}
    return scores, predictions


def split_features(args: argparse.Namespace, split: str, tokenizer, options: FeatureOptions
                   ) -> list[DocumentFeatures]:
    path = config.split_file(args, split)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: run `bertkpe preprocess --dataset_class "
                         f"{args.dataset_class} --output_path {args.preprocess_folder}` first")
    return load_features(path, tokenizer, options, cache_dir=args.cached_features_dir, workers=args.feature_workers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_test_arguments(parser)


def apply_checkpoint_options(args: argparse.Namespace, kpe: dict[str, Any]) -> None:
    """Take what the test flags leave open from the checkpoint, and refuse flags that
    contradict it (the original `test.sh` passes the training flags again)."""
    contradictions = [f"--{flag} {getattr(args, flag)} (the checkpoint has {kpe[flag]})"
                      for flag in ("model_class", "pretrain_model_type", "max_phrase_words")
                      if getattr(args, flag) is not None and kpe.get(flag) is not None
                      and str(getattr(args, flag)) != str(kpe[flag])]
    if contradictions:
        raise SystemExit(f"error: {args.eval_checkpoint}: " + "; ".join(contradictions))
    if args.dataset_class is None:
        if not kpe.get("dataset_class"):
            raise SystemExit(f"error: {args.eval_checkpoint} does not record its dataset class: pass --dataset_class")
        args.dataset_class = kpe["dataset_class"]
        args.dataset_name = args.dataset_name or kpe.get("dataset_name")
    if args.max_token is None:
        args.max_token = int(kpe.get("max_token") or 510)


def test_run_dir(args: argparse.Namespace, checkpoint: Path, runtime: Runtime) -> Path:
    """A fresh folder per test: the default name tells the data, the run, the checkpoint and
    the time, and is never one that holds a test already; a taken --run_name is refused."""
    output = Path(args.output_dir)
    name = args.run_name
    if name is None:
        stem = (f"test_{config.dataset_name(args)}_{checkpoint.resolve().parent.name}-{checkpoint.name}_"
                f"{time.strftime('%Y%m%d-%H%M%S')}")
        name = next(candidate for candidate in (stem, *(f"{stem}-{n}" for n in range(2, 10_000)))
                    if not (output / candidate).exists())
    name, taken = runtime.from_main(name, (output / name / "metrics.json").is_file())
    if taken:
        raise SystemExit(f"error: {output / name} already holds a test: choose another --run_name")
    return output / name


def run(args: argparse.Namespace) -> int:
    runtime = setup_runtime(args.no_cuda)
    try:
        checkpoint = resolve_checkpoint(args.eval_checkpoint)
        kpe = read_kpe_config(checkpoint)
        apply_checkpoint_options(args, kpe)
        run_dir = test_run_dir(args, checkpoint, runtime)
        setup_logging(run_dir / "test.log", runtime.is_main)
        set_precision(runtime, args.fp16, args.bf16)
        seed_everything(args.seed)
        tokenizer = load_tokenizer(str(checkpoint))
        config.check_max_token_flag(args.max_token, str(checkpoint))
        config.resolve_document_flags(args)
        options = FeatureOptions(tokenizer=str(checkpoint), max_token=args.max_token,
                                 max_phrase_words=int(kpe["max_phrase_words"]), max_doc_tokens=args.max_doc_tokens,
                                 window_overlap=args.window_overlap)
        model = load_model(checkpoint, runtime.device)
        metrics: dict[str, Any] = {}
        for split in args.splits:
            documents = split_features(args, split, tokenizer, options)
            scores, predictions = evaluate_split(model, documents, args, split, runtime,
                                                 tokenizer.pad_token_id or 0)
            if not runtime.is_main:
                continue
            write_predictions(run_dir / f"predictions.{split}.jsonl", predictions)
            if scores is not None:
                metrics[split] = scores
                logger.info("%s (%d documents):\n%s", split, len(documents), format_split_scores(scores))
            else:
                logger.info("%s: no reference file, wrote predictions only", split)
        if runtime.is_main:
            write_json(run_dir / "metrics.json", metrics)
            logger.info("wrote %s", run_dir)
        return 0
    finally:
        teardown_runtime(runtime)
