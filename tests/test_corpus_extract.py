"""`bertkpe extract` over corpora: streaming, resume after SIGKILL, refusal of an existing
output, bad input lines, and torchrun sharding, on a tiny random checkpoint."""
from __future__ import annotations

import errno
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import FIXTURES, ROOT, SUBPROCESS_ENV, default_tokenizer, read_jsonl, tiny_model

from bertkpe.cli import main
from bertkpe.corpus import (BadLine, Document, RecordFile, bad_lines_path, extract_corpus, read_corpus,
                            resume_options_path)

BAD_LINES = {17: b"{not json\n", 40: b'{"id": "no-text"}\n', 77: b'{"id": "bytes", "text": "caf\xe9"}\n'}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("corpus_ckpt")
    model = tiny_model("bert2joint", hidden=32, layers=1, heads=2, max_positions=512)
    model.save_pretrained(directory, default_tokenizer(), extra={"dataset_class": "kp20k", "stemmer": "porter",
                                                                "max_token": 510})
    return directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """120 KP20K-fixture documents of varied length as JSON lines, with three bad lines."""
    texts = []
    for name in ("kp20k_testing.json", "kp20k_training.json", "kp20k_validation.json"):
        for line in (FIXTURES / "kp20k" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(f"{row['title']}. {row['abstract']}")
    lines = [json.dumps({"id": f"doc-{index}", "text": texts[index % len(texts)][:150 + 11 * index]}).encode() + b"\n"
             for index in range(120)]
    for number, bad in sorted(BAD_LINES.items()):
        lines.insert(number - 1, bad)
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def extract_argv(checkpoint: Path, source: str | Path, output: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--input", str(source), "--format", "jsonl", "--output", str(output),
            "--chunk_size", "4", "--batch_size", "3", "--skip_bad_lines", "--device", "cpu", *extra]


def extract_command(checkpoint: Path, source: str | Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bertkpe", "extract", *extract_argv(checkpoint, source, output, *extra)]


def extract_in_process(argv: list[str]) -> int:
    """`bertkpe extract` here, on one thread as the subprocesses run (SUBPROCESS_ENV)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(["extract", *argv])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(checkpoint, corpus, tmp_path_factory) -> Path:
    """One uninterrupted single-process run over the corpus."""
    output = tmp_path_factory.mktemp("reference") / "out.jsonl"
    assert extract_in_process(extract_argv(checkpoint, corpus, output)) == 0
    assert len(read_jsonl(bad_lines_path(output))) == len(BAD_LINES)
    return output


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def killed_run(command: list[str], corpus: Path, output: Path, kill_after: int, rng: random.Random) -> int:
    """Run the command on stdin fed the corpus up to a little past `kill_after` records
    (so that it cannot finish), SIGKILL it a random moment after `kill_after` records
    are written. The records then in the output."""
    lines = corpus.read_bytes().splitlines(keepends=True)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=SUBPROCESS_ENV, cwd=ROOT)

    def feed() -> None:
        try:
            process.stdin.write(b"".join(lines[:kill_after + len(BAD_LINES) + 10]))
            process.stdin.flush()
        except BrokenPipeError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    deadline = time.monotonic() + 120
    while line_count(output) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(rng.uniform(0, 0.02))
    process.send_signal(signal.SIGKILL)
    process.wait()
    feeder.join()
    process.stdin.close()
    return line_count(output)


def test_resume_after_sigkill_is_byte_identical(checkpoint, corpus, reference, tmp_path, monkeypatch):
    rng = random.Random(14)
    output = tmp_path / "out.jsonl"
    command = extract_command(checkpoint, "-", output)
    expected = reference.read_bytes()
    total = expected.count(b"\n")
    kept = 0
    for round_number, share in enumerate((0.2, 0.55)):
        resume = ["--resume"] if round_number else []
        kept = killed_run(command + resume, corpus, output, max(kept + 1, int(share * total) + rng.randrange(8)), rng)
        assert 0 < kept < total
        data = output.read_bytes()
        assert data == expected[:len(data)]
    # As if the kill came inside a write: half of the last record.
    data = output.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1 + rng.randrange(1, 40)
    output.write_bytes(data[:cut])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(corpus.read_bytes())))
    assert extract_in_process(extract_argv(checkpoint, "-", output, "--resume")) == 0
    assert output.read_bytes() == expected
    skipped = [{**row, "file": "<stdin>"} for row in read_jsonl(bad_lines_path(reference))]
    assert read_jsonl(bad_lines_path(output)) == skipped
    assert [row["line"] for row in skipped] == sorted(BAD_LINES)


def test_torchrun_two_processes_write_the_single_process_file(checkpoint, corpus, reference, tmp_path):
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *extract_command(checkpoint, corpus, output)[1:]]
    done = subprocess.run(command, env=SUBPROCESS_ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert output.read_bytes() == reference.read_bytes()
    assert bad_lines_path(output).read_bytes() == bad_lines_path(reference).read_bytes()


# ----------------------------------------------------------------------------- in process


def extract(capsys, *argv) -> tuple[int, str]:
    code = main(["extract", *map(str, argv)])
    return code, capsys.readouterr().err


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{index}", "text": text}) + "\n" for index, text in enumerate(texts)),
                    encoding="utf-8")
    return path


TEXTS = [f"Document {index} on keyphrase extraction with neural networks and graphs." for index in range(9)]


def test_existing_output_is_refused_unless_resume_or_overwrite(capsys, checkpoint, tmp_path):
    source = write_lines(tmp_path / "docs.jsonl", TEXTS)
    output = tmp_path / "out.jsonl"
    common = ["--checkpoint", checkpoint, "--input", source, "--format", "jsonl", "--output", output, "--chunk_size", 2]
    output.write_text("precious\n", encoding="utf-8")
    code, err = extract(capsys, *common)
    assert code == 2 and "already exists" in err and "--resume" in err and "--overwrite" in err
    assert output.read_text(encoding="utf-8") == "precious\n"
    code, err = extract(capsys, *common, "--resume")
    assert code == 2 and "out.jsonl.resume.json" in err and output.read_text(encoding="utf-8") == "precious\n"

    assert extract(capsys, *common, "--overwrite")[0] == 0
    first = output.read_bytes()
    assert [row["id"] for row in read_jsonl(output)] == [f"d{index}" for index in range(9)]
    assert json.loads(resume_options_path(output).read_text())["chunk_size"] == 2

    code, err = extract(capsys, *common, "--resume", "--top_k", 3)
    assert code == 2 and "--top_k 5 then, 3 now" in err and output.read_bytes() == first
    source.write_text("".join(json.dumps({"id": f"x{index}", "text": text}) + "\n" for index, text in enumerate(TEXTS)),
                      encoding="utf-8")
    code, err = extract(capsys, *common, "--resume")
    assert code == 2 and "does not belong to this input" in err and "'d0'" in err and "'x0'" in err
    assert output.read_bytes() == first

    code, err = extract(capsys, "--checkpoint", checkpoint, "--input", source, "--resume")
    assert code == 2 and "need --output" in err
    code, err = extract(capsys, *common, "--resume", "--overwrite")
    assert code == 2 and "one of --resume and --overwrite" in err


def test_resume_without_output_starts_and_finished_output_stays(capsys, checkpoint, tmp_path):
    source = write_lines(tmp_path / "docs.jsonl", TEXTS)
    output = tmp_path / "fresh" / "out.jsonl"
    common = ["--checkpoint", checkpoint, "--input", source, "--format", "jsonl", "--output", output, "--chunk_size", 4]
    assert extract(capsys, *common, "--resume")[0] == 0
    finished = output.read_bytes()
    assert finished.count(b"\n") == len(TEXTS)
    code, err = extract(capsys, *common, "--resume")
    assert code == 0 and output.read_bytes() == finished and "0 documents" in err and "9 already there" in err


@pytest.mark.parametrize("content, where, reason, written", [
    (b'{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n{"text": "four"}\n{"text": "five"}\n{"id": 6}\n',
     ":6:", "missing field 'text'", 4),
    (b'{"text": "one"}\n{"text": "two"}\n{"text": "caf\xe9"}\n', ":3:", "not valid UTF-8", 2),
    (b'{"text": "one"}\n{"text": 3}\n', ":2:", "'text' must be a string", 0),
])
def test_bad_line_is_fatal_with_file_and_line(capsys, checkpoint, tmp_path, content, where, reason, written):
    source = tmp_path / "docs.jsonl"
    source.write_bytes(content)
    output = tmp_path / "out.jsonl"
    code, err = extract(capsys, "--checkpoint", checkpoint, "--input", source, "--format", "jsonl", "--output", output,
                        "--chunk_size", 2)
    assert code == 2 and err.startswith(f"error: {source}{where} ") and reason in err and "Traceback" not in err
    assert len(read_jsonl(output)) == written  # the chunks before the bad line's
    assert (f"holds the first {written} records" in err) == (written > 0)
    assert not bad_lines_path(output).exists()


def test_bad_lines_skipped_counted_and_reported(capsys, checkpoint, tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_bytes(b'{"id": "a", "text": "Graph neural networks."}\n[1, 2]\n\n{"id": "b", "text": "Sparse graphs."}\n'
                       b'{"text": "caf\xe9"}\n')
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "good.txt").write_text("Keyphrase extraction.", encoding="utf-8")
    (folder / "latin1.txt").write_bytes(b"first line\nna\xefve\n")
    output = tmp_path / "out.jsonl"
    code, err = extract(capsys, "--checkpoint", checkpoint, "--input", source, "--format", "jsonl", "--output", output,
                        "--skip_bad_lines")
    assert code == 0 and [row["id"] for row in read_jsonl(output)] == ["a", "b"]
    assert read_jsonl(bad_lines_path(output)) == [
        {"file": str(source), "line": 2, "reason": "expected a JSON object, got list"},
        {"file": str(source), "line": 5, "reason": "not valid UTF-8 (invalid continuation byte at byte 13)"}]
    assert "2 bad input lines skipped" in err and str(bad_lines_path(output)) in err

    code, err = extract(capsys, "--checkpoint", checkpoint, "--input", folder, "--skip_bad_lines")
    assert code == 0 and f"warning: {folder / 'latin1.txt'}:2: not valid UTF-8" in err
    assert "1 bad input lines skipped" in err
    code, err = extract(capsys, "--checkpoint", checkpoint, "--input", folder)
    assert code == 2 and err.startswith(f"error: {folder / 'latin1.txt'}:2: not valid UTF-8")


class EndlessLines(io.RawIOBase):
    """A stream of JSON lines that never ends; counts the lines handed out."""

    def __init__(self):
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        line = json.dumps({"text": f"document {self.served}"}).encode() + b"\n"
        self.served += 1
        buffer[:len(line)] = line
        return len(line)


def test_reader_is_lazy(monkeypatch):
    stream = EndlessLines()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(stream, buffer_size=256)))
    first = list(itertools.islice(read_corpus(["-"], "jsonl"), 3))
    assert [entry.text for entry in first] == ["document 0", "document 1", "document 2"]
    assert stream.served < 20


def test_memory_bounded_by_the_chunk(tmp_path):
    """Documents come from a generator; no more than a chunk is held before it is written."""
    consumed = 0
    output = RecordFile.open(tmp_path / "out.jsonl", {})

    def documents():
        nonlocal consumed
        for index in range(5000):
            consumed += 1
            yield Document(index, f"text {index}", "gen", index + 1) if index % 1000 else BadLine("gen", index, "bad")

    def extract_chunk(chunk):
        assert len(chunk) <= 64 and consumed - output.records - output.report.seen <= 64
        return [{"id": document.id, "keyphrases": [[document.text, 1.0]]} for document in chunk]

    summary = extract_corpus(documents(), extract_chunk, output, chunk_size=64, skip_bad_lines=True, progress=False)
    output.close()
    assert summary.records == summary.extracted == 4995 and summary.bad_lines == 5
    assert [row["id"] for row in read_jsonl(tmp_path / "out.jsonl")] == [i for i in range(5000) if i % 1000]


def test_offsets_and_html_page_stream_and_resume(capsys, checkpoint, tmp_path):
    source = write_lines(tmp_path / "docs.jsonl", TEXTS)
    output, page = tmp_path / "out.jsonl", tmp_path / "page.html"
    common = ["--checkpoint", checkpoint, "--input", source, "--format", "jsonl", "--output", output, "--chunk_size", 2,
              "--html", page]
    assert extract(capsys, *common)[0] == 0
    whole, whole_page = output.read_bytes(), page.read_text(encoding="utf-8")
    for record, text in zip(read_jsonl(output), TEXTS):
        for phrase, _, spans in record["keyphrases"]:
            assert spans and all(text[start:end].lower() == phrase.lower() for start, end in spans)
    assert whole_page.count('<details class="doc"') == len(TEXTS) and whole_page.rstrip().endswith("</html>")
    output.write_bytes(whole[:whole.index(b"\n", whole.index(b"\n") + 1) + 30])  # 2 records and a half
    page.write_text("stale", encoding="utf-8")
    code, err = extract(capsys, *common, "--resume")
    assert code == 0 and "2 already there" in err
    assert output.read_bytes() == whole and page.read_text(encoding="utf-8") == whole_page


class FullDisk(io.RawIOBase):
    """An output file on a disk that fills after `room` more bytes: what fits is written,
    then every write fails with ENOSPC, as a full disk or quota does."""

    def __init__(self, path: Path, room: int):
        super().__init__()
        self.file = open(path, "ab", buffering=0)
        self.path, self.room = path, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        taken = min(len(data), self.room)
        self.file.write(bytes(data[:taken]))
        self.room -= taken
        return taken

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()
        super().close()


def test_full_disk_names_the_file_and_resume_completes_it(capsys, checkpoint, corpus, reference, tmp_path,
                                                          monkeypatch):
    import bertkpe.corpus.output

    output = tmp_path / "out.jsonl"
    expected = reference.read_bytes()

    def opener(path, mode="r", *args, **kwargs):
        if Path(path) == output and mode == "ab":
            return io.BufferedWriter(FullDisk(output, len(expected) // 2 + 7))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(bertkpe.corpus.output, "open", opener, raising=False)
    assert extract_in_process(extract_argv(checkpoint, corpus, output)) == 2
    err = capsys.readouterr().err
    assert f"{output}: cannot write (No space left on device)" in err and "--resume to continue" in err
    assert "Traceback" not in err
    written = output.read_bytes()
    assert len(written) == len(expected) // 2 + 7 and expected.startswith(written)  # a partial last line
    monkeypatch.undo()
    assert extract_in_process(extract_argv(checkpoint, corpus, output, "--resume")) == 0
    assert output.read_bytes() == expected
