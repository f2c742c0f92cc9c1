"""Decoding a split with a model and scoring it, streaming; a checkpoint's test run."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from bertkpe.hub import checkpoint_folder, is_hub_id
from bertkpe.data.batching import iterate, length_grouped_batches
from bertkpe.data.features import DocumentFeatures, FeatureOptions
from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.data.store import FeatureStore, open_store
from bertkpe.data.tokenizers import check_max_token_of, load_tokenizer
from bertkpe.dataset_classes import DEFAULT_TEXT_KIND, dataset_class
from bertkpe.files import replaced, write_json
from bertkpe.decoding import PhrasePooling, RankedPhrases, phrase_pooling, rank_batch
from bertkpe.metrics import Scorer, ScoringConfig, format_scores, iter_doc_words, iter_keyphrase_file
from bertkpe.models import KeyphraseModel, load_model, read_kpe_config
from bertkpe.options import TestOptions
from bertkpe.runtime import Runtime, seed_everything, set_precision, setup_logging

logger = logging.getLogger("bertkpe")


# Encoder windows decoded as one unit (length-sorted into batches, written in order): 1024
# abstracts, or a few dozen long papers, so memory is bounded whatever the documents' lengths.
DECODE_CHUNK = 1024


def decode_chunks(windows: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) document ranges: a chunk takes the documents whose first window falls
    in its run of DECODE_CHUNK windows (so it holds at most DECODE_CHUNK windows more than
    its last document's). They depend on the documents alone, not on the processes."""
    if not len(windows):
        return []
    chunk_of = (np.cumsum(windows) - windows) // DECODE_CHUNK
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(chunk_of)) + 1, [len(windows)]]).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def decode_chunk(model: KeyphraseModel, documents: Sequence[DocumentFeatures], runtime: Runtime, batch_size: int,
                 top_k: int, pad_token_id: int, pooling: PhrasePooling) -> list[RankedPhrases]:
    """Ranked phrases of a few documents, in their order, decoded in batches of similar
    length of at most `batch_size` encoder windows."""
    lengths = [len(doc.input_ids) for doc in documents]
    batches = length_grouped_batches(lengths, batch_size, shuffle=False,
                                     windows=[doc.num_windows for doc in documents])
    results: dict[int, RankedPhrases] = {}
    for batch in iterate(documents, batches, pad_token_id):
        with runtime.autocast():
            ranked = rank_batch(model, batch, [documents[i] for i in batch.indices], top_k, runtime.device, pooling)
        results.update(zip(batch.indices, ranked))
    return [results[index] for index in range(len(documents))]


@torch.inference_mode()
def decode_documents(model: KeyphraseModel, documents: Sequence[DocumentFeatures], runtime: Runtime,
                     batch_size: int, top_k: int, pad_token_id: int = 0, description: str = "decode",
                     pooling: PhrasePooling = PhrasePooling()) -> Iterator[RankedPhrases]:
    """Ranked phrases of every document, in document order, yielded on rank 0 as they are
    decoded; memory holds one round of chunks, whatever the number of documents.

    Documents are decoded in chunks of about DECODE_CHUNK windows (`decode_chunks`),
    whatever the number of processes, so every document meets the same batch in one
    process as under torchrun and the output is the same. Under torchrun, round r gives
    chunk r x world_size + k to rank k, and rank 0 gathers the round's chunks and yields
    them in order; the other ranks yield nothing but must run the generator to its end
    with rank 0."""
    was_training = model.training
    model.eval()
    windows = documents.lengths("windows") if isinstance(documents, FeatureStore) else \
        np.asarray([doc.num_windows for doc in documents], dtype=np.int64)
    chunks = decode_chunks(windows)
    progress = tqdm(total=len(documents), desc=description, unit="doc", leave=False, disable=not runtime.is_main)
    for first_chunk in range(0, len(chunks), runtime.world_size):
        chunk = first_chunk + runtime.rank
        start, end = chunks[chunk] if chunk < len(chunks) else (0, 0)
        mine = decode_chunk(model, [documents[index] for index in range(start, end)], runtime, batch_size, top_k,
                            pad_token_id, pooling) if start < end else []
        parts = [mine]
        if runtime.distributed:
            parts = [None] * runtime.world_size if runtime.is_main else None
            dist.gather_object(mine, parts, dst=0)
        if runtime.is_main:
            for part in parts:
                yield from part
                progress.update(len(part))
    progress.close()
    model.train(was_training)


@dataclass(frozen=True)
class Decoding:
    """How a split is decoded: encoder windows per batch, phrases kept per document (None:
    the largest k its scoring reports) and how mention scores become phrase scores."""

    batch_size: int
    top_k: int | None = None
    pooling: PhrasePooling = PhrasePooling()


def scoring_of(data: PreprocessedData, split: str, present_only: bool = False) -> ScoringConfig:
    """The split's scoring configuration: its dataset class's, with the stemmer its data was matched with."""
    return dataset_class(data.dataset_class).scoring(data.stemmer(split), present_only=present_only)


# Document lengths in sub-tokens (the whole document, read or not), for scores by length.
LENGTH_BUCKETS = (("0-512", 0, 512), ("512-1k", 512, 1024), ("1k-2k", 1024, 2048), ("2k-4k", 2048, 4096),
                  ("4k-8k", 4096, 8192), (">8k", 8192, math.inf))


def score_split(predictions_path: Path, reference_path: Path, scoring: ScoringConfig,
                present_only_source: Path | None = None, doc_tokens: Sequence[int] | None = None
                ) -> dict[str, Any]:
    """Scores of a split's predictions file, with their configuration under "scoring";
    given each document's length (in the file's order), also F1/P/R@5 and @10 by length
    bucket under "by_length" (buckets with documents).

    The files are read side by side, one document at a time: the references (and the
    present-only source) must list the predictions' documents in the same order, as
    `bertkpe preprocess` writes them."""
    overall = Scorer(scoring)
    by_length = dataclasses.replace(scoring, ks=(5, 10))
    buckets = {name: Scorer(by_length) for name, _, _ in LENGTH_BUCKETS}
    predictions = iter_keyphrase_file(predictions_path)
    sources = iter_doc_words(present_only_source) if present_only_source is not None else None
    for position, (line, url, references) in enumerate(iter_keyphrase_file(reference_path)):
        predicted_line, predicted_url, predicted = next(predictions, (None, None, None))
        if predicted_url != url:
            found = f"line {predicted_line} has url {predicted_url!r}" if predicted_line else "it has no more lines"
            raise ValueError(f"{reference_path}:{line}: url {url!r}, but in {predictions_path} {found}: "
                             f"predictions and references must list the same documents in the same order")
        doc_words = None
        if sources is not None:
            source_line, source_url, doc_words = next(sources, (None, None, None))
            if source_url != url:
                raise ValueError(f"{present_only_source}:{source_line}: url {source_url!r}, expected {url!r} "
                                 f"(line {line} of {reference_path})")
        overall.add(predicted, references, doc_words)
        if doc_tokens is not None:
            length = doc_tokens[position]
            name = next(name for name, low, high in LENGTH_BUCKETS if low <= length < high)
            buckets[name].add(predicted, references, doc_words)
    extra = next(predictions, None)
    if extra is not None:
        raise ValueError(f"{predictions_path}:{extra[0]}: url {extra[1]!r} is absent from {reference_path}")
    scores = {**overall.result(), "scoring": scoring.to_dict()}
    if doc_tokens is not None:
        scores["by_length"] = {name: bucket.result() for name, bucket in buckets.items() if bucket.num_docs}
    return scores


def mean_over_corpora(per_corpus: dict[str, dict[str, Any]], best_metrics: dict[str, str]) -> dict[str, Any]:
    """One split of several corpora: each metric's mean over the corpora (each corpus weighs
    the same, whatever its size), their documents, each corpus's own scores under
    "corpora", and under "selection" the mean of each corpus's best-checkpoint metric."""
    names = [name for name in next(iter(per_corpus.values()))
             if "@" in name and all(name in scores for scores in per_corpus.values())]
    means = {name: sum(scores[name] for scores in per_corpus.values()) / len(per_corpus) for name in names}
    chosen = sorted(set(best_metrics[corpus] for corpus in per_corpus))
    return {**means, "num_docs": sum(int(scores["num_docs"]) for scores in per_corpus.values()),
            "selection": sum(per_corpus[corpus][best_metrics[corpus]] for corpus in per_corpus) / len(per_corpus),
            "selection_metric": f"mean {'/'.join(chosen)} over {len(per_corpus)} corpora", "corpora": per_corpus}


def format_split_scores(scores: dict[str, Any]) -> str:
    """The score table at the configuration's ks, under a line naming the configuration; for
    several corpora, each one's and their mean."""
    if "corpora" in scores:
        blocks = [f"{name} ({corpus['num_docs']} documents)\n{format_split_scores(corpus)}"
                  for name, corpus in scores["corpora"].items()]
        means = ", ".join(f"{name} {scores[name]:.4f}" for name in scores if name.startswith("F1@"))
        return "\n".join(blocks + [f"mean over {len(scores['corpora'])} corpora: {means}; "
                                    f"{scores['selection_metric']} {scores['selection']:.4f}"])
    scoring = ScoringConfig(**scores["scoring"])
    lines = [f"scoring: {scoring.describe()}", format_scores(scores, scoring.ks)]
    for name, bucket in scores.get("by_length", {}).items():
        lines.append(f"{name:>7} sub-tokens: {bucket['num_docs']:5d} documents, F1@5 {bucket['F1@5']:.4f}, "
                     f"F1@10 {bucket['F1@10']:.4f}")
    return "\n".join(lines)


def write_predictions(path: Path, predictions: Iterable[RankedPhrases]) -> None:
    """OpenKP submission layout, one JSON line per document, in source order, written as
    the predictions come and moved into place once complete."""
    with replaced(path) as out:
        for ranked in predictions:
            out.write(json.dumps({"url": ranked.url, "KeyPhrases": ranked.phrases, "Scores": ranked.scores},
                                 ensure_ascii=False) + "\n")


def evaluate_split(model: KeyphraseModel, documents: FeatureStore, data: PreprocessedData, split: str,
                   runtime: Runtime, decoding: Decoding, pad_token_id: int, predictions_path: Path,
                   present_only: bool = False) -> dict[str, Any] | None:
    """Decode one split into `predictions_path` (written by rank 0) and, where the split has
    references, score it there; the scores on rank 0, None elsewhere or without references."""
    scoring = scoring_of(data, split, present_only)
    top_k = decoding.top_k or max(k for k in scoring.ks if isinstance(k, int))
    predictions = decode_documents(model, documents, runtime, decoding.batch_size, top_k, pad_token_id,
                                   description=split, pooling=decoding.pooling)
    if not runtime.is_main:
        for _ in predictions:  # the other ranks decode their chunks and send them to rank 0
            pass
        return None
    write_predictions(predictions_path, predictions)
    reference = data.reference_file(split)
    if not reference.is_file():
        return None
    source = data.split_file(split) if present_only else None
    scores = score_split(predictions_path, reference, scoring, source, documents.column("doc_tokens"))
    words_cut = documents.column("words_cut")
    scores["unread"] = {"documents_cut": int((words_cut > 0).sum()), "words": int(words_cut.sum()),
                        "gold_occurrences": int(documents.column("gold_cut").sum())}
    return scores


def split_store(data: PreprocessedData, split: str, tokenizer, features: FeatureOptions, cache_dir: str | None,
                workers: int | None = None) -> FeatureStore:
    """The feature store of a preprocessed split, built first where none matches it."""
    path = data.require(split)
    store = open_store(path, tokenizer, features, cache_dir=cache_dir, workers=workers)
    logger.info("%s: %s", path.name, store.describe_cuts())
    return store


def apply_checkpoint_options(options: TestOptions, kpe: dict[str, Any]) -> None:
    """Take what the test flags leave open from the checkpoint, and refuse flags that
    contradict it (the original `test.sh` passes the training flags again)."""
    contradictions = [f"--{flag} {getattr(options, flag)} (the checkpoint has {kpe[flag]})"
                      for flag in ("model_class", "pretrain_model_type", "max_phrase_words")
                      if getattr(options, flag) is not None and kpe.get(flag) is not None
                      and str(getattr(options, flag)) != str(kpe[flag])]
    if contradictions:
        raise SystemExit(f"error: {options.eval_checkpoint}: " + "; ".join(contradictions))
    if options.dataset_class is None:
        if not kpe.get("dataset_class"):
            raise SystemExit(f"error: {options.eval_checkpoint} does not record its dataset class: "
                             f"pass --dataset_class")
        options.dataset_class = kpe["dataset_class"]
        options.dataset_name = options.dataset_name or kpe.get("dataset_name")
    if options.max_token is None:
        options.max_token = int(kpe.get("max_token") or 510)


def test_run_dir(options: TestOptions, checkpoint: Path, runtime: Runtime) -> Path:
    """A fresh folder per test: the default name tells the data, the run, the checkpoint and
    the time, and is never one that holds a test already; a taken --run_name is refused."""
    output = Path(options.output_dir)
    name = options.run_name
    if name is None:
        source = f"{checkpoint.resolve().parent.name}-{checkpoint.name}" \
            if Path(options.eval_checkpoint).exists() or not is_hub_id(options.eval_checkpoint) \
            else options.eval_checkpoint.replace("/", "_")
        stem = f"test_{options.data.name}_{source}_{time.strftime('%Y%m%d-%H%M%S')}"
        name = next(candidate for candidate in (stem, *(f"{stem}-{n}" for n in range(2, 10_000)))
                    if not (output / candidate).exists())
    name, taken = runtime.from_main(name, (output / name / "metrics.json").is_file())
    if taken:
        raise SystemExit(f"error: {output / name} already holds a test: choose another --run_name")
    return output / name


def test_checkpoint(options: TestOptions, runtime: Runtime) -> dict[str, Any]:
    """Decode and score the splits with a checkpoint, with its own options where the flags
    leave them open; writes metrics.json and predictions into a new test folder."""
    try:
        checkpoint = checkpoint_folder(options.eval_checkpoint, options.revision)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: --eval_checkpoint {options.eval_checkpoint}: {error}") from None
    kpe = read_kpe_config(checkpoint)
    apply_checkpoint_options(options, kpe)
    run_dir = test_run_dir(options, checkpoint, runtime)
    setup_logging(run_dir / "test.log", runtime.is_main)
    set_precision(runtime, options.fp16, options.bf16)
    seed_everything(options.seed)
    tokenizer = load_tokenizer(str(checkpoint))
    try:
        check_max_token_of(options.max_token, str(checkpoint))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    options.resolve_documents(options.max_token)
    features = FeatureOptions(tokenizer=str(checkpoint), max_token=options.max_token,
                              max_phrase_words=int(kpe["max_phrase_words"]), max_doc_tokens=options.max_doc_tokens,
                              window_overlap=options.window_overlap)
    model = load_model(checkpoint, runtime.device)
    text_kind = options.text_kind or options.data.text_kind() or kpe.get("text_kind")
    decoding = Decoding(options.per_gpu_test_batch_size, options.return_num,
                        phrase_pooling(options.phrase_pooling, text_kind))
    logger.info("ranking %s as %s", options.data.name, text_kind or f"{DEFAULT_TEXT_KIND} (no kind recorded)")
    metrics: dict[str, Any] = {}
    for split in options.splits:
        documents = split_store(options.data, split, tokenizer, features, options.cached_features_dir,
                                options.feature_workers)
        scores = evaluate_split(model, documents, options.data, split, runtime, decoding, tokenizer.pad_token_id or 0,
                                run_dir / f"predictions.{split}.jsonl", options.present_only)
        if not runtime.is_main:
            continue
        if scores is not None:
            metrics[split] = scores
            logger.info("%s (%d documents):\n%s", split, len(documents), format_split_scores(scores))
        else:
            logger.info("%s: no reference file, wrote predictions only", split)
    if runtime.is_main:
        write_json(run_dir / "metrics.json", metrics)
        logger.info("wrote %s", run_dir)
    return metrics
