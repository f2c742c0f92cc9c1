"""Reading and writing files, one way each.

Reading: JSON lines and UTF-8 text, where a bad line is a `LineError` naming the file and
the line (callers that skip bad lines catch it and count it). Writing: a file or a
folder is written aside under a temporary name and moved into place when complete, so a
kill never leaves a half-written one where a reader looks.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Iterator, Sequence


class LineError(ValueError):
    """Input that is not what was expected: `FILE:LINE: reason` (or `FILE: reason`)."""

    def __init__(self, source: str | os.PathLike, line: int | str | None, reason: str, byte: int | None = None):
        self.source, self.line, self.reason, self.byte = str(source), line, reason, byte
        super().__init__(f"{source}:{line}: {reason}" if line is not None else f"{source}: {reason}")

    def __reduce__(self):  # raised in a worker process, it travels back whole
        return LineError, (self.source, self.line, self.reason, self.byte)


def decode_utf8(raw: bytes, source: str | os.PathLike, line: int | str | None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LineError(source, line, f"not valid UTF-8 ({error.reason} at byte {error.start})", error.start) from None


def json_object(raw: bytes, source: str | os.PathLike, line: int, fields: Sequence[str] = ()) -> dict | None:
    """The JSON object on one raw line, with `fields` present; None for a blank line."""
    text = decode_utf8(raw, source, line)
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise LineError(source, line, f"not valid JSON ({error.msg}, column {error.colno})") from None
    if not isinstance(value, dict):
        raise LineError(source, line, f"expected a JSON object, got {type(value).__name__}")
    for field in fields:
        if field not in value:
            raise LineError(source, line, f"missing field {field!r}")
    return value


def json_lines(path: str | os.PathLike, fields: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSON-lines file, read lazily."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            value = json_object(raw, path, number, fields)
            if value is not None:
                yield number, value


def aside(path: Path) -> Path:
    """A temporary name beside `path`, unique to this writer."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def replaced(path: str | os.PathLike, mode: str = "w", durable: bool = False) -> Iterator[IO]:
    """Write `path` whole: into a file beside it, moved over it when the block ends without
    an error (and, `durable`, synced to disk first); an error leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = aside(path)
    try:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    with replaced(path, durable=durable) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, value: Any, durable: bool = False) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", durable)


class StagedFiles:
    """Several files written aside and moved into place together by `commit` (or dropped by
    `discard`): a run that fails half-way leaves none of them changed."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def open(self, target: Path) -> IO[str]:
        temporary = aside(target)
        handle = open(temporary, "x", encoding="utf-8")
        self._staged.append((temporary, target))
        return handle

    def write_json(self, target: Path, value: Any) -> None:
        with self.open(target) as handle:
            json.dump(value, handle, indent=2)
            handle.write("\n")

    def commit(self) -> None:
        for temporary, target in self._staged:
            os.replace(temporary, target)
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        self._staged.clear()


def staging_folder(target: Path) -> Path:
    """An empty folder beside `target` to build it in, after removing those that builds of
    the same target killed before they finished (the caller is the one writer of `target`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_folder(staging: Path, target: Path) -> None:
    """Swap a built folder in for `target`. A kill between the two renames leaves the
    previous copy as `target.old` (`previous_folder` finds it), never a mix of both."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        if old.exists():  # only a stale `.old` goes: without `target` it is the one complete copy left
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)


def previous_folder(path: Path) -> Path | None:
    """The copy a `replace_folder` interrupted between its renames left, if any."""
    old = path.with_name(path.name + ".old")
    return old if old.is_dir() else None
