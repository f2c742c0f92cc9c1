"""The feature store's format: flat numpy arrays with offsets (bertkpe's) against Arrow read
through Hugging Face `datasets`, holding the same values in the same integer types.

For one preprocessed file, each format in a fresh process: build (parse, featurize in one
process, write), then in another fresh process: open, read the per-document window
counts that batching needs, and read 2,000 random documents as the arrays collation
uses. Wall times, peak RSS (VmHWM) of each process, bytes on disk. The feature building
is the same code for both; only writing and reading differ.

    pip install datasets   # only this comparison needs it
    python bench/store_formats.py --source /tmp/bertkpe_bench/scale/kp20k-100000/prepro/kp20k/kp20k.train.json
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

READS = 2000
FLAT = ("input_ids", "window_lengths", "word_windows", "word_starts", "tag_labels", "phrase_grid", "gold_spans")


def peak_mb() -> float:
    with open("/proc/self/status") as handle:
        return int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1)) / 1024


def options():
    from bertkpe.options import DEFAULT_MAX_DOC_TOKENS
    from bertkpe.data.features import FeatureOptions

    return FeatureOptions(tokenizer=common.default_encoder(), max_token=510, max_doc_tokens=DEFAULT_MAX_DOC_TOKENS,
                          window_overlap=128)


def build_arrow(source: Path, folder: Path) -> None:
    """The same chunks, packed as the numpy store packs them, written as Arrow record batches
    (an Arrow stream file, as `datasets` keeps its caches), list columns over narrow types."""
    import numpy as np
    import pyarrow as pa

    from bertkpe.data.store import array_dtypes, build_chunk, line_chunks
    from bertkpe.data.tokenizers import load_tokenizer, special_tokens_around

    tokenizer = load_tokenizer(common.default_encoder())
    prefix, suffix = special_tokens_around(tokenizer)
    dtypes = array_dtypes(options(), len(tokenizer), len(prefix) + len(suffix))
    units = {"input_ids": "tokens", "window_lengths": "windows", "word_windows": "words", "word_starts": "words",
             "tag_labels": "words", "phrase_grid": "words", "gold_spans": "gold"}
    scale = {"phrase_grid": options().max_phrase_words, "gold_spans": 2}
    writer = None
    folder.mkdir(parents=True)
    with open(folder / "data.arrow", "wb") as sink:
        for lines in line_chunks(source, 256):
            packed, _ = build_chunk(source, lines, tokenizer, options(), dtypes)
            columns = {}
            for name in FLAT:
                counts = packed[f"count.{units[name]}"] * scale.get(name, 1)
                offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
                columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(packed[name]))
            text_offsets = np.concatenate([[0], np.cumsum(packed["count.text"])]).astype(np.int32)
            columns["text"] = pa.LargeBinaryArray.from_buffers(
                pa.large_binary(), len(packed["count.text"]),
                [None, pa.py_buffer(text_offsets.astype(np.int64)), pa.py_buffer(packed["text"].tobytes())])
            columns["word_ends"] = pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(packed["count.words"])]).astype(np.int32)),
                pa.array(packed["word_ends"]))
            url_offsets = np.concatenate([[0], np.cumsum(packed["count.url"])]).astype(np.int32)
            columns["url"] = pa.StringArray.from_buffers(len(packed["count.url"]), pa.py_buffer(url_offsets),
                                                         pa.py_buffer(packed["url"].tobytes()))
            columns["num_windows"] = pa.array(packed["count.windows"].astype(np.uint16))
            for name in ("words_cut", "gold_cut", "doc_tokens", "num_phrases", "num_positive"):
                columns[name] = pa.array(packed[name])
            batch = pa.RecordBatch.from_pydict(columns)
            if writer is None:
                writer = pa.ipc.new_stream(sink, batch.schema)
            writer.write_batch(batch)
        writer.close()


def child(args) -> dict:
    """One measurement in this (fresh) process."""
    import numpy as np

    source, folder = Path(args.source), Path(args.folder)
    result: dict = {}
    started = time.perf_counter()
    if args.child == "build-numpy":
        from bertkpe.data.store import build_store
        from bertkpe.data.tokenizers import load_tokenizer

        folder.mkdir(parents=True)
        build_store(source, load_tokenizer(common.default_encoder()), options(), folder, workers=1)
    elif args.child == "build-arrow":
        build_arrow(source, folder)
    else:
        from datasets import Dataset

        from bertkpe.data.store import FeatureStore

        rng = np.random.default_rng(0)
        started = time.perf_counter()  # imports left out: only opening and reading are compared
        if args.child == "read-numpy":
            store = FeatureStore(folder)
            result["open_s"] = time.perf_counter() - started
            windows = store.lengths("windows")
            result["columns_s"] = time.perf_counter() - started - result["open_s"]
            picks = rng.integers(0, len(store), READS)
            begin = time.perf_counter()
            for index in picks.tolist():
                store[index]
        else:
            dataset = Dataset.from_file(str(folder / "data.arrow")).with_format("numpy")
            result["open_s"] = time.perf_counter() - started
            windows = dataset["num_windows"]
            result["columns_s"] = time.perf_counter() - started - result["open_s"]
            picks = rng.integers(0, len(dataset), READS)
            begin = time.perf_counter()
            for index in picks.tolist():
                row = dataset[index]
                row["text"].tobytes().decode("utf-8")
        result["read_s"] = time.perf_counter() - begin
        result["documents"] = int(len(windows))
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_mb()
    return result


def measure(kind: str, source: Path, folder: Path) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", kind, "--source", str(source), "--folder",
                             str(folder)], capture_output=True, text=True, check=True,
                            env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="a preprocessed split (JSON lines)")
    parser.add_argument("--folder", default=None)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read measurement")
    parser.add_argument("--child", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    source = Path(args.source)
    root = Path(tempfile.mkdtemp(prefix="store_formats-"))
    results = {"machine": common.machine_info(), "source": str(source), "rows": {}}
    try:
        for kind in ("numpy", "arrow"):
            folder = root / kind
            build = measure(f"build-{kind}", source, folder)
            reads = [measure(f"read-{kind}", source, folder) for _ in range(args.repeats)]
            size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
            results["rows"][kind] = {
                "build_s": build["seconds"], "build_peak_mb": build["peak_rss_mb"], "bytes": size,
                "documents": reads[0]["documents"], "bytes_per_document": size / reads[0]["documents"],
                "open_s": common.median([read["open_s"] for read in reads]),
                "columns_s": common.median([read["columns_s"] for read in reads]),
                "read_ms_per_document": 1000 * common.median([read["read_s"] for read in reads]) / READS,
                "read_peak_mb": common.median([read["peak_rss_mb"] for read in reads])}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(results))
    common.write_json(args.json, results)


def report(results) -> str:
    rows = results["rows"]
    lines = [f"Store formats on {results['source']} ({rows['numpy']['documents']:,} documents; builds once, "
             f"reads median of several fresh processes)", "", common.machine_line(results["machine"]), "",
             "| format | build s | build peak RSS | bytes a document | open s | window counts s | "
             f"{READS:,} random documents, ms each | reader peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, row in rows.items():
        lines.append(f"| {kind} | {row['build_s']:.1f} | {row['build_peak_mb']:.0f} MB | "
                     f"{row['bytes_per_document']:,.0f} | {row['open_s']:.3f} | {row['columns_s']:.3f} | "
                     f"{row['read_ms_per_document']:.3f} | {row['read_peak_mb']:.0f} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
