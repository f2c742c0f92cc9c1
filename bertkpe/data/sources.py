"""Readers for the source corpora: OpenKP JSON lines, KP20K JSON lines and LIAAD folders/zips.

Each reader yields `Document`s in source order: the document's words, its gold keyphrases
as word lists (cleaned and de-duplicated, present and absent alike) and the stemmer that
decides presence. Locating keyphrases in the text is the next stage's job
(`bertkpe.preprocessing`), so every corpus quirk is handled here, once.

Malformed input raises `BadInputError` naming the file and the line (for LIAAD corpora, the
file inside the corpus); a reader given `on_bad_line` reports the error to it and goes on.
"""
from __future__ import annotations

import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from bertkpe.data.matching import NO_STEMMER, normalize_words, stemmer_for_language

BadLineHandler = Optional[Callable[["BadInputError"], None]]


class BadInputError(ValueError):
    """A source record that cannot be read; `line` is a 1-based line number or a file name inside a corpus."""

    def __init__(self, path: str | Path, line: int | str, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}:{line}: {reason}")


class MissingSourceError(FileNotFoundError):
    """A source file or folder is not where the dataset layout says it must be."""


@dataclass
class Document:
    """One source document: `keyphrases` holds every gold keyphrase (present or absent)."""

    url: str
    words: list[str]
    keyphrases: list[list[str]]
    stemmer: str
    extra: dict[str, Any] = field(default_factory=dict)


def _dedup(phrases: Sequence[list[str]], key: Callable[[list[str]], str]) -> list[list[str]]:
    """Drop empty phrases and repeats of an earlier phrase's key, keeping the first."""
    seen: set[str] = set()
    kept = []
    for phrase in phrases:
        text = key(phrase)
        if phrase and text not in seen:
            seen.add(text)
            kept.append(phrase)
    return kept


def _line_object(raw: bytes, path: Path, line: int) -> dict | None:
    """The JSON object on one raw line (None for a blank line), decoded strictly as UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(path, line, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, line, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise BadInputError(path, line, f"expected a JSON object, got {type(record).__name__}")
    return record


def _read_json_lines(path: Path, parse: Callable[[int, dict], Document],
                     on_bad_line: BadLineHandler) -> Iterator[Document]:
    """`parse(0-based line index, object)` for each non-blank line, read in binary so the line is known."""
    if not path.is_file():
        raise MissingSourceError(f"source file not found: expected {path}")
    with open(path, "rb") as handle:
        for index, raw in enumerate(handle):
            try:
                record = _line_object(raw, path, index + 1)
                document = None if record is None else parse(index, record)
            except BadInputError as error:
                if on_bad_line is None:
                    raise
                on_bad_line(error)
                continue
            if document is not None:
                yield document


def _field(record: dict, name: str, kind: type, path: Path, index: int) -> Any:
    if name not in record:
        raise BadInputError(path, index + 1, f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind):
        raise BadInputError(path, index + 1, f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


# Invisible format characters (soft hyphen, zero-width spaces and joiners, BOM) would split
# or glue words unseen: "pre\u00admier" must read "premier".
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _clean_text(text: str) -> str:
    """NFC-compose (so "é" is one character whatever the source wrote) and drop invisible characters."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text))


# ----------------------------------------------------------------------------- OpenKP

def read_openkp(path: str | Path, *, with_keyphrases: bool = True,
                on_bad_line: BadLineHandler = None) -> Iterator[Document]:
    """OpenKP JSON lines (`url`, `text`, optional `VDOM`, `KeyPhrases`).

    Words are `text.split()`. Each keyphrase is its word list re-split on whitespace;
    empty ones are dropped and repeats (same lower-cased text) keep the first. Matching
    is exact up to case (stemmer "none"). `with_keyphrases=False` (EvalPublic) ignores
    `KeyPhrases`. A given `VDOM` string is kept as is in `extra`.
    """
    path = Path(path)

    def parse(index: int, record: dict) -> Document:
        url = _field(record, "url", str, path, index)
        words = _field(record, "text", str, path, index).split()
        extra = {}
        if "VDOM" in record:
            extra["VDOM"] = _field(record, "VDOM", str, path, index)
        keyphrases: list[list[str]] = []
        if with_keyphrases:
            gold = _field(record, "KeyPhrases", list, path, index)
            if not all(isinstance(kp, list) and all(isinstance(w, str) for w in kp) for kp in gold):
                raise BadInputError(path, index + 1, "field 'KeyPhrases' must be a list of lists of strings")
            keyphrases = _dedup([" ".join(kp).split() for kp in gold], key=lambda kp: " ".join(kp).lower())
        return Document(url, words, keyphrases, NO_STEMMER, extra)

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


def clean_kp20k_keyphrase(keyphrase: str) -> list[str]:
    """The cleaned tokens of one KP20K keyword, or [] when the rules below reject it."""
    text = " ".join(keyphrase.lower().split())
    # Bracketed parts are acronyms or glosses ("learning (artificial intelligence)").
    text = _KP20K_BRACKETED.sub(" ", text)
    if _KP20K_ODD_PUNCTUATION.search(text):
        return []
    tokens = kp20k_tokenize(text)
    # A token without letters or digits is stray punctuation ("detection. fuzzy").
    if not tokens or len(tokens) > KP20K_MAX_KEYPHRASE_TOKENS:
        return []
    if any(not _HAS_ALNUM.search(t) or _CLASSIFICATION_CODE.fullmatch(t) for t in tokens):
        return []
    return tokens


def read_kp20k(path: str | Path, *, on_bad_line: BadLineHandler = None) -> Iterator[Document]:
    """KP20K JSON lines (`title`, `abstract`, `keyword` = "k1;k2;...").

    Words are `kp20k_tokenize(title + " . " + abstract)`, the "." keeping n-grams from
    spanning the title/abstract boundary. Keywords are cleaned by `clean_kp20k_keyphrase`,
    and repeats keep the first. The url is the 0-based line number; matching is Porter-stemmed.
    """
    path = Path(path)

    def parse(index: int, record: dict) -> Document:
        title = _field(record, "title", str, path, index)
        abstract = _field(record, "abstract", str, path, index)
        keywords = _field(record, "keyword", str, path, index)
        keyphrases = _dedup([clean_kp20k_keyphrase(k) for k in keywords.split(";")], key=" ".join)
        return Document(str(index), kp20k_tokenize(f"{title} . {abstract}"), keyphrases, "porter")

    return _read_json_lines(path, parse, on_bad_line)


# ----------------------------------------------------------------------------- LIAAD

# Words are runs of Unicode letters/digits, joined by inner hyphens ("Timor-Leste"); every
# other non-space character is a token of its own. Apostrophes split, so French elisions
# ("l’ISS", "d'Europe") do not hide keys: 7% more WikiNews keys are found that way.
_LIAAD_TOKEN = re.compile(r"\w+(?:-\w+)*|[^\w\s]")


def liaad_tokenize(text: str) -> list[str]:
    """Tokenize text of any language, keeping non-ASCII letters and punctuation as tokens."""
    return _LIAAD_TOKEN.findall(_clean_text(text))


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
            raise BadInputError(self.location, name, "file missing")
        try:
            return self._read(name).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BadInputError(self.location, name, f"not UTF-8: {exc.reason} at byte {exc.start}") from None

    def documents(self, ids: Sequence[str] | None = None, *, language: str | None = None,
                  on_bad_line: BadLineHandler = None) -> Iterator[Document]:
        """The documents `ids` (default all, in corpus order); `language` overrides `lan.txt`.

        Keyphrases are the non-empty lines of the key file, tokenized like the text; repeats
        (same normalised words) keep the first. The stemmer is the language's Snowball
        stemmer (Porter for English) or "none".
        """
        stemmer = stemmer_for_language(language or self.language)
        for doc_id in self.doc_ids if ids is None else ids:
            try:
                words = liaad_tokenize(self._text(f"docsutf8/{doc_id}.txt"))
                lines = self._text(f"keys/{doc_id}.key").splitlines()
            except BadInputError as error:
                if on_bad_line is None:
                    raise
                on_bad_line(error)
                continue
            keyphrases = _dedup([liaad_tokenize(line) for line in lines],
                                key=lambda kp: " ".join(normalize_words(kp, stemmer)))
            yield Document(doc_id, words, keyphrases, stemmer)

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
