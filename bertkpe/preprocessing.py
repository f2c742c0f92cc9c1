"""`bertkpe preprocess`: source corpus -> JSON lines with the positions of present keyphrases.

For a dataset named NAME (default: the dataset class) it writes, under OUTPUT_PATH/NAME/:
  NAME.{train,dev,eval}.json          one document a line: url, doc_words, keyphrases (the
                                      present ones), start_end_pos (every occurrence of each,
                                      inclusive word indices), absent_keyphrases, stemmer
                                      (OpenKP's VDOM is not copied: nothing reads it)
  NAME.{dev,eval}_candidate.json      the scoring references: url, KeyPhrases (all gold kept)
  preprocess_stats.json               the counts of `SplitStats`, per split, including what
                                      cleaning did to the gold keyphrases
  split.json                          multidata only: the seeded document split
Training files drop documents without a present keyphrase (KP20K also those outside 20-300
words); dev and eval keep every document. All files of a run are written to temporaries and
moved into place together at the end, so a failed run leaves earlier outputs untouched.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from bertkpe.data.matching import locate_keyphrases
from bertkpe.data.sources import (BadLineHandler, Document, GoldCounts, LiaadCorpus, MissingSourceError, read_kp20k,
                                  read_openkp)
from bertkpe.dataset_classes import DatasetClass, dataset_class
from bertkpe.files import LineError, StagedFiles

logger = logging.getLogger("bertkpe")

SPLITS = ("train", "dev", "eval")


class PreprocessError(Exception):
    """An option or split file that cannot be used; reported like bad input."""


@dataclass
class SplitStats:
    """Counts for one split. Every document read is kept or dropped for exactly one reason;
    skipped bad lines are not documents. Keyphrase counts are over the kept documents, and
    so is `gold_keyphrases`, which accounts for every gold keyphrase read exactly once:
    read = present + absent + duplicates_merged + the sum of dropped. Dev and eval write
    the present and absent ones as references (`reference_keyphrases_written`)."""

    documents_read: int = 0
    documents_kept: int = 0
    dropped_too_short: int = 0
    dropped_too_long: int = 0
    dropped_no_present_keyphrase: int = 0
    bad_lines_skipped: int = 0
    keyphrases_present: int = 0
    keyphrases_absent: int = 0
    keyphrases_longer_than_max: int = 0
    gold_keyphrases: GoldCounts = field(default_factory=GoldCounts)
    reference_keyphrases_written: int = 0

    def summary(self, max_phrase_words: int) -> str:
        gold = self.gold_keyphrases
        reasons = ", ".join(f"{count} {reason}" for reason, count in gold.dropped.items() if count)
        return (f"read {self.documents_read}, kept {self.documents_kept}, dropped "
                f"{self.dropped_no_present_keyphrase} without present keyphrase, {self.dropped_too_short} too short, "
                f"{self.dropped_too_long} too long; {self.bad_lines_skipped} bad lines skipped; keyphrases: "
                f"{self.keyphrases_present} present ({self.keyphrases_longer_than_max} longer than "
                f"{max_phrase_words} words), {self.keyphrases_absent} absent; gold keyphrases: {gold.read} read, "
                f"{sum(gold.dropped.values())} dropped ({reasons or 'none'}), {gold.duplicates_merged} duplicates "
                f"merged, {gold.altered_by_bracket_removal} altered by bracket removal; "
                f"{self.reference_keyphrases_written} reference keyphrases written")


def make_record(doc: Document) -> dict[str, Any]:
    """The output line of one document: present keyphrases with every occurrence, and the absent ones."""
    occurrences = locate_keyphrases(doc.words, doc.keyphrases, doc.stemmer)
    present = [(kp, occ) for kp, occ in zip(doc.keyphrases, occurrences) if occ]
    return {
        "url": doc.url,
        "doc_words": doc.words,
        "keyphrases": [kp for kp, _ in present],
        "start_end_pos": [[list(span) for span in occ] for _, occ in present],
        "absent_keyphrases": [kp for kp, occ in zip(doc.keyphrases, occurrences) if not occ],
        "stemmer": doc.stemmer,
    }


def write_split(documents: Iterable[Document], split: str, out_dir: Path, name: str, staged: StagedFiles,
                stats: SplitStats, *, max_phrase_words: int, train_words: tuple[int, int] | None = None,
                reference: bool = True) -> None:
    """Write NAME.SPLIT.json (and, for dev/eval with `reference`, its scoring reference), counting into `stats`."""
    with contextlib.ExitStack() as files:
        data_file = files.enter_context(staged.open(out_dir / f"{name}.{split}.json"))
        reference_file = None
        if split != "train" and reference:
            reference_file = files.enter_context(staged.open(out_dir / f"{name}.{split}_candidate.json"))
        for doc in documents:
            stats.documents_read += 1
            if split == "train" and train_words and len(doc.words) < train_words[0]:
                stats.dropped_too_short += 1
                continue
            if split == "train" and train_words and len(doc.words) > train_words[1]:
                stats.dropped_too_long += 1
                continue
            record = make_record(doc)
            if split == "train" and not record["keyphrases"]:
                stats.dropped_no_present_keyphrase += 1
                continue
            stats.documents_kept += 1
            stats.keyphrases_present += len(record["keyphrases"])
            stats.keyphrases_absent += len(record["absent_keyphrases"])
            stats.keyphrases_longer_than_max += sum(len(kp) > max_phrase_words for kp in record["keyphrases"])
            stats.gold_keyphrases.add(doc.gold_counts)
            data_file.write(json.dumps(record, ensure_ascii=False) + "\n")
            if reference_file is not None:
                stats.reference_keyphrases_written += len(doc.keyphrases)
                reference_file.write(json.dumps({"url": doc.url, "KeyPhrases": doc.keyphrases},
                                                ensure_ascii=False) + "\n")


def make_split(doc_ids: list[str], seed: int, ratio: tuple[float, float, float]) -> dict[str, list[str]]:
    """Shuffle with `seed`, cut by `ratio`; each split lists its ids in corpus order."""
    shuffled = list(doc_ids)
    random.Random(seed).shuffle(shuffled)
    total = sum(ratio)
    n_train = round(len(shuffled) * ratio[0] / total)
    n_dev = round(len(shuffled) * ratio[1] / total)
    cuts = {"train": set(shuffled[:n_train]), "dev": set(shuffled[n_train:n_train + n_dev]),
            "eval": set(shuffled[n_train + n_dev:])}
    return {split: [i for i in doc_ids if i in ids] for split, ids in cuts.items()}


def load_split(path: Path, doc_ids: list[str]) -> dict[str, Any]:
    """A split written by an earlier run (or by hand): {"train": [ids], "dev": [...], "eval": [...]}."""
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreprocessError(f"cannot read split file {path}: {exc}") from None
    if not isinstance(split, dict):
        raise PreprocessError(f"{path}: expected a JSON object with train/dev/eval lists")
    known, seen = set(doc_ids), set()
    for part in SPLITS:
        ids = split.get(part)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise PreprocessError(f"{path}: {part!r} must be a list of document ids")
        if unknown := [i for i in ids if i not in known]:
            raise PreprocessError(f"{path}: {part!r} names documents not in the corpus: {unknown[:5]}")
        if repeated := [i for i in ids if i in seen]:
            raise PreprocessError(f"{path}: documents listed twice: {repeated[:5]}")
        seen.update(ids)
    if len(seen) < len(known):
        logger.warning("%s: %d corpus documents are in no split and are not written", path, len(known) - len(seen))
    listed = {part: set(split[part]) for part in SPLITS}
    return {"seed": split.get("seed"), "ratio": split.get("ratio"),
            **{part: [i for i in doc_ids if i in listed[part]] for part in SPLITS}}


def _source_files(src: Path, kind: DatasetClass) -> dict[str, Path]:
    """The three source files, under SRC/CLASS/ or directly under SRC."""
    folder = src / kind.name if (src / kind.name).is_dir() else src
    files = {split: folder / file for split, file in (kind.source_files or {}).items()}
    for path in files.values():
        if not path.is_file():
            raise MissingSourceError(f"source file not found: expected {path}")
    return files


def preprocess(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole stage; returns the statistics also written to preprocess_stats.json."""
    if args.max_phrase_words < 1:
        raise PreprocessError("--max_phrase_words must be at least 1")
    if len(args.split_ratio) != 3 or min(args.split_ratio) < 0 or sum(args.split_ratio) <= 0:
        raise PreprocessError("--split_ratio takes three non-negative numbers (train dev eval)")
    src = Path(args.source_dataset_dir)
    kind = dataset_class(args.dataset_class)
    name = args.dataset_name or args.dataset_class
    out_dir = Path(args.output_path) / name
    stats = {split: SplitStats() for split in SPLITS}
    summary: dict[str, Any] = {"dataset_class": args.dataset_class, "dataset_name": name, "source": str(src),
                               "max_phrase_words": args.max_phrase_words,
                               "text_kind": args.text_kind or kind.text_kind}

    def skipper(split: str) -> BadLineHandler:
        def skip(error: LineError) -> None:
            stats[split].bad_lines_skipped += 1
            logger.warning("skipped %s", error)
        return skip if args.skip_bad_lines else None

    staged = StagedFiles()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(staged.discard)
        readers: dict[str, Callable[..., Iterator[Document]]]
        if kind.source_files is None:
            corpus = cleanup.enter_context(LiaadCorpus(src))
            language = args.language or corpus.language
            if args.split_file:
                split_ids = load_split(Path(args.split_file), corpus.doc_ids)
            else:
                split_ids = {"seed": args.split_seed, "ratio": list(args.split_ratio),
                             **make_split(corpus.doc_ids, args.split_seed, tuple(args.split_ratio))}
            summary.update(language=language, stemmer=kind.stemmer_for(language))
            logger.info("%s: %d documents, language %s (stemmer %s)", corpus.location, len(corpus.doc_ids),
                        language, summary["stemmer"])
            readers = {split: partial(corpus.documents, split_ids[split], language=language) for split in SPLITS}
        else:
            files = _source_files(src, kind)
            if kind.name == "openkp":
                readers = {split: partial(read_openkp, files[split], stemmer=kind.stemmer_for(),
                                          with_keyphrases=split != "eval" or kind.eval_has_references)
                           for split in SPLITS}
            else:
                readers = {split: partial(read_kp20k, files[split], stemmer=kind.stemmer_for()) for split in SPLITS}
        out_dir.mkdir(parents=True, exist_ok=True)
        if kind.source_files is None:
            staged.write_json(out_dir / "split.json", split_ids)
        for split in SPLITS:
            logger.info("preprocessing %s %s", name, split)
            write_split(readers[split](on_bad_line=skipper(split)), split, out_dir, name, staged, stats[split],
                        max_phrase_words=args.max_phrase_words,
                        train_words=kind.train_words, reference=split != "eval" or kind.eval_has_references)
            logger.info("%s %s: %s", name, split, stats[split].summary(args.max_phrase_words))
        summary["splits"] = {split: asdict(s) for split, s in stats.items()}
        staged.write_json(out_dir / "preprocess_stats.json", summary)
        staged.commit()
    logger.info("wrote %s", out_dir)
    return summary
