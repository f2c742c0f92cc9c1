"""The output of `bertkpe extract`: one JSON record per document in input order, flushed
every round and synced to disk at least every SYNC_SECONDS, resumable after any stop;
and the report of the bad lines a run skipped.

Resume. The output file is the progress record: its complete lines are the documents
done. A sidecar `OUTPUT.resume.json` holds the options that shape the records (inputs,
checkpoint, top_k, batching, ...); `--resume` refuses when they differ, cuts off a
partial last line, checks that the records' ids are the ids of the input's first
documents, and goes on from there. A bad line is in the report before any record of a
later document is in the output, so a resumed run finds the report's lines again in the
same order and appends only new ones.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Iterator, Sequence

from bertkpe.corpus.inputs import BadLine
from bertkpe.files import write_text

SYNC_SECONDS = 10.0  # a write this long after the last fsync of the output fsyncs it


class OutputError(Exception):
    """An output that may not be written or resumed (exit code 2)."""


def write_failed(path: Path, error: OSError, complete: int) -> OutputError:
    """A write that failed mid-run (a full disk, a quota): the complete records stay, a
    partial last line is cut by `--resume`, which continues from there exactly."""
    return OutputError(f"{path}: cannot write ({error.strerror or error}); its first {complete} records are "
                       f"complete: make room and run the same command with --resume to continue")


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
            try:
                if self._stream is None:
                    self._stream = open(self.path, "ab")
                self._stream.write((json.dumps(bad.to_json(), ensure_ascii=False) + "\n").encode("utf-8"))
                self._stream.flush()
            except OSError as error:
                self.abandon()
                raise write_failed(self.path, error, self.count) from None
            self._unsynced = True
        self.seen += 1

    def check_complete(self) -> None:
        """At the end of the input: every listed line must have been met again."""
        if self.seen < len(self.listed):
            raise OutputError(f"{self.path} lists {len(self.listed)} bad lines, this input has {self.seen}: "
                              f"the output was written from another input (--overwrite starts again)")

    def sync(self) -> None:
        if self._stream is not None and self._unsynced:
            try:
                os.fsync(self._stream.fileno())
            except OSError as error:
                self.abandon()
                raise write_failed(self.path, error, self.count) from None
            self._unsynced = False

    def close(self) -> None:
        if self._stream is not None:
            self.sync()
            self._stream.close()
            self._stream = None

    def abandon(self) -> None:
        """After a failed write: close without writing what is left (resume cuts a partial line)."""
        if self._stream is not None:
            abandon(self._stream)
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
            try:
                self._stream.write(text.encode("utf-8"))
                self._stream.flush()
                if time.monotonic() - self._synced_at >= SYNC_SECONDS:
                    os.fsync(self._stream.fileno())
                    self._synced_at = time.monotonic()
            except OSError as error:
                self.abandon()
                raise write_failed(self.path, error, self.records) from None
        self.written += len(records)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
                os.fsync(self._stream.fileno())
            except OSError as error:
                self.abandon()
                raise write_failed(self.path, error, self.records) from None
            self._stream.close()
            self._stream = None
        self.report.close()

    def abandon(self) -> None:
        """After a failed write: close without writing what is left (resume cuts a partial line)."""
        if self._stream is not None:
            abandon(self._stream)
            self._stream = None
        self.report.abandon()


def abandon(stream: IO[bytes]) -> None:
    """Close a file whose buffer cannot be written: the flush fails again, the file closes anyway."""
    try:
        stream.close()
    except OSError:
        pass


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
