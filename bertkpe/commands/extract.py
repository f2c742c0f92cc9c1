"""`bertkpe extract`: keyphrases of a corpus of any size with a checkpoint, streamed to JSON
lines (and an HTML page), resumable, one process or one per GPU under torchrun."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator, Sequence

import torch

from bertkpe.corpus import (STDIN, CorpusSummary, Document, Entry, OutputError, RecordFile, extract_corpus,
                            read_corpus)
from bertkpe.extractor import KeyphraseExtractor, default_device, keyphrase_record
from bertkpe.files import LineError
from bertkpe.html_page import HtmlPageWriter
from bertkpe.hub import is_hub_id
from bertkpe.options import ExtractOptions, add_extract_arguments, from_namespace
from bertkpe.runtime import Runtime, setup_runtime, teardown_runtime


RECORD_OPTIONS = ["input", "format", "lines", "checkpoint", "revision", "word_splitter", "top_k", "batch_size",
                  "chunk_size", "offsets", "as_written", "max_doc_tokens", "phrase_pooling", "text_kind", "int8"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_extract_arguments(parser)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def record_options(options: ExtractOptions) -> dict:
    """What `--resume` compares with the output's sidecar; paths made absolute."""
    recorded = {name: getattr(options, name) for name in RECORD_OPTIONS}
    recorded["input"] = [source if source == STDIN else os.path.abspath(source) for source in options.input or [STDIN]]
    if os.path.exists(options.checkpoint) or not is_hub_id(options.checkpoint):
        recorded["checkpoint"] = os.path.abspath(options.checkpoint)
    return recorded


def _runtime(device: str | None) -> Runtime:
    """Under torchrun one process per GPU (NCCL), or per CPU share with `--device cpu` (gloo)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return setup_runtime(no_cuda=device is not None and torch.device(device).type == "cpu")
    return Runtime(device=torch.device(device) if device else default_device())


def _open_corpus(options: ExtractOptions) -> tuple[Iterator[Entry], RecordFile]:
    entries = read_corpus(options.input or [STDIN], options.format, options.lines)
    return entries, RecordFile.open(options.output, record_options(options), resume=options.resume,
                                    overwrite=options.overwrite)


def _summary(summary: CorpusSummary, output: RecordFile) -> str:
    rate = summary.extracted / summary.seconds if summary.seconds > 0 else 0.0
    where = f" -> {output.path}" if output.path is not None else ""
    earlier = f", {summary.records - summary.extracted} already there" if output.done else ""
    line = f"extract: {summary.extracted} documents in {summary.seconds:.1f} s ({rate:.1f} docs/s){earlier}{where}"
    if summary.bad_lines:
        listed = f"listed in {output.report.path}" if output.report.path is not None else "warned above"
        line += f"\nextract: {summary.bad_lines} bad input lines skipped, {listed}"
    return line


def run(args: argparse.Namespace, given: set[str]) -> int:
    options = from_namespace(ExtractOptions, args)
    options.offsets = options.offsets or options.html is not None
    if options.top_k < 1 or options.batch_size < 1 or options.chunk_size < 1:
        return _error("--top_k, --batch_size and --chunk_size must be at least 1")
    if options.html_documents_per_page < 0:
        return _error("--html_documents_per_page must be at least 0 (0: one page)")
    if options.resume and options.overwrite:
        return _error("choose one of --resume and --overwrite")
    if (options.resume or options.overwrite) and not options.output:
        return _error("--resume and --overwrite need --output FILE")
    try:
        runtime = _runtime(options.device or ("cpu" if options.int8 else None))
    except RuntimeError as error:
        return _error(f"cannot run on device {options.device!r} ({error})")
    try:
        entries, output, message = None, None, None
        if runtime.is_main:
            try:
                entries, output = _open_corpus(options)
            except (LineError, OutputError) as error:
                message = str(error)
        (message,) = runtime.from_main(message)
        if message is not None:
            return _error(message) if runtime.is_main else 2
        try:
            extractor = KeyphraseExtractor.from_pretrained(options.checkpoint, revision=options.revision,
                                                           device=runtime.device,
                                                           word_splitter=options.word_splitter,
                                                           max_doc_tokens=options.max_doc_tokens,
                                                           phrase_pooling=options.phrase_pooling,
                                                           text_kind=options.text_kind, int8=options.int8)
        except (FileNotFoundError, ValueError, OSError, ImportError) as error:
            return _error(f"{options.checkpoint}: cannot load the checkpoint ({error})")
        except (RuntimeError, AssertionError) as error:  # a device torch cannot use
            return _error(f"cannot run on device {options.device!r} ({error})")

        def extract_chunk(documents: Sequence[Document]) -> list[dict]:
            keyphrases = extractor.extract([document.text for document in documents], top_k=options.top_k,
                                           batch_size=options.batch_size, offsets=options.offsets,
                                           as_written=options.as_written)
            return [keyphrase_record(document.id, found) for document, found in zip(documents, keyphrases)]

        try:
            page = HtmlPageWriter(options.html, documents_per_page=options.html_documents_per_page or None) \
                if options.html is not None and runtime.is_main else None
        except OSError as error:
            output.close()
            return _error(f"{options.html}: cannot write ({error.strerror or error})")
        try:
            summary = extract_corpus(entries, extract_chunk, output, chunk_size=options.chunk_size,
                                     skip_bad_lines=options.skip_bad_lines, runtime=runtime,
                                     observers=[page] if page is not None else [])
        except LineError as error:
            kept = f"; {output.path} holds the first {output.records} records (fix the line and add --resume, or " \
                   f"pass --skip_bad_lines)" if output.path is not None and output.records else ""
            return _error(f"{error}{kept}")
        except OutputError as error:
            return _error(str(error))
        finally:
            if output is not None:
                output.close()
            if page is not None:
                page.close()
        if summary is not None:
            print(_summary(summary, output), file=sys.stderr)
        return 0
    finally:
        teardown_runtime(runtime)
