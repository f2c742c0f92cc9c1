"""Keyphrase scores: F1/P/R@k under the two standard protocols, the conventions papers differ in,
and `bertkpe score`.

- ``openkp``: the official MS MARCO OpenKP ``evaluate.py``, reproduced exactly: phrases
  are word lists, lower-cased and joined with single spaces, a phrase whose first word
  is empty is dropped, both sides are de-duplicated, no stemming, k = 1, 3, 5. Every
  document counts in the mean. Where a document has no reference left the official
  script divides by zero; here its R@k (and so F1@k) is 0, and it still counts.
- ``kp20k``: the stemmed protocol of the KP20K literature (as in the original BERT-KPE
  scorer): both sides are first split into words by the dataset class's word splitter
  (the KP20K tokenizer unless told otherwise), the one that made the preprocessed
  references and the documents' words, so a phrase scores the same whether it is given
  as those words ("web based") or as written ("Web-Based"); then lower-case, unicode
  NFD, punctuation split off words, a prediction matches if its text or its stemmed text
  (Porter unless told otherwise) equals a reference's text or stemmed text. Both sides
  are de-duplicated by stem (first kept), k = 1, 3, 5, 10, and documents without a
  reference are counted and reported but left out of the mean. References are all gold
  keyphrases unless present-only scoring is asked for.

Papers also differ in present-only vs all references, macro vs micro averaging, the
cut-offs (F1@k, F1@M over all predictions, F1@O at the number of gold phrases) and what
documents without a reference count for. A `ScoringConfig` names all of these; its
defaults are each protocol's behaviour above, and `score` records it next to the scores,
so a number can be set against a paper's.

P@k always divides by k, so a list shorter than k is scored as if padded with misses.
"""
from __future__ import annotations

import dataclasses
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

from bertkpe.data.matching import get_normalizer
from bertkpe.data.sources import WORD_SPLITTERS, WordSplitter
from bertkpe.files import LineError, json_lines

PROTOCOLS = ("openkp", "kp20k")
OPENKP_KS = (1, 3, 5)
KP20K_KS = (1, 3, 5, 10)
DEFAULT_KS = {"openkp": OPENKP_KS, "kp20k": KP20K_KS}

# Cut-offs besides integers: M, every (de-duplicated) prediction of a document; O, as many
# predictions as the document has gold references.
ALL_PREDICTIONS = "M"
ORACLE = "O"
REFERENCE_SETS = ("all", "present")
AVERAGINGS = ("macro", "micro")
EMPTY_DOCUMENT_POLICIES = ("count", "drop")
DEFAULT_STEMMER = {"openkp": None, "kp20k": "porter"}
DEFAULT_EMPTY_DOCUMENTS = {"openkp": "count", "kp20k": "drop"}
DEFAULT_WORD_SPLITTER = {"openkp": "whitespace", "kp20k": "kp20k"}

# A keyphrase is a list of words; a plain string is split on whitespace.
Phrase = Union[str, Sequence[str]]
Keyphrases = Mapping[str, Sequence[Phrase]]
Scores = dict[str, float]
K = Union[int, str]


def _words(phrase: Phrase) -> Sequence[str]:
    return phrase.split() if isinstance(phrase, str) else phrase


def _splitter(name: str) -> WordSplitter:
    """The word splitter `name`, a key of WORD_SPLITTERS."""
    _require_one_of("word_splitter", name, tuple(WORD_SPLITTERS))
    return WORD_SPLITTERS[name]


def _dedup(items: Sequence[str]) -> list[str]:
    """Order-keeping de-duplication (first occurrence kept), as the official script does."""
    return list(dict.fromkeys(items))


def _require_one_of(field: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {field} {value!r}: use one of {', '.join(map(str, allowed))}")


def check_k(k: object) -> K:
    if isinstance(k, str) and k in (ALL_PREDICTIONS, ORACLE):
        return k
    if isinstance(k, int) and not isinstance(k, bool) and k > 0:
        return k
    raise ValueError(f"invalid k {k!r}: use positive integers, {ALL_PREDICTIONS!r} or {ORACLE!r}")


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    """One scoring convention. A field left None takes its protocol's default, so
    ``ScoringConfig("kp20k")`` scores as the module's description of the protocol says.

    ``stemmer`` (kp20k only) is a `get_normalizer` name: a corpus in another language
    must be matched with its own stemmer. ``references="present"`` keeps the references
    that occur in the document (kp20k only; needs the documents' words). ``ks`` mixes
    integers with "M" and "O". ``empty_documents`` says whether a document without a
    reference is counted with zero scores ("count", the official OpenKP script) or left
    out ("drop", the KP20K literature). ``word_splitter`` (kp20k only; a key of
    `WORD_SPLITTERS`, "kp20k" unless told) splits predictions, references and documents
    into words alike before matching, as the dataset class split its text; the openkp
    protocol reads word lists, or splits on whitespace, as the official script does.
    ``ScoringConfig(**config.to_dict())`` rebuilds a recorded configuration.
    """

    protocol: str
    stemmer: Optional[str] = None
    references: str = "all"
    averaging: str = "macro"
    ks: Optional[Sequence[K]] = None
    empty_documents: Optional[str] = None
    word_splitter: Optional[str] = None

    def __post_init__(self) -> None:
        _require_one_of("protocol", self.protocol, PROTOCOLS)
        _require_one_of("references", self.references, REFERENCE_SETS)
        _require_one_of("averaging", self.averaging, AVERAGINGS)
        if self.protocol == "openkp":
            if self.stemmer is not None:
                raise ValueError("the openkp protocol matches lower-cased words without stemming: "
                                 "a stemmer applies to the kp20k protocol only")
            if self.references == "present":
                raise ValueError("present-only scoring applies to the kp20k protocol only: the openkp "
                                 "protocol scores against every reference, as the official script does")
            if self.word_splitter not in (None, "whitespace"):
                raise ValueError("the openkp protocol splits phrases on whitespace, as the official script does: "
                                 "a word splitter applies to the kp20k protocol only")
        stemmer = DEFAULT_STEMMER[self.protocol] if self.stemmer is None else self.stemmer
        if stemmer is not None:
            get_normalizer(stemmer)
        ks = tuple(map(check_k, DEFAULT_KS[self.protocol] if self.ks is None else self.ks))
        if not ks or len(set(ks)) != len(ks):
            raise ValueError(f"ks must be distinct and not empty, got {list(ks)}")
        empty_documents = self.empty_documents or DEFAULT_EMPTY_DOCUMENTS[self.protocol]
        _require_one_of("empty_documents policy", empty_documents, EMPTY_DOCUMENT_POLICIES)
        object.__setattr__(self, "stemmer", stemmer)
        object.__setattr__(self, "ks", ks)
        object.__setattr__(self, "empty_documents", empty_documents)
        object.__setattr__(self, "word_splitter", self.word_splitter or DEFAULT_WORD_SPLITTER[self.protocol])
        _splitter(self.word_splitter)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values, to record next to the scores."""
        return {**dataclasses.asdict(self), "ks": list(self.ks)}

    def describe(self) -> str:
        """One line of ``field=value`` pairs, in the words of the `bertkpe score` switches."""
        return " ".join(f"{field}={','.join(map(str, value)) if isinstance(value, list) else value}"
                        for field, value in self.to_dict().items() if value is not None)


PRESETS: dict[str, ScoringConfig] = {
    # The official MS MARCO OpenKP evaluate.py.
    "openkp": ScoringConfig("openkp"),
    # Stemmed KP20K scoring against all gold keyphrases, present and absent.
    "kp20k": ScoringConfig("kp20k"),
    # The original BERT-KPE toolkit: present references only, documents without one left out.
    "bert-kpe-kp20k": ScoringConfig("kp20k", references="present", empty_documents="drop"),
}


class _Judged(NamedTuple):
    """One document: whether each de-duplicated prediction matches, in rank order, and its number of references."""
    matches: list[bool]
    num_references: int


def _cutoff(judged: _Judged, k: K) -> int:
    if k == ALL_PREDICTIONS:
        return len(judged.matches)
    if k == ORACLE:
        return judged.num_references
    return int(k)


def _prf(hits: int, cutoff: int, num_references: int, k: K) -> Scores:
    precision = hits / cutoff if cutoff else 0.0
    recall = hits / num_references if num_references else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {f"F1@{k}": f1, f"P@{k}": precision, f"R@{k}": recall}


def _document_scores(judged: _Judged, ks: Sequence[K]) -> Scores:
    scores: Scores = {}
    for k in ks:
        cutoff = _cutoff(judged, k)
        scores.update(_prf(sum(judged.matches[:cutoff]), cutoff, judged.num_references, k))
    return scores


class Scorer:
    """Scores accumulated one document at a time, in the order given, so a split of any size
    is scored in bounded memory: macro averages keep running sums of the per-document
    scores, micro averages running counts."""

    def __init__(self, config: ScoringConfig):
        self.config = config
        self.num_docs = 0
        self.without_reference = 0
        self.counted = 0
        self.keys = [f"{name}@{k}" for k in config.ks for name in ("F1", "P", "R")]
        self.sums: dict[str, float] = dict.fromkeys(self.keys, 0)
        self.hits: dict[K, int] = dict.fromkeys(config.ks, 0)
        self.cutoffs: dict[K, int] = dict.fromkeys(config.ks, 0)
        self.references = 0

    def add(self, predictions: Sequence[Phrase], references: Sequence[Phrase],
            doc_words: Optional[Sequence[str]] = None) -> None:
        """One document: its ranked predictions, its references, and, for present-only
        scoring, its words."""
        if (self.config.references == "present") != (doc_words is not None):
            raise ValueError("present-only scoring needs the words of every document (doc_words), and only it")
        judged = _judge(self.config, predictions, references, doc_words)
        self.num_docs += 1
        if not judged.num_references:
            self.without_reference += 1
            if self.config.empty_documents == "drop":
                return
        self.counted += 1
        if self.config.averaging == "macro":
            row = _document_scores(judged, self.config.ks)
            for key in self.keys:
                self.sums[key] += row[key]
        else:
            self.references += judged.num_references
            for k in self.config.ks:
                cutoff = _cutoff(judged, k)
                self.cutoffs[k] += cutoff
                self.hits[k] += sum(judged.matches[:cutoff])

    def result(self) -> Scores:
        """F1/P/R@k (0.0 over no document, so an empty evaluation reports zeros, not NaN) and the counts."""
        scores: Scores = {}
        if self.config.averaging == "macro":
            scores = {key: self.sums[key] / self.counted if self.counted else 0.0 for key in self.keys}
        else:
            for k in self.config.ks:
                scores.update(_prf(self.hits[k], self.cutoffs[k], self.references, k))
        return {**scores, "num_docs": self.num_docs, "num_docs_without_reference": self.without_reference}


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


def _judge_openkp(candidates: Sequence[Phrase], references: Sequence[Phrase]) -> _Judged:
    reference_set = set(_openkp_texts(references))
    return _Judged([text in reference_set for text in _dedup(_openkp_texts(candidates))], len(reference_set))


def document_scores_openkp(candidates: Sequence[Phrase], references: Sequence[Phrase],
                           ks: Sequence[K] = OPENKP_KS) -> Scores:
    """One document's F1/P/R@k under the official OpenKP protocol (all 0 without references)."""
    return _document_scores(_judge_openkp(candidates, references), ks)


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


@lru_cache(maxsize=None)
def _token_stemmer(stemmer: str) -> Callable[[str], str]:
    """Stem an NFD token. Porter stems it as it is, as the original scorer did; the other
    stemmers' suffix rules are written with composed letters ("-ées"), so they stem its NFC
    form, and the stem goes back to NFD to compare with the texts."""
    normalize = get_normalizer(stemmer)
    if stemmer == "porter":
        return normalize

    @lru_cache(maxsize=1 << 20)
    def stem_composed(token: str) -> str:
        return unicodedata.normalize("NFD", normalize(unicodedata.normalize("NFC", token)))

    return stem_composed


def _split_tokens(words: Sequence[str], split: WordSplitter) -> list[str]:
    """`words` re-split by the dataset class's splitter, then into `_kp20k_tokens`. The
    splitters never join across whitespace and give their own words back unchanged, so
    words they made stay as they are, while "Web-Based" reads as KP20K's "Web Based"."""
    return _kp20k_tokens(" ".join(split(" ".join(words))))


def _kp20k_forms(phrase: Phrase, stem: Callable[[str], str], split: WordSplitter) -> Optional[_Forms]:
    tokens = _split_tokens(_words(phrase), split)
    if not tokens:
        return None
    return _Forms(" ".join(tokens), " ".join(stem(token) for token in tokens))


def _dedup_by_stem(phrases: Sequence[Phrase], stem: Callable[[str], str], split: WordSplitter) -> list[_Forms]:
    """Normalised, non-empty phrases, de-duplicated by stemmed form (first kept)."""
    unique: dict[str, _Forms] = {}
    for phrase in phrases:
        forms = _kp20k_forms(phrase, stem, split)
        if forms is not None:
            unique.setdefault(forms.stem, forms)
    return list(unique.values())


def _stemmed_document(doc_words: Sequence[str], stem: Callable[[str], str], split: WordSplitter) -> str:
    """Stemmed document tokens padded with spaces, so phrase presence is a substring test."""
    return " " + " ".join(stem(token) for token in _split_tokens(doc_words, split)) + " "


def _judge_kp20k(predictions: Sequence[Phrase], references: Sequence[Phrase], stemmer: str,
                 doc_words: Optional[Sequence[str]], word_splitter: str) -> _Judged:
    stem = _token_stemmer(stemmer)
    split = _splitter(word_splitter)
    gold = _dedup_by_stem(references, stem, split)
    if doc_words is not None:
        document = _stemmed_document(doc_words, stem, split)
        gold = [forms for forms in gold if f" {forms.stem} " in document]
    targets = {form for forms in gold for form in forms}
    matches = [forms.text in targets or forms.stem in targets for forms in _dedup_by_stem(predictions, stem, split)]
    return _Judged(matches, len(gold))


def document_scores_kp20k(predictions: Sequence[Phrase], references: Sequence[Phrase],
                          ks: Sequence[K] = KP20K_KS, doc_words: Optional[Sequence[str]] = None,
                          stemmer: str = "porter", word_splitter: str = "kp20k") -> Optional[Scores]:
    """One document's stemmed F1/P/R@k; None when it has no reference to score against.

    With `doc_words`, only references whose stemmed tokens occur contiguously in the
    stemmed document count (present-only scoring, as the original toolkit reported).
    `word_splitter` names the splitter applied to both sides and to the document.
    """
    judged = _judge_kp20k(predictions, references, stemmer, doc_words, word_splitter)
    return _document_scores(judged, ks) if judged.num_references else None


# --------------------------------------------------------------------------- both

def _judge(config: ScoringConfig, predictions: Sequence[Phrase], references: Sequence[Phrase],
           doc_words: Optional[Sequence[str]]) -> _Judged:
    if config.protocol == "openkp":
        return _judge_openkp(predictions, references)
    return _judge_kp20k(predictions, references, config.stemmer, doc_words, config.word_splitter)


def _scores(predictions: Keyphrases, references: Keyphrases, config: ScoringConfig,
            doc_words: Optional[Mapping[str, Sequence[str]]]) -> Scores:
    _check_urls(predictions, references)
    present_only = config.references == "present"
    if present_only and doc_words is None:
        raise ValueError("present-only scoring needs the words of every document (doc_words)")
    if not present_only and doc_words is not None:
        raise ValueError("doc_words are given but the configuration scores against all references")
    if doc_words is not None:
        _require_urls(references.keys() - doc_words.keys(), "present-only source lacks url(s)")
    scorer = Scorer(config)
    for url in references:
        scorer.add(predictions[url], references[url], doc_words[url] if doc_words is not None else None)
    return scorer.result()


def score(predictions: Keyphrases, references: Keyphrases, config: Union[ScoringConfig, str],
          doc_words: Optional[Mapping[str, Sequence[str]]] = None) -> dict[str, Any]:
    """Scores under `config`, matched by url, with the configuration under "scoring".

    The result maps "F1@k", "P@k", "R@k" (k as in ``config.ks``, e.g. "F1@5", "F1@M") to
    floats, "num_docs" and "num_docs_without_reference" to ints, and "scoring" to
    ``config.to_dict()``. `doc_words` (url -> words) are needed for present-only scoring.
    A protocol name in place of a configuration is the earlier call shape: that protocol's
    defaults, present-only references when `doc_words` are given, and no "scoring" entry.
    """
    if isinstance(config, str):
        legacy = ScoringConfig(config, references="all" if doc_words is None else "present")
        return _scores(predictions, references, legacy, doc_words)
    return {**_scores(predictions, references, config, doc_words), "scoring": config.to_dict()}


def score_openkp(predictions: Keyphrases, references: Keyphrases, ks: Sequence[K] = OPENKP_KS) -> Scores:
    """`score` under the openkp protocol's defaults at `ks`, without the "scoring" entry."""
    return _scores(predictions, references, ScoringConfig("openkp", ks=ks), None)


def score_kp20k(predictions: Keyphrases, references: Keyphrases, ks: Sequence[K] = KP20K_KS,
                doc_words: Optional[Mapping[str, Sequence[str]]] = None) -> Scores:
    """`score` under the kp20k protocol's defaults at `ks` (present-only with `doc_words`), without "scoring"."""
    config = ScoringConfig("kp20k", references="all" if doc_words is None else "present", ks=ks)
    return _scores(predictions, references, config, doc_words)


# --------------------------------------------------------------------------- files

def _json_lines(path: Union[str, Path], fields: Sequence[str]) -> Iterator[tuple[int, str, dict]]:
    """(line number, url as str, object) per non-blank line; errors name the file and line."""
    seen: set[str] = set()
    for line_no, item in json_lines(path, ("url", *fields)):
        url = item["url"]
        if isinstance(url, bool) or not isinstance(url, (str, int)):
            raise LineError(path, line_no, "url must be a string or an integer")
        url = str(url)
        if url in seen:
            raise LineError(path, line_no, f"duplicate url {url!r}")
        seen.add(url)
        yield line_no, url, item


def _is_words(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


def iter_keyphrase_file(path: Union[str, Path]) -> Iterator[tuple[int, str, list[list[str]]]]:
    """(line number, url, keyphrases) of each line of an OpenKP-layout file, in file order."""
    for line_no, url, item in _json_lines(path, ("KeyPhrases",)):
        phrases = item["KeyPhrases"]
        if not isinstance(phrases, list) or not all(isinstance(p, str) or _is_words(p) for p in phrases):
            raise ValueError(f"{path}:{line_no}: KeyPhrases must be a list of word lists or strings")
        yield line_no, url, [list(_words(phrase)) for phrase in phrases]


def read_keyphrase_file(path: Union[str, Path]) -> dict[str, list[list[str]]]:
    """Read OpenKP-layout JSON lines ``{"url", "KeyPhrases": [[words], ...]}`` ("Scores" ignored).

    Entries may be word lists or plain strings (split on whitespace); urls become strings.
    """
    return {url: phrases for _, url, phrases in iter_keyphrase_file(path)}


def iter_doc_words(path: Union[str, Path]) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, url, doc_words) of each line of a preprocessed file, in file order."""
    for line_no, url, item in _json_lines(path, ("doc_words",)):
        if not _is_words(item["doc_words"]):
            raise ValueError(f"{path}:{line_no}: doc_words must be a list of strings")
        yield line_no, url, item["doc_words"]


def read_doc_words(path: Union[str, Path]) -> dict[str, list[str]]:
    """Read the ``doc_words`` of a preprocessed JSON-lines file, by url (for present-only scoring)."""
    return {url: words for _, url, words in iter_doc_words(path)}



def format_scores(scores: Mapping[str, Any], ks: Sequence[K]) -> str:
    """A small F1/P/R table, one row per k (integers, M, O)."""
    lines = [f"{'':>4} {'F1':>7} {'P':>7} {'R':>7}"]
    lines += [f"{'@' + str(k):>4} {scores[f'F1@{k}']:7.4f} {scores[f'P@{k}']:7.4f} {scores[f'R@{k}']:7.4f}"
              for k in ks]
    return "\n".join(lines)
