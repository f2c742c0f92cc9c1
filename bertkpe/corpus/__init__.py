"""Corpora for `bertkpe extract`: lazy reading of inputs (inputs.py), the resumable
output file and the bad-line report (output.py), and extraction in rounds of chunks,
sharded across torchrun ranks (extraction.py)."""
from bertkpe.corpus.extraction import CorpusSummary, ExtractChunk, RecordObserver, extract_corpus
from bertkpe.corpus.inputs import STDIN, BadLine, Document, Entry, expand_inputs, read_corpus
from bertkpe.corpus.output import (SYNC_SECONDS, BadLineReport, OutputError, RecordFile, bad_lines_path,
                                   resume_options_path)

__all__ = ["STDIN", "SYNC_SECONDS", "BadLine", "BadLineReport", "CorpusSummary", "Document", "Entry", "ExtractChunk",
           "OutputError", "RecordFile", "RecordObserver", "bad_lines_path", "expand_inputs", "extract_corpus",
           "read_corpus", "resume_options_path"]
