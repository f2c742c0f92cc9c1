"""Extracting a corpus in rounds of chunks, in input order, one process or under torchrun.

Memory is bounded by a round of chunks, not by the corpus: documents are read lazily,
extracted `chunk_size` at a time, and written in input order as each round completes.
Chunks are counted from the start of the input, so a resumed run recomputes the partly
written chunk whole (dropping the records already there): every document sees the same
batch as in an uninterrupted run, and the file is byte-identical to one.

Sharding. Under torchrun, rank 0 reads the input and the output; each round it sends one
chunk to every rank (scatter), extracts its own, collects the records (gather) and writes
them in input order. The file is the one a single process writes (byte for byte when
every process runs as many threads: float sums, so a score's last bits, depend on the
thread count), and a run may be resumed with another number of processes.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch.distributed as dist

from bertkpe.corpus.inputs import BadLine, Document, Entry
from bertkpe.corpus.output import OutputError, RecordFile
from bertkpe.files import LineError
from bertkpe.runtime import Runtime

ExtractChunk = Callable[[Sequence[Document]], list]  # documents -> one record (dict) each, in order


class RecordObserver(Protocol):
    """Something built from the records as they stream, in input order, with each
    document's text (`bertkpe.html_page.HtmlPageWriter`)."""

    def add(self, doc_id: Any, text: str, keyphrases: Sequence[Sequence[Any]]) -> None: ...


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
    Raises LineError at a bad line (unless `skip_bad_lines`) and OutputError when a
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
                raise LineError(entry.source, entry.line, entry.reason)
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
