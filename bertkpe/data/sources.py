"""Readers for the source corpora: OpenKP JSON lines, KP20K JSON lines and LIAAD folders/zips.

Each reader yields `Document`s in source order: the document's words, its gold keyphrases
as word lists (cleaned and de-duplicated, present and absent alike), the stemmer that
decides presence, and `GoldCounts` saying what cleaning removed, so that no layout shrinks
its scoring references unseen. Locating keyphrases in the text is the next stage's job
(`bertkpe.preprocessing`), so every corpus quirk is handled here, once.

Malformed input raises `LineError` naming the file and the line (for LIAAD corpora, the
file inside the corpus); a reader given `on_bad_line` reports the error to it and goes on.
"""
from __future__ import annotations

import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence, TypeVar

from bertkpe.data.matching import normalize_words, stemmer_for_language
from bertkpe.files import LineError, decode_utf8, json_object

BadLineHandler = Optional[Callable[["LineError"], None]]
_Item = TypeVar("_Item")


class MissingSourceError(FileNotFoundError):
    """A source file or folder is not where the dataset layout says it must be."""


# Why a gold keyphrase read from the source is not a reference. "empty": no words (a blank
# KP20K field or LIAAD key line, an empty OpenKP word list, a KP20K keyword with nothing left
# once brackets and separators go); the others are KP20K's cleaning rules (`clean_kp20k_keyphrase`).
DROP_REASONS = ("empty", "odd_punctuation", "too_many_tokens", "stray_punctuation", "classification_code")


@dataclass
class GoldCounts:
    """What cleaning did to gold keyphrases: each one read is kept, merged into an earlier
    duplicate, or dropped for exactly one reason in `DROP_REASONS`; `altered_by_bracket_removal`
    counts kept ones whose bracketed part was cut."""

    read: int = 0
    duplicates_merged: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    altered_by_bracket_removal: int = 0

    def add(self, other: "GoldCounts") -> None:
        """Sum another document's counts into these (a split's total)."""
        self.read += other.read
        self.duplicates_merged += other.duplicates_merged
        for reason, count in other.dropped.items():
            self.dropped[reason] += count
        self.altered_by_bracket_removal += other.altered_by_bracket_removal


@dataclass
class Document:
    """One source document: `keyphrases` holds every gold keyphrase kept (present or absent)."""

    url: str
    words: list[str]
    keyphrases: list[list[str]]
    stemmer: str
    gold_counts: GoldCounts


def _drop_empty(phrases: Sequence[list[str]], counts: GoldCounts) -> list[list[str]]:
    kept = [phrase for phrase in phrases if phrase]
    counts.dropped["empty"] += len(phrases) - len(kept)
    return kept


def _dedup(items: Sequence[_Item], key: Callable[[_Item], str], counts: GoldCounts) -> list[_Item]:
    """Drop repeats of an earlier item's key, keeping the first; count them."""
    seen: set[str] = set()
    kept = []
    for item in items:
        text = key(item)
        if text in seen:
            counts.duplicates_merged += 1
        else:
            seen.add(text)
            kept.append(item)
    return kept


def _read_json_lines(path: Path, parse: Callable[[int, dict], Document],
                     on_bad_line: BadLineHandler) -> Iterator[Document]:
    """`parse(0-based line index, object)` for each non-blank line, read in binary so the line is known."""
    if not path.is_file():
        raise MissingSourceError(f"source file not found: expected {path}")
    with open(path, "rb") as handle:
        for index, raw in enumerate(handle):
            try:
                record = json_object(raw, path, index + 1)
                document = None if record is None else parse(index, record)
            except LineError as error:
                if on_bad_line is None:
                    raise
                on_bad_line(error)
                continue
            if document is not None:
                yield document


def _field(record: dict, name: str, kind: type, path: Path, index: int) -> Any:
    if name not in record:
        raise LineError(path, index + 1, f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind):
        raise LineError(path, index + 1, f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


# Invisible format characters (soft hyphen, zero-width spaces and joiners, BOM) would split
# or glue words unseen: "pre\u00admier" must read "premier".
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _clean_text(text: str) -> str:
    """NFC-compose (so "é" is one character whatever the source wrote) and drop invisible characters."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text))


WordSpans = list[tuple[str, int, int]]  # (word, start, end): text[start:end] is where the word was written


def _nfc_pieces(text: str) -> list[tuple[int, int, str]]:
    """(start, end, NFC of text[start:end]) pieces whose NFC forms join into the text's NFC form.

    A piece begins at a character of combining class 0; it is merged into the previous piece
    where NFC would combine across the two (Hangul jamo, starters that decompose into marks).
    """
    pieces: list[tuple[int, int, str]] = []
    starts = [index for index, char in enumerate(text) if index == 0 or unicodedata.combining(char) == 0]
    for start, end in zip(starts, starts[1:] + [len(text)]):
        normalized = unicodedata.normalize("NFC", text[start:end])
        if pieces:
            previous_start, _, previous = pieces[-1]
            joined = unicodedata.normalize("NFC", text[previous_start:end])
            if joined != previous + normalized:
                pieces[-1] = (previous_start, end, joined)
                continue
        pieces.append((start, end, normalized))
    return pieces


def _clean_text_positions(text: str) -> tuple[str, list[int], list[int]]:
    """`_clean_text(text)` and, for each of its characters, the start and end in `text` of what it came from.

    A character NFC left alone maps to itself; characters NFC rewrote map to the whole
    piece they came from (an "e" and its combining accent, for "é").
    """
    if unicodedata.is_normalized("NFC", text):
        pieces = [(index, index + 1, char) for index, char in enumerate(text)]
    else:
        pieces = _nfc_pieces(text)
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end, normalized in pieces:
        unchanged = normalized == text[start:end]
        for offset, char in enumerate(normalized):
            if _INVISIBLE.match(char):
                continue
            chars.append(char)
            starts.append(start + offset if unchanged else start)
            ends.append(start + offset + 1 if unchanged else end)
    return "".join(chars), starts, ends


def _token_spans(pattern: re.Pattern, text: str) -> WordSpans:
    """The tokens `pattern` finds in the cleaned text, each with where it was written in `text`."""
    cleaned, starts, ends = _clean_text_positions(text)
    return [(match.group(), starts[match.start()], ends[match.end() - 1]) for match in pattern.finditer(cleaned)]


# ----------------------------------------------------------------------------- OpenKP

def read_openkp(path: str | Path, *, stemmer: str, with_keyphrases: bool = True,
                on_bad_line: BadLineHandler = None) -> Iterator[Document]:
    """OpenKP JSON lines (`url`, `text`, optional `VDOM`, `KeyPhrases`).

    Words are `text.split()`. Each keyphrase is its word list re-split on whitespace;
    empty ones are dropped and repeats (same lower-cased text) keep the first. `stemmer`
    (the dataset class's: "none", exact up to case) decides presence. `with_keyphrases=False` (EvalPublic) ignores
    `KeyPhrases`. `VDOM` (visual features) is checked to be a string, as the layout says,
    so a malformed line is reported where it is, but not kept: no later stage reads it.
    """
    path = Path(path)

    def parse(index: int, record: dict) -> Document:
        url = _field(record, "url", str, path, index)
        words = _field(record, "text", str, path, index).split()
        if "VDOM" in record:
            _field(record, "VDOM", str, path, index)
        keyphrases: list[list[str]] = []
        counts = GoldCounts()
        if with_keyphrases:
            gold = _field(record, "KeyPhrases", list, path, index)
            if not all(isinstance(kp, list) and all(isinstance(w, str) for w in kp) for kp in gold):
                raise LineError(path, index + 1, "field 'KeyPhrases' must be a list of lists of strings")
            counts.read = len(gold)
            keyphrases = _dedup(_drop_empty([" ".join(kp).split() for kp in gold], counts),
                                key=lambda kp: " ".join(kp).lower(), counts=counts)
        return Document(url, words, keyphrases, stemmer, counts)

    return _read_json_lines(path, parse, on_bad_line)


# ----------------------------------------------------------------------------- KP20K

# Meng et al. (2017) split text on every character outside [a-zA-Z0-9_<>,#&+*().'%]; we keep
# that set but with Unicode letters and digits (\w), so "naïve" stays one word instead of
# falling apart. `#&+*` stay inside words ("C++", "P&ID"); `<>,()%` are tokens of their own;
# `.` and `'` stay inside a word between two word characters ("3.5", "Young's") and single
# letters with periods are one abbreviation ("U.S.", "e.g."); elsewhere `.` and `'` are tokens
# of their own. Everything else ("-", "/", ":", double quotes...) only separates.
_KP20K_TOKEN = re.compile(r"(?:[^\W\d_]\.){2,}|[\w#&+*]+(?:[.'][\w#&+*]+)*|[<>,()%.']")
# Keyphrases with any of these characters (after bracket removal) are unusable labels.
_KP20K_ODD_PUNCTUATION = re.compile(r"[,;:_\"<>(){}\[\]?~`!@$%^=]")
_KP20K_BRACKETED = re.compile(r"\(.*?\)|\[.*?\]|\{.*?\}")
# Subject classification codes listed as keywords: MSC ("75v05", "68t10") and
# Inspec/PACS-style ("b6150", "c1140d").
_CLASSIFICATION_CODE = re.compile(r"\d\d[a-z]\d\d|[a-z]\d{4}[a-z]?")
_HAS_ALNUM = re.compile(r"[^\W_]")
KP20K_MAX_KEYPHRASE_TOKENS = 6


def kp20k_tokenize(text: str) -> list[str]:
    """Tokenize KP20K text the Meng et al. (2017) way (see `_KP20K_TOKEN`), case and digits kept."""
    return _KP20K_TOKEN.findall(_clean_text(text))


def kp20k_tokenize_spans(text: str) -> WordSpans:
    """`kp20k_tokenize`'s words, each with its (start, end) in `text` as given (before cleaning)."""
    return _token_spans(_KP20K_TOKEN, text)


class _CleanedKeyword(NamedTuple):
    """One KP20K keyword after cleaning: its tokens, or [] and the `DROP_REASONS` entry that rejected it."""

    tokens: list[str]
    dropped_for: str | None
    brackets_removed: bool


def _clean_kp20k_keyword(keyword: str) -> _CleanedKeyword:
    """Clean one KP20K keyword by the rules below, saying which rule rejected it."""
    text = " ".join(keyword.lower().split())
    # Bracketed parts are acronyms or glosses ("learning (artificial intelligence)").
    unbracketed = _KP20K_BRACKETED.sub(" ", text)
    brackets_removed = unbracketed != text

    def dropped(reason: str) -> _CleanedKeyword:
        return _CleanedKeyword([], reason, brackets_removed)

    if _KP20K_ODD_PUNCTUATION.search(unbracketed):
        return dropped("odd_punctuation")
    tokens = kp20k_tokenize(unbracketed)
    if not tokens:
        return dropped("empty")
    if len(tokens) > KP20K_MAX_KEYPHRASE_TOKENS:
        return dropped("too_many_tokens")
    # A token without letters or digits is stray punctuation ("detection. fuzzy").
    if any(not _HAS_ALNUM.search(t) for t in tokens):
        return dropped("stray_punctuation")
    if any(_CLASSIFICATION_CODE.fullmatch(t) for t in tokens):
        return dropped("classification_code")
    return _CleanedKeyword(tokens, None, brackets_removed)


def clean_kp20k_keyphrase(keyphrase: str) -> list[str]:
    """The cleaned tokens of one KP20K keyword, or [] when `_clean_kp20k_keyword` rejects it."""
    return _clean_kp20k_keyword(keyphrase).tokens


def read_kp20k(path: str | Path, *, stemmer: str, on_bad_line: BadLineHandler = None) -> Iterator[Document]:
    """KP20K JSON lines (`title`, `abstract`, `keyword` = "k1;k2;...").

    Words are `kp20k_tokenize(title + " . " + abstract)`, the "." keeping n-grams from
    spanning the title/abstract boundary. Keywords are cleaned by `clean_kp20k_keyphrase`,
    and repeats keep the first. The url is the 0-based line number; `stemmer` (the dataset
    class's: Porter) decides presence.
    """
    path = Path(path)

    def parse(index: int, record: dict) -> Document:
        title = _field(record, "title", str, path, index)
        abstract = _field(record, "abstract", str, path, index)
        keywords = _field(record, "keyword", str, path, index).split(";")
        counts = GoldCounts(read=len(keywords))
        cleaned = [_clean_kp20k_keyword(k) for k in keywords]
        for keyword in cleaned:
            if keyword.dropped_for is not None:
                counts.dropped[keyword.dropped_for] += 1
        kept = _dedup([k for k in cleaned if k.dropped_for is None], key=lambda k: " ".join(k.tokens),
                      counts=counts)
        counts.altered_by_bracket_removal = sum(k.brackets_removed for k in kept)
        keyphrases = [k.tokens for k in kept]
        return Document(str(index), kp20k_tokenize(f"{title} . {abstract}"), keyphrases, stemmer, counts)

    return _read_json_lines(path, parse, on_bad_line)


# ----------------------------------------------------------------------------- LIAAD

# Words are runs of Unicode letters/digits, joined by inner hyphens ("Timor-Leste"); every
# other non-space character is a token of its own. Apostrophes split, so French elisions
# ("l’ISS", "d'Europe") do not hide keys: 7% more WikiNews keys are found that way.
_LIAAD_TOKEN = re.compile(r"\w+(?:-\w+)*|[^\w\s]")


def liaad_tokenize(text: str) -> list[str]:
    """Tokenize text of any language, keeping non-ASCII letters and punctuation as tokens."""
    return _LIAAD_TOKEN.findall(_clean_text(text))


WordSplitter = Callable[[str], list]


def whitespace_split(text: str) -> list[str]:
    """OpenKP's words: the text split on whitespace."""
    return text.split()


# How each dataset class splits text into words (`bertkpe.dataset_classes`); the kp20k
# scorer splits predictions, references and documents with the same one.
WORD_SPLITTERS: dict[str, WordSplitter] = {
    "whitespace": whitespace_split,
    "kp20k": kp20k_tokenize,
    "liaad": liaad_tokenize,
}


def liaad_tokenize_spans(text: str) -> WordSpans:
    """`liaad_tokenize`'s words, each with its (start, end) in `text` as given (before cleaning)."""
    return _token_spans(_LIAAD_TOKEN, text)


def _natural_key(text: str) -> list:
    """Sort "2" before "10" so documents keep the corpus's numbering order."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


class LiaadCorpus:
    """A LIAAD-layout corpus: `docsutf8/ID.txt`, `keys/ID.key` (one keyphrase a line), `lan.txt`.

    `src` is the corpus folder, a folder holding exactly one corpus folder, or the published
    zip, read in place (its one docsutf8/ may be at the root, as in 110-PT-BN-KP.zip, or in a
    folder, as in WikiNews.zip's WKC/).
    """

    def __init__(self, src: str | Path):
        self.src = Path(src)
        self._zip: zipfile.ZipFile | None = None
        if self.src.is_file():
            try:
                self._zip = zipfile.ZipFile(self.src)
            except zipfile.BadZipFile:
                raise MissingSourceError(f"{self.src} is neither a LIAAD corpus folder nor a zip archive") from None
            prefixes = {m.group(1) or "" for name in self._zip.namelist()
                        if (m := re.fullmatch(r"(.*/)?docsutf8/[^/]*", name))}
            if len(prefixes) != 1:
                self._zip.close()
                raise MissingSourceError(f"expected one docsutf8/ folder in {self.src}, found {len(prefixes)}")
            self._prefix = prefixes.pop()
            self.location = f"{self.src}/{self._prefix}".rstrip("/")
            names = [n[len(self._prefix):] for n in self._zip.namelist() if n.startswith(self._prefix)]
        else:
            self._root = self._find_root(self.src)
            self.location = str(self._root)
            names = [p.relative_to(self._root).as_posix() for p in self._root.glob("*/*") if p.is_file()]
            names += ["lan.txt"] if (self._root / "lan.txt").is_file() else []
        self._names = set(names)
        self.doc_ids = sorted((n[len("docsutf8/"):-len(".txt")] for n in names
                               if re.fullmatch(r"docsutf8/[^/]+\.txt", n)), key=_natural_key)
        self.language: str | None = None
        if "lan.txt" in self._names:
            self.language = self._text("lan.txt").strip() or None

    @staticmethod
    def _find_root(src: Path) -> Path:
        if (src / "docsutf8").is_dir():
            return src
        if src.is_dir():
            inner = [p for p in src.iterdir() if (p / "docsutf8").is_dir()]
            if len(inner) == 1:
                return inner[0]
        raise MissingSourceError(f"LIAAD corpus not found: expected {src / 'docsutf8'} "
                                 f"(or one sub-folder of {src} holding docsutf8/, or a .zip)")

    def _read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._prefix + name)
        return (self._root / name).read_bytes()

    def _text(self, name: str) -> str:
        if name not in self._names:
            raise LineError(self.location, name, "file missing")
        text = decode_utf8(self._read(name), self.location, name)
        return text[1:] if text.startswith("\ufeff") else text

    def documents(self, ids: Sequence[str] | None = None, *, language: str | None = None,
                  on_bad_line: BadLineHandler = None) -> Iterator[Document]:
        """The documents `ids` (default all, in corpus order); `language` overrides `lan.txt`.

        Keyphrases are the non-blank lines of the key file, tokenized like the text; repeats
        (same normalised words) keep the first. The stemmer is the language's Snowball
        stemmer (Porter for English) or "none".
        """
        stemmer = stemmer_for_language(language or self.language)
        for doc_id in self.doc_ids if ids is None else ids:
            try:
                words = liaad_tokenize(self._text(f"docsutf8/{doc_id}.txt"))
                lines = self._text(f"keys/{doc_id}.key").splitlines()
            except LineError as error:
                if on_bad_line is None:
                    raise
                on_bad_line(error)
                continue
            counts = GoldCounts(read=len(lines))
            keyphrases = _dedup(_drop_empty([liaad_tokenize(line) for line in lines], counts),
                                key=lambda kp: " ".join(normalize_words(kp, stemmer)), counts=counts)
            yield Document(doc_id, words, keyphrases, stemmer, counts)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "LiaadCorpus":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_liaad(src: str | Path, *, ids: Sequence[str] | None = None, language: str | None = None,
               on_bad_line: BadLineHandler = None) -> Iterator[Document]:
    """The documents of a LIAAD corpus (see `LiaadCorpus`), in corpus order unless `ids` is given."""
    with LiaadCorpus(src) as corpus:
        yield from corpus.documents(ids, language=language, on_bad_line=on_bad_line)
