"""Corpora for `bertkpe extract`: lazy reading of inputs, the resumable output file, the
bad-line report, and sharding across torchrun ranks.

Memory is bounded by a round of chunks, not by the corpus: documents are read lazily,
extracted `chunk_size` at a time, and written in input order as each round completes.

Resume. The output file is the progress record: its complete lines are the documents
done. A sidecar `OUTPUT.resume.json` holds the options that shape the records (inputs,
checkpoint, top_k, batching, ...); `--resume` refuses when they differ, cuts off a
partial last line, checks that the records' ids are the ids of the input's first
documents, and goes on from there. Chunks are counted from the start of the input, so
a resumed run recomputes the partly written chunk whole (dropping the records already
there): every document sees the same batch as in an uninterrupted run, and the file is
byte-identical to one.

Sharding. Under torchrun, rank 0 reads the input and the output; each round it sends one
chunk to every rank (scatter), extracts its own, collects the records (gather) and writes
them in input order. The file is the one a single process writes (byte for byte when
every process runs as many threads: float sums, so a score's last bits, depend on the
thread count), and a run may be resumed with another number of processes.

Bad lines (not UTF-8, not JSON, no string `text`) stop the run with `FILE:LINE: reason`,
or are skipped and listed in `OUTPUT.bad_lines.jsonl` (on stderr without `--output`).
A bad line is in the report before any record of a later document is in the output, so
a resumed run finds the report's lines again in the same order and appends only new ones.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, ContextManager, Iterable, Iterator, Optional, Protocol, Sequence, Union

import torch.distributed as dist

from bertkpe.files import LineError, decode_utf8, json_object, write_text
from bertkpe.runtime import Runtime

STDIN = "-"
SYNC_SECONDS = 10.0  # a write this long after the last fsync of the output fsyncs it


class InputError(Exception):
    """Input that cannot be read, reported as `error: FILE[:LINE]: reason` (exit code 2)."""

    def __init__(self, source: str, line: int | None, reason: str):
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class OutputError(Exception):
    """An output that may not be written or resumed (exit code 2)."""


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
ExtractChunk = Callable[[Sequence[Document]], list]  # documents -> one record (dict) each, in order


class RecordObserver(Protocol):
    """Something built from the records as they stream, in input order, with each
    document's text (`bertkpe.html_page.HtmlPageWriter`)."""

    def add(self, doc_id: Any, text: str, keyphrases: Sequence[Sequence[Any]]) -> None: ...


# ----------------------------------------------------------------------------- reading


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
                raise InputError(source, None, f"directory holds no {suffix} files")
            files.extend(members)
        elif path.is_file():
            files.append(source)
        else:
            raise InputError(source, None, "no such file or directory")
    return files


def read_corpus(inputs: Sequence[str], fmt: str = "text", lines: bool = False) -> Iterator[Entry]:
    """Documents and bad lines of the inputs in order, read lazily, one line at a time.

    fmt "jsonl": a JSON object per line with a string `text` and an optional `id`; blank
    lines are skipped. fmt "text": a document per file, or per line with `lines`.
    ids: a JSON line's `id` if given, else the line number (1-based) for --lines and
    jsonl ("FILE:LINE" when several files are read), else the file name. Missing inputs
    raise InputError at once.
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
        raise InputError(source, None, f"cannot read: {error.strerror or error}") from None


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


# ----------------------------------------------------------------------------- writing


def resume_options_path(output: str | os.PathLike) -> Path:
    """The sidecar naming what an output was written from."""
    return Path(str(output) + ".resume.json")


def bad_lines_path(output: str | os.PathLike) -> Path:
    return Path(str(output) + ".bad_lines.jsonl")


def _cut_partial_line(path: Path) -> int:
    """Truncate `path` after its last newline (a killed write may leave half a line);
    the number of complete lines."""
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end, position = 0, size
        while position > 0:
            step = min(1 << 20, position)
            position -= step
            handle.seek(position)
            newline = handle.read(step).rfind(b"\n")
            if newline >= 0:
                end = position + newline + 1
                break
        if end < size:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        handle.seek(0)
        lines = 0
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return lines


class BadLineReport:
    """Bad lines skipped under --skip_bad_lines: JSON lines `{"file", "line", "reason"}`
    beside the output (created at the first one), or warnings on stderr without a file.

    A resumed run meets the listed lines again in the same order: they are checked, not
    written twice, and only lines past them are appended.
    """

    def __init__(self, path: Path | None, listed: Sequence[dict] = ()):
        self.path = path
        self.listed = list(listed)
        self.seen = 0  # bad lines met by this run, the listed ones included
        self._stream: IO[bytes] | None = None
        self._unsynced = False

    @classmethod
    def resume(cls, path: Path) -> "BadLineReport":
        if not path.is_file():
            return cls(path)
        _cut_partial_line(path)
        with open(path, encoding="utf-8") as handle:
            return cls(path, [json.loads(line) for line in handle])

    @property
    def count(self) -> int:
        return max(self.seen, len(self.listed))

    def add(self, bad: BadLine) -> None:
        if self.seen < len(self.listed):
            listed = self.listed[self.seen]
            if (listed.get("file"), listed.get("line")) != (bad.source, bad.line):
                raise OutputError(f"{self.path} lists {listed.get('file')}:{listed.get('line')} as bad line "
                                  f"{self.seen + 1}, but this input's is {bad.source}:{bad.line}: the output was "
                                  f"written from another input (--overwrite starts again)")
        elif self.path is None:
            print(f"warning: {bad} (skipped)", file=sys.stderr)
        else:
            if self._stream is None:
                self._stream = open(self.path, "ab")
            self._stream.write((json.dumps(bad.to_json(), ensure_ascii=False) + "\n").encode("utf-8"))
            self._stream.flush()
            self._unsynced = True
        self.seen += 1

    def check_complete(self) -> None:
        """At the end of the input: every listed line must have been met again."""
        if self.seen < len(self.listed):
            raise OutputError(f"{self.path} lists {len(self.listed)} bad lines, this input has {self.seen}: "
                              f"the output was written from another input (--overwrite starts again)")

    def sync(self) -> None:
        if self._stream is not None and self._unsynced:
            os.fsync(self._stream.fileno())
            self._unsynced = False

    def close(self) -> None:
        if self._stream is not None:
            self.sync()
            self._stream.close()
            self._stream = None


class RecordFile:
    """The output: one JSON record per document, in input order, on stdout or in a file.

    A file is flushed after every round (a kill loses only the records not yet written)
    and fsynced at least every SYNC_SECONDS and at the end.
    """

    def __init__(self, path: Path | None, done: int = 0, report: BadLineReport | None = None):
        self.path = path
        self.done = done  # complete records there before this run
        self.written = 0
        self.report = report or BadLineReport(None)
        self._stream: IO[bytes] | None = open(path, "ab") if path is not None else None
        self._synced_at = time.monotonic()

    @classmethod
    def open(cls, path: str | os.PathLike | None, options: dict, *, resume: bool = False,
             overwrite: bool = False) -> "RecordFile":
        """stdout for None; otherwise a new file, or with `resume` the existing one after
        checking that `options` (what shapes the records) are those it was written with.
        An existing non-empty file is refused unless `resume` or `overwrite` is given."""
        if path is None:
            return cls(None)
        path = Path(path)
        sidecar = resume_options_path(path)
        options = json.loads(json.dumps(options))
        try:
            exists = path.is_file() and path.stat().st_size > 0
            if exists and not (resume or overwrite):
                raise OutputError(f"{path} already exists ({path.stat().st_size} bytes): pass --resume to continue "
                                  f"it or --overwrite to replace it")
            if exists and resume:
                _check_options(path, sidecar, options)
                return cls(path, _cut_partial_line(path), BadLineReport.resume(bad_lines_path(path)))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb"):
                pass
            bad_lines_path(path).unlink(missing_ok=True)
            write_text(sidecar, json.dumps(options, indent=1, ensure_ascii=False) + "\n", durable=True)
            return cls(path, 0, BadLineReport(bad_lines_path(path)))
        except OSError as error:
            raise OutputError(f"{error.filename or path}: cannot write ({error.strerror or error})") from None

    @property
    def records(self) -> int:
        return self.done + self.written

    def existing_records(self) -> Iterator[dict]:
        """The records there before this run, read lazily."""
        if self.path is None or self.done == 0:
            return
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if number > self.done:
                    return
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict) or "id" not in record:
                    raise OutputError(f"{self.path}:{number}: not a record of `bertkpe extract` (--overwrite "
                                      f"starts again)")
                yield record

    def write(self, records: Sequence[dict]) -> None:
        if not records:
            return
        self.report.sync()  # a bad line reaches the disk before the records after it
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        if self._stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            self._stream.write(text.encode("utf-8"))
            self._stream.flush()
            if time.monotonic() - self._synced_at >= SYNC_SECONDS:
                os.fsync(self._stream.fileno())
                self._synced_at = time.monotonic()
        self.written += len(records)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            self._stream = None
        self.report.close()


def _check_options(path: Path, sidecar: Path, options: dict) -> None:
    if not sidecar.is_file():
        raise OutputError(f"{path} has no {sidecar.name}, so which input it belongs to is unknown: it cannot "
                          f"be resumed (--overwrite starts again)")
    try:
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OutputError(f"{sidecar}: unreadable ({error}); --overwrite starts again") from None
    changed = [f"--{name} {saved.get(name)!r} then, {options.get(name)!r} now"
               for name in sorted(set(saved) | set(options)) if saved.get(name) != options.get(name)]
    if changed:
        raise OutputError(f"{path} was written by another command, so --resume would mix two outputs ("
                          + "; ".join(changed) + "); run the same command, or --overwrite to start again")


# ----------------------------------------------------------------------------- extracting


@dataclass
class CorpusSummary:
    records: int  # in the output, from earlier runs too
    extracted: int  # documents this run wrote
    bad_lines: int  # skipped, from earlier runs too
    seconds: float


def extract_corpus(entries: Iterable[Entry] | None, extract_chunk: ExtractChunk, output: RecordFile | None, *,
                   chunk_size: int = 256, skip_bad_lines: bool = False, runtime: Runtime | None = None,
                   observers: Sequence[RecordObserver] = (), progress: bool = True) -> CorpusSummary | None:
    """Extract every document of `entries` and write its record to `output`, in order.

    Every rank calls it; only rank 0 passes `entries` and `output`, and gets the summary.
    Raises InputError at a bad line (unless `skip_bad_lines`) and OutputError when a
    resumed output does not belong to the input.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    world_size = runtime.world_size if runtime is not None else 1
    if runtime is not None and not runtime.is_main:
        _serve_chunks(extract_chunk, runtime)
        return None
    assert entries is not None and output is not None, "rank 0 reads the input and writes the output"
    from tqdm.auto import tqdm

    started = time.perf_counter()
    first_chunk = output.done // chunk_size
    drop = output.done - first_chunk * chunk_size  # records of the first chunk already in the output
    documents = _checked_documents(entries, output, skip_bad_lines, observers)
    bar = tqdm(initial=output.done, unit="doc", desc="extract", file=sys.stderr, disable=not progress,
               delay=1.0, dynamic_ncols=True)
    workers_waiting = True  # the other ranks wait for a round's chunks (or the stop)
    try:
        for _ in range(first_chunk * chunk_size):
            next(documents, None)
        chunks = _chunks(documents, chunk_size)
        while round_chunks := [chunk for chunk in (next(chunks, None) for _ in range(world_size)) if chunk]:
            workers_waiting = False
            own = _scatter(runtime, round_chunks + [[]] * (world_size - len(round_chunks)))
            gathered = _gather(runtime, extract_chunk(own) if own else [])
            workers_waiting = True
            written: list[dict] = []
            for chunk, records in zip(round_chunks, gathered):
                for document, record in zip(chunk[drop:], records[drop:]):
                    written.append(record)
                    for observer in observers:
                        observer.add(record["id"], document.text, record["keyphrases"])
                drop = 0
            output.write(written)
            bar.update(len(written))
        output.report.check_complete()
    finally:
        if workers_waiting:
            _scatter(runtime, None)
        bar.close()
    return CorpusSummary(output.records, output.written, output.report.count, time.perf_counter() - started)


def _checked_documents(entries: Iterable[Entry], output: RecordFile, skip_bad_lines: bool,
                       observers: Sequence[RecordObserver]) -> Iterator[Document]:
    """The documents; bad lines raise or go to the report; the documents a resumed output
    already holds are checked against its records' ids and shown to the observers."""
    existing = output.existing_records()
    count = 0
    for entry in entries:
        if isinstance(entry, BadLine):
            if not skip_bad_lines:
                raise InputError(entry.source, entry.line, entry.reason)
            output.report.add(entry)
            continue
        if count < output.done:
            record = next(existing)
            if record["id"] != entry.id:
                raise OutputError(f"{output.path} does not belong to this input: its record {count + 1} has id "
                                  f"{record['id']!r}, the input's document {count + 1} has id {entry.id!r} "
                                  f"(--overwrite starts again)")
            for observer in observers:
                observer.add(record["id"], entry.text, record["keyphrases"])
        count += 1
        yield entry
    if count < output.done:
        raise OutputError(f"{output.path} holds {output.done} records, but the input has only {count} documents: "
                          f"it was written from another input (--overwrite starts again)")


def _chunks(documents: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while chunk := [document for _, document in zip(range(size), documents)]:
        yield chunk


def _scatter(runtime: Runtime | None, chunks: list[list[Document]] | None) -> list[Document] | None:
    """This rank's chunk of rank 0's round (None: stop). Every rank calls it."""
    if runtime is None or not runtime.distributed:
        return None if chunks is None else chunks[0]
    received: list[Any] = [None]
    sent = (chunks if chunks is not None else [None] * runtime.world_size) if runtime.is_main else None
    dist.scatter_object_list(received, sent, src=0)
    return received[0]


def _gather(runtime: Runtime | None, records: list) -> list[list]:
    """Every rank's records on rank 0, in rank order (chunk order)."""
    if runtime is None or not runtime.distributed:
        return [records]
    gathered: list[Any] | None = [None] * runtime.world_size if runtime.is_main else None
    dist.gather_object(records, gathered, dst=0)
    return gathered or []


def _serve_chunks(extract_chunk: ExtractChunk, runtime: Runtime) -> None:
    """A rank other than 0: extract the chunks rank 0 sends until it sends the stop."""
    while (chunk := _scatter(runtime, None)) is not None:
        _gather(runtime, extract_chunk(chunk) if chunk else [])
