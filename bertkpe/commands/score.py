"""`bertkpe score`: score a predictions file against a reference file, under a protocol,
a named preset or a dataset class's scoring, with each convention papers differ in as a
switch. Under the kp20k protocol both files' phrases, as word lists or as written, are
split into words by one word splitter (the dataset class's, else the KP20K tokenizer), so
gold keyphrases as published score as their preprocessed references do."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from bertkpe.dataset_classes import WORD_SPLITTERS, dataset_class
from bertkpe.metrics import (AVERAGINGS, EMPTY_DOCUMENT_POLICIES, PRESETS, PROTOCOLS, REFERENCE_SETS, K, ScoringConfig,
                             check_k, format_scores, read_doc_words, read_keyphrase_file, score)


def parse_k(text: str) -> K:
    """A command-line cut-off: a positive integer, M or O."""
    k: K = int(text) if text.isdigit() else text.upper()
    try:
        return check_k(k)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="JSON lines with url and KeyPhrases (ranked)")
    parser.add_argument("references", help="JSON lines with url and KeyPhrases (gold)")
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--protocol", choices=PROTOCOLS, help="a protocol with its own defaults")
    base.add_argument("--preset", choices=list(PRESETS),
                      help="a named configuration: openkp (official script), kp20k (all references), "
                           "bert-kpe-kp20k (the original BERT-KPE toolkit: present references, "
                           "documents without one left out)")
    base.add_argument("--dataset_class", default=None,
                      help="score as training and test.py score this dataset class (openkp, kp20k, "
                           "multidata; multidata needs --language or --stemmer)")
    parser.add_argument("--language", default=None,
                        help="with --dataset_class multidata: the corpus language, which picks the stemmer")
    parser.add_argument("--references", dest="reference_set", choices=REFERENCE_SETS, default=None,
                        help="score against all references or only those present in the document "
                             "(unset: the preset's, else present with --present_only_source, else all)")
    parser.add_argument("--present_only_source", default=None, metavar="FILE",
                        help="kp20k only: preprocessed JSON lines with url and doc_words; "
                             "score against the references present in each document")
    parser.add_argument("--average", choices=AVERAGINGS, default=None,
                        help="macro: mean of per-document scores; micro: pooled hits over pooled "
                             "cut-offs and references (unset: the preset's or macro)")
    parser.add_argument("--ks", nargs="+", type=parse_k, default=None, metavar="K",
                        help="cut-offs: integers, M (all predictions), O (as many as gold references) "
                             "(unset: the preset's or the protocol's, 1 3 5 for openkp, 1 3 5 10 for kp20k)")
    parser.add_argument("--stemmer", default=None,
                        help="kp20k only: stemmer for matching: porter, none or a Snowball language "
                             "such as french (unset: porter)")
    parser.add_argument("--word_splitter", choices=list(WORD_SPLITTERS), default=None,
                        help="kp20k only: the splitter both files' phrases (and --present_only_source's words) "
                             "go through before matching: kp20k, the KP20K tokenizer (\"Web-Based\" reads "
                             "\"Web Based\"), liaad (hyphenated words kept whole) or whitespace "
                             "(unset: the dataset class's, else kp20k)")
    parser.add_argument("--empty_documents", choices=EMPTY_DOCUMENT_POLICIES, default=None,
                        help="documents without a reference: counted with zero scores or left out "
                             "(unset: the preset's or the protocol's, count for openkp, drop for kp20k)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write the scores as a JSON object, with the configuration under \"scoring\"")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields set by switches."""
    references = args.reference_set or ("present" if args.present_only_source else None)
    switches = {"references": references, "averaging": args.average, "ks": args.ks,
                "stemmer": args.stemmer, "empty_documents": args.empty_documents,
                "word_splitter": args.word_splitter}
    return {field: value for field, value in switches.items() if value is not None}


def _dataset_class_scoring(args: argparse.Namespace) -> ScoringConfig:
    """The configuration `bertkpe test` uses for a dataset class (its protocol and stemmer)."""
    kind = dataset_class(args.dataset_class)
    if kind.stemmer is None and not (args.language or args.stemmer):
        raise ValueError(f"--dataset_class {kind.name} stems by corpus language: pass --language or --stemmer")
    return kind.scoring(args.stemmer or kind.stemmer_for(args.language))


def run(args: argparse.Namespace, given: set[str]) -> int:
    try:
        overrides = _overrides(args)
        base = PRESETS[args.preset] if args.preset else ScoringConfig(args.protocol) if args.protocol \
            else _dataset_class_scoring(args)
        config = dataclasses.replace(base, **overrides)
        if config.references == "present" and not args.present_only_source:
            raise ValueError("present-only scoring needs --present_only_source FILE (JSON lines with doc_words)")
        if config.references == "all" and args.present_only_source:
            raise ValueError("--present_only_source is read for present-only scoring only (--references present)")
        predictions = read_keyphrase_file(args.predictions)
        references = read_keyphrase_file(args.references)
        doc_words = read_doc_words(args.present_only_source) if args.present_only_source else None
        scores = score(predictions, references, config, doc_words=doc_words)
        if args.output:
            Path(args.output).write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    policy = "left out" if config.empty_documents == "drop" else "counted as zeros"
    print(f"scoring: {config.describe()}")
    print(f"{scores['num_docs']} documents, {scores['num_docs_without_reference']} without reference ({policy})")
    print(format_scores(scores, config.ks))
    return 0
