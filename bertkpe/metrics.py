"""Keyphrase scores: F1/P/R@k under the two standard protocols, and `bertkpe score`.

- ``openkp``: the official MS MARCO OpenKP ``evaluate.py``, reproduced exactly: phrases
  are word lists, lower-cased and joined with single spaces, a phrase whose first word
  is empty is dropped, both sides are de-duplicated, no stemming, k = 1, 3, 5. Every
  document counts in the mean. Where a document has no reference left the official
  script divides by zero; here its R@k (and so F1@k) is 0, and it still counts.
- ``kp20k``: the stemmed protocol of the KP20K literature (as in the original BERT-KPE
  scorer): lower-case, unicode NFD, punctuation split off words, a prediction matches if
  its text or its Porter-stemmed text equals a reference's text or stemmed text. Both
  sides are de-duplicated by stem (first kept), k = 1, 3, 5, 10, and documents without a
  reference are counted and reported but left out of the mean. References are all gold
  keyphrases unless ``doc_words`` are given (present-only scoring).

P@k always divides by k, so a list shorter than k is scored as if padded with misses.
"""
from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Optional, Sequence, Union

from bertkpe.data.matching import get_normalizer

PROTOCOLS = ("openkp", "kp20k")
OPENKP_KS = (1, 3, 5)
KP20K_KS = (1, 3, 5, 10)
DEFAULT_KS = {"openkp": OPENKP_KS, "kp20k": KP20K_KS}

# A keyphrase is a list of words; a plain string is split on whitespace.
Phrase = Union[str, Sequence[str]]
Keyphrases = Mapping[str, Sequence[Phrase]]
Scores = dict[str, float]


def _words(phrase: Phrase) -> Sequence[str]:
    return phrase.split() if isinstance(phrase, str) else phrase


def _dedup(items: Sequence[str]) -> list[str]:
    """Order-keeping de-duplication (first occurrence kept), as the official script does."""
    return list(dict.fromkeys(items))


def _prf(hits: int, k: int, num_references: int) -> Scores:
    precision = hits / k
    recall = hits / num_references if num_references else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {f"F1@{k}": f1, f"P@{k}": precision, f"R@{k}": recall}


def _scores_at(matches: Sequence[bool], ks: Sequence[int], num_references: int) -> Scores:
    scores: Scores = {}
    for k in ks:
        scores.update(_prf(sum(matches[:k]), k, num_references))
    return scores


def _mean(rows: Sequence[Scores], ks: Sequence[int]) -> Scores:
    """Macro average; 0.0 over no rows, so an empty evaluation reports zeros, not NaN."""
    keys = [f"{name}@{k}" for k in ks for name in ("F1", "P", "R")]
    return {key: sum(row[key] for row in rows) / len(rows) if rows else 0.0 for key in keys}


def _require_urls(missing: set[str], what: str) -> None:
    """Raise naming (the first few of) the `missing` urls, if any."""
    if missing:
        shown = sorted(map(str, missing))
        more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
        raise ValueError(f"{what}: {', '.join(shown[:5])}{more}")


def _check_urls(predictions: Mapping[str, object], references: Mapping[str, object]) -> None:
    """Both sides must cover the same documents, as the official script demands."""
    _require_urls(references.keys() - predictions.keys(), "predictions lack reference url(s)")
    _require_urls(predictions.keys() - references.keys(), "predictions have url(s) absent from references")


# --------------------------------------------------------------------------- openkp

def _openkp_texts(phrases: Sequence[Phrase]) -> list[str]:
    """The official `remove_empty` + `normalize_answer`: drop a phrase whose first word is empty."""
    texts = []
    for phrase in phrases:
        words = _words(phrase)
        if len(words) > 0 and len(words[0]) > 0:
            texts.append(" ".join(word.lower() for word in words).rstrip())
    return texts


def document_scores_openkp(candidates: Sequence[Phrase], references: Sequence[Phrase],
                           ks: Sequence[int] = OPENKP_KS) -> Scores:
    """One document's F1/P/R@k under the official OpenKP protocol (all 0 without references)."""
    reference_set = set(_openkp_texts(references))
    matches = [text in reference_set for text in _dedup(_openkp_texts(candidates))]
    return _scores_at(matches, ks, len(reference_set))


def score_openkp(predictions: Keyphrases, references: Keyphrases, ks: Sequence[int] = OPENKP_KS) -> Scores:
    """Mean over all documents of the official OpenKP scores, matched by url."""
    _check_urls(predictions, references)
    rows = [document_scores_openkp(predictions[url], references[url], ks) for url in references]
    without = sum(not _openkp_texts(phrases) for phrases in references.values())
    return {**_mean(rows, ks), "num_docs": len(rows), "num_docs_without_reference": without}


# --------------------------------------------------------------------------- kp20k

class _Forms(NamedTuple):
    text: str
    stem: str


def _kp20k_tokens(text: str) -> list[str]:
    """Lower-case, NFD, and split every punctuation or symbol character into its own token.

    Only NFD, no removal of accents: composed and decomposed forms then compare equal, as
    in the original scorer, while "café" and "cafe" stay different words. Splitting on the
    unicode category (not on ``\\w``) keeps NFD combining accents inside their word.
    """
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(f" {char} " if unicodedata.category(char)[0] in "PS" else char for char in text).split()


def _kp20k_forms(phrase: Phrase) -> Optional[_Forms]:
    tokens = _kp20k_tokens(" ".join(_words(phrase)))
    if not tokens:
        return None
    stem = get_normalizer("porter")
    return _Forms(" ".join(tokens), " ".join(stem(token) for token in tokens))


def _dedup_by_stem(phrases: Sequence[Phrase]) -> list[_Forms]:
    """Normalised, non-empty phrases, de-duplicated by stemmed form (first kept)."""
    unique: dict[str, _Forms] = {}
    for forms in map(_kp20k_forms, phrases):
        if forms is not None:
            unique.setdefault(forms.stem, forms)
    return list(unique.values())


def _stemmed_document(doc_words: Sequence[str]) -> str:
    """Stemmed document tokens padded with spaces, so phrase presence is a substring test."""
    stem = get_normalizer("porter")
    return " " + " ".join(stem(token) for word in doc_words for token in _kp20k_tokens(word)) + " "


def document_scores_kp20k(predictions: Sequence[Phrase], references: Sequence[Phrase],
                          ks: Sequence[int] = KP20K_KS,
                          doc_words: Optional[Sequence[str]] = None) -> Optional[Scores]:
    """One document's stemmed F1/P/R@k; None when it has no reference to score against.

    With `doc_words`, only references whose stemmed tokens occur contiguously in the
    stemmed document count (present-only scoring, as the original toolkit reported).
    """
    gold = _dedup_by_stem(references)
    if doc_words is not None:
        document = _stemmed_document(doc_words)
        gold = [forms for forms in gold if f" {forms.stem} " in document]
    if not gold:
        return None
    targets = {form for forms in gold for form in forms}
    matches = [forms.text in targets or forms.stem in targets for forms in _dedup_by_stem(predictions)]
    return _scores_at(matches, ks, len(gold))


def score_kp20k(predictions: Keyphrases, references: Keyphrases, ks: Sequence[int] = KP20K_KS,
                doc_words: Optional[Mapping[str, Sequence[str]]] = None) -> Scores:
    """Macro average of the stemmed scores over documents that have a reference, matched by url."""
    _check_urls(predictions, references)
    if doc_words is not None:
        _require_urls(references.keys() - doc_words.keys(), "present-only source lacks url(s)")
    rows = [document_scores_kp20k(predictions[url], references[url], ks,
                                  None if doc_words is None else doc_words[url]) for url in references]
    scored = [row for row in rows if row is not None]
    return {**_mean(scored, ks), "num_docs": len(rows), "num_docs_without_reference": len(rows) - len(scored)}


def score(predictions: Keyphrases, references: Keyphrases, protocol: str,
          doc_words: Optional[Mapping[str, Sequence[str]]] = None) -> Scores:
    """Score with a protocol by name, at its standard k values."""
    if protocol == "openkp":
        if doc_words is not None:
            raise ValueError("present-only scoring applies to the kp20k protocol only")
        return score_openkp(predictions, references)
    if protocol == "kp20k":
        return score_kp20k(predictions, references, doc_words=doc_words)
    raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")


# --------------------------------------------------------------------------- files

def _json_lines(path: Union[str, Path], fields: Sequence[str]) -> Iterator[tuple[int, str, dict]]:
    """(line number, url as str, object) per non-blank line; errors name the file and line."""
    seen: set[str] = set()
    with open(path, encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(item, dict):
                raise ValueError(f"{where}: expected a JSON object")
            for field in ("url", *fields):
                if field not in item:
                    raise ValueError(f"{where}: missing field {field!r}")
            url = item["url"]
            if isinstance(url, bool) or not isinstance(url, (str, int)):
                raise ValueError(f"{where}: url must be a string or an integer")
            url = str(url)
            if url in seen:
                raise ValueError(f"{where}: duplicate url {url!r}")
            seen.add(url)
            yield line_no, url, item


def _is_words(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


def read_keyphrase_file(path: Union[str, Path]) -> dict[str, list[list[str]]]:
    """Read OpenKP-layout JSON lines ``{"url", "KeyPhrases": [[words], ...]}`` ("Scores" ignored).

    Entries may be word lists or plain strings (split on whitespace); urls become strings.
    """
    keyphrases = {}
    for line_no, url, item in _json_lines(path, ("KeyPhrases",)):
        phrases = item["KeyPhrases"]
        if not isinstance(phrases, list) or not all(isinstance(p, str) or _is_words(p) for p in phrases):
            raise ValueError(f"{path}:{line_no}: KeyPhrases must be a list of word lists or strings")
        keyphrases[url] = [list(_words(phrase)) for phrase in phrases]
    return keyphrases


def read_doc_words(path: Union[str, Path]) -> dict[str, list[str]]:
    """Read the ``doc_words`` of a preprocessed JSON-lines file, by url (for present-only scoring)."""
    documents = {}
    for line_no, url, item in _json_lines(path, ("doc_words",)):
        if not _is_words(item["doc_words"]):
            raise ValueError(f"{path}:{line_no}: doc_words must be a list of strings")
        documents[url] = item["doc_words"]
    return documents


# --------------------------------------------------------------------------- command line

def format_scores(scores: Mapping[str, float], ks: Sequence[int]) -> str:
    """A small F1/P/R table, one row per k."""
    lines = [f"{'':>4} {'F1':>7} {'P':>7} {'R':>7}"]
    lines += [f"{'@' + str(k):>4} {scores[f'F1@{k}']:7.4f} {scores[f'P@{k}']:7.4f} {scores[f'R@{k}']:7.4f}"
              for k in ks]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="JSON lines with url and KeyPhrases (ranked)")
    parser.add_argument("references", help="JSON lines with url and KeyPhrases (gold)")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--present_only_source", default=None, metavar="FILE",
                        help="kp20k only: preprocessed JSON lines with url and doc_words; "
                             "score against the references present in each document")
    parser.add_argument("--output", default=None, metavar="FILE", help="write the scores as a JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        predictions = read_keyphrase_file(args.predictions)
        references = read_keyphrase_file(args.references)
        doc_words = read_doc_words(args.present_only_source) if args.present_only_source else None
        scores = score(predictions, references, args.protocol, doc_words=doc_words)
        if args.output:
            Path(args.output).write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.protocol}: {scores['num_docs']} documents, "
          f"{scores['num_docs_without_reference']} without reference")
    print(format_scores(scores, DEFAULT_KS[args.protocol]))
    return 0
