"""The inputs of `bertkpe extract`, read lazily: files, folders of them or stdin; a document
a file, a line, or a JSON line's `text`. A bad line (not UTF-8, not JSON, no string
`text`) is a `BadLine` in the stream, for the caller to stop at or skip."""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ContextManager, Iterator, Optional, Sequence, Union

from bertkpe.files import LineError, decode_utf8, json_object

STDIN = "-"


@dataclass(frozen=True)
class Document:
    id: Any
    text: str
    source: str
    line: Optional[int]  # None for a whole-file document


@dataclass(frozen=True)
class BadLine:
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"

    def to_json(self) -> dict:
        return {"file": self.source, "line": self.line, "reason": self.reason}


Entry = Union[Document, BadLine]


Entry = Union[Document, BadLine]


def source_name(source: str) -> str:
    return "<stdin>" if source == STDIN else source


def expand_inputs(inputs: Sequence[str], suffix: str) -> list[str]:
    """Files in the order given; a directory stands for its *suffix files, sorted by name."""
    files = []
    for source in inputs:
        if source == STDIN:
            files.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            members = sorted(str(member) for member in path.iterdir() if member.is_file() and member.suffix == suffix)
            if not members:
                raise LineError(source, None, f"directory holds no {suffix} files")
            files.extend(members)
        elif path.is_file():
            files.append(source)
        else:
            raise LineError(source, None, "no such file or directory")
    return files


def read_corpus(inputs: Sequence[str], fmt: str = "text", lines: bool = False) -> Iterator[Entry]:
    """Documents and bad lines of the inputs in order, read lazily, one line at a time.

    fmt "jsonl": a JSON object per line with a string `text` and an optional `id`; blank
    lines are skipped. fmt "text": a document per file, or per line with `lines`.
    ids: a JSON line's `id` if given, else the line number (1-based) for --lines and
    jsonl ("FILE:LINE" when several files are read), else the file name. Missing inputs
    raise LineError at once.
    """
    files = expand_inputs(inputs, ".jsonl" if fmt == "jsonl" else ".txt")
    return _entries(files, fmt, lines)


def _entries(files: Sequence[str], fmt: str, lines: bool) -> Iterator[Entry]:
    several = len(files) > 1
    for source in files:
        name = source_name(source)
        with _open_binary(source) as handle:
            if fmt == "text" and not lines:
                yield _whole_file(handle.read(), name)
                continue
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
                doc_id = f"{name}:{number}" if several else number
                entry = _json_line(raw, name, number, doc_id) if fmt == "jsonl" else _text_line(raw, name, number, doc_id)
                if entry is not None:
                    yield entry


def _open_binary(source: str) -> ContextManager[IO[bytes]]:
    if source == STDIN:
        return contextlib.nullcontext(sys.stdin.buffer)  # stdin belongs to the caller: not closed
    try:
        return open(source, "rb")
    except OSError as error:
        raise LineError(source, None, f"cannot read: {error.strerror or error}") from None


def _whole_file(data: bytes, name: str) -> Entry:
    try:
        text = decode_utf8(data, name, None)
    except LineError as error:
        return BadLine(name, data.count(b"\n", 0, error.byte) + 1, error.reason)
    return Document(name, text[1:] if text.startswith("\ufeff") else text, name, None)


def _text_line(raw: bytes, name: str, number: int, doc_id: Any) -> Entry:
    try:
        return Document(doc_id, decode_utf8(raw, name, number), name, number)
    except LineError as error:
        return BadLine(name, number, error.reason)


def _json_line(raw: bytes, name: str, number: int, doc_id: Any) -> Entry | None:
    try:
        record = json_object(raw, name, number, ("text",))
    except LineError as error:
        return BadLine(name, number, error.reason)
    if record is None:
        return None
    if not isinstance(record["text"], str):
        return BadLine(name, number, f"'text' must be a string, got {type(record['text']).__name__}")
    return Document(record["id"] if "id" in record else doc_id, record["text"], name, number)
