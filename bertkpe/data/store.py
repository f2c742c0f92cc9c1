"""Feature stores: a split's features on disk, built by streaming, read by memory map.

A corpus of any size is featurized in bounded chunks (in worker processes when it is
large) straight into flat arrays on disk; every process then maps them read-only, so
the operating system shares their pages between torchrun ranks and a process holds
only the documents it is working on. Per-document lengths (sub-tokens, windows, words)
and the counts that decide whether a document can train are columns of their own, so
batching and sampling read them without loading a document.

A store is a folder `{cache_dir}/{file stem}.{key}/`; the key hashes the input file's
bytes, the tokenizer's definition and every feature option, so a changed input or
option never reuses a stale store. It is written under a temporary name and renamed
into place once complete (`meta.json` last), so a store that exists is whole; a build
killed half-way leaves only its temporary folder, which the next build removes. One
process builds a given store while the others wait on a file lock (no timeout: a
build of hours does not make them give up, and a dead builder's lock is released by
the operating system).

Layout: one raw little-endian array per file, its dtype and length in `meta.json`.
Flat arrays hold every document's values one after another (`input_ids` by sub-token,
`window_lengths` by window, `word_*`, `tag_labels` and `phrase_grid` by word, `gold_spans`
by gold span, `text` and `url` by byte); `offsets.UNIT` (int64, documents + 1) says where
each document's run starts in each unit; the other per-document arrays are columns.
Integer types are the narrowest that hold every value the options allow.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from bertkpe.data.features import DocumentFeatures, FeatureOptions, build_features, parse_record
from bertkpe.data.phrases import first_mentions
from bertkpe.data.tokenizers import special_tokens_around, tokenizer_fingerprint
from bertkpe.files import staging_folder

logger = logging.getLogger("bertkpe")

STORE_FORMAT = 1  # bump when the layout or the meaning of a stored value changes
CHUNK_DOCUMENTS = 256  # documents tokenized in one call and written at once
PARALLEL_MIN_BYTES = 16 << 20  # input files this big are built by worker processes by default
UNITS = ("tokens", "windows", "words", "gold", "text", "url")
COLUMNS = ("words_cut", "gold_cut", "doc_tokens", "num_phrases", "num_positive")
META_NAME = "meta.json"


def narrowest(high: int, signed: bool = False) -> np.dtype:
    """The narrowest integer type that holds 0..high (and -1 when signed)."""
    return np.dtype(np.min_scalar_type(-high - 1 if signed else high))


def array_dtypes(options: FeatureOptions, vocab_size: int, specials: int) -> dict[str, np.dtype]:
    """Each array's type, from bounds the options guarantee: a document reads at most
    `doc_tokens` words (a word is at least one sub-token) and so at most that many windows,
    and a window holds at most `max_token` sub-tokens besides its special tokens."""
    doc_tokens = options.doc_tokens
    window_tokens = options.max_token + specials
    return {
        "input_ids": narrowest(vocab_size - 1),
        "window_lengths": narrowest(window_tokens),
        "word_windows": narrowest(doc_tokens),
        "word_starts": narrowest(window_tokens),
        "word_ends": np.dtype(np.uint32),  # byte offset of each word's end in its document's text
        "tag_labels": np.dtype(np.uint8),
        "phrase_grid": narrowest(options.max_phrase_words * doc_tokens, signed=True),
        "gold_spans": narrowest(doc_tokens),
        "text": np.dtype(np.uint8),
        "url": np.dtype(np.uint8),
        "words_cut": np.dtype(np.int64),
        "gold_cut": np.dtype(np.int32),
        "doc_tokens": np.dtype(np.int32),
        "num_phrases": narrowest(options.max_phrase_words * doc_tokens),
        "num_positive": narrowest(options.max_phrase_words * doc_tokens),
        **{f"offsets.{unit}": np.dtype(np.int64) for unit in UNITS},
    }


def _fit(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`values` as `dtype`, refusing (never wrapping) a value the type cannot hold."""
    if values.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ValueError(f"feature store: {name} holds {values.min()}..{values.max()}, beyond {dtype}")
    return np.ascontiguousarray(values, dtype=dtype)


def pack_chunk(features: Sequence[DocumentFeatures], dtypes: dict[str, np.dtype]) -> dict[str, np.ndarray]:
    """A chunk's features as the store's flat arrays and per-document counts."""
    texts = [[word.encode("utf-8") for word in doc.words] for doc in features]
    urls = [doc.url.encode("utf-8") for doc in features]
    counts = {
        "tokens": [len(doc.input_ids) for doc in features],
        "windows": [doc.num_windows for doc in features],
        "words": [doc.num_words for doc in features],
        "gold": [len(doc.gold_spans) for doc in features],
        "text": [sum(map(len, words)) for words in texts],
        "url": [len(url) for url in urls],
    }

    def flat(arrays: list[np.ndarray], name: str) -> np.ndarray:
        return _fit(name, np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64), dtypes[name])

    positives = []
    for doc in features:
        lengths = doc.gold_spans[:, 1] - doc.gold_spans[:, 0]
        ids = doc.phrase_grid[lengths, doc.gold_spans[:, 0]] if len(doc.gold_spans) else np.zeros(0, np.int64)
        positives.append(len(np.unique(ids[ids >= 0])))
    return {
        **{f"count.{unit}": np.asarray(values, dtype=np.int64) for unit, values in counts.items()},
        "input_ids": flat([doc.input_ids for doc in features], "input_ids"),
        "window_lengths": flat([np.diff(doc.window_offsets) for doc in features], "window_lengths"),
        "word_windows": flat([doc.word_windows for doc in features], "word_windows"),
        "word_starts": flat([doc.word_starts for doc in features], "word_starts"),
        "word_ends": flat([np.cumsum([len(word) for word in words], dtype=np.int64) for words in texts],
                          "word_ends"),
        "tag_labels": flat([doc.tag_labels for doc in features], "tag_labels"),
        "phrase_grid": flat([doc.phrase_grid.reshape(-1) for doc in features], "phrase_grid"),
        "gold_spans": flat([doc.gold_spans.reshape(-1) for doc in features], "gold_spans"),
        "text": np.frombuffer(b"".join(b"".join(words) for words in texts), dtype=np.uint8),
        "url": np.frombuffer(b"".join(urls), dtype=np.uint8),
        "words_cut": _fit("words_cut", np.asarray([doc.words_cut for doc in features]), dtypes["words_cut"]),
        "gold_cut": _fit("gold_cut", np.asarray([doc.gold_cut for doc in features]), dtypes["gold_cut"]),
        "doc_tokens": _fit("doc_tokens", np.asarray([doc.doc_tokens for doc in features]), dtypes["doc_tokens"]),
        "num_phrases": _fit("num_phrases", np.asarray([doc.num_phrases for doc in features]), dtypes["num_phrases"]),
        "num_positive": _fit("num_positive", np.asarray(positives), dtypes["num_positive"]),
    }


class FeatureStore(Sequence[DocumentFeatures]):
    """A built store, mapped read-only. `store[i]` is document i's features (int64 arrays,
    as `build_features` makes them); the length columns are read without loading documents."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta_path = self.folder / META_NAME
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.folder}: not a feature store ({error})") from error
        if self.meta.get("format") != STORE_FORMAT:
            raise ValueError(f"{self.folder}: feature store format {self.meta.get('format')}, "
                             f"this bertkpe reads {STORE_FORMAT}: delete it to rebuild")
        self.options = FeatureOptions(**self.meta["options"])
        self.max_phrase_words = self.options.max_phrase_words
        self.arrays = {name: self._map(name, spec["dtype"], spec["length"])
                       for name, spec in self.meta["arrays"].items()}
        self._lengths: dict[str, np.ndarray] = {}

    def _map(self, name: str, dtype: str, length: int) -> np.ndarray:
        path = self.folder / f"{name}.bin"
        expected = np.dtype(dtype).itemsize * length
        size = path.stat().st_size if path.is_file() else -1
        if size != expected:
            raise ValueError(f"{path}: {size} bytes, the store's meta.json says {expected}: "
                             f"a damaged store, delete {self.folder} to rebuild it")
        if length == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=(length,))

    def __reduce__(self):
        """Pickled as its folder, mapped again where it is unpickled (a DataLoader worker started
        by spawn or forkserver), never as its arrays' contents."""
        return FeatureStore, (str(self.folder),)

    def __len__(self) -> int:
        return int(self.meta["documents"])

    def fingerprint(self) -> dict[str, Any]:
        """What the store was built from: its split file (size, and the folder it was
        preprocessed from where recorded) and its key, which hashes the file's bytes."""
        source = Path(self.meta["source"])
        stats = source.parent / "preprocess_stats.json"
        origin = json.loads(stats.read_text()).get("source") if stats.is_file() else None
        return {"file": source.name, "source": origin, "bytes": int(self.meta["source_bytes"]),
                "documents": len(self), "store_key": self.folder.name.rsplit(".", 1)[-1]}

    def span(self, unit: str, index: int) -> tuple[int, int]:
        offsets = self.arrays[f"offsets.{unit}"]
        return int(offsets[index]), int(offsets[index + 1])

    def lengths(self, unit: str) -> np.ndarray:
        """(D,) int64 per-document count of a unit ("tokens", "windows", "words", "gold")."""
        if unit not in self._lengths:
            self._lengths[unit] = np.diff(np.asarray(self.arrays[f"offsets.{unit}"], dtype=np.int64))
        return self._lengths[unit]

    def column(self, name: str) -> np.ndarray:
        """(D,) int64 per-document value: one of COLUMNS."""
        return np.asarray(self.arrays[name], dtype=np.int64)

    def url(self, index: int) -> str:
        start, end = self.span("url", index)
        return self.arrays["url"][start:end].tobytes().decode("utf-8")

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"document {index} of a store of {len(self)}")
        arrays = self.arrays

        def take(name: str, unit: str, scale: int = 1) -> np.ndarray:
            start, end = self.span(unit, index)
            return np.array(arrays[name][start * scale:end * scale], dtype=np.int64)

        tokens, windows, words = (take("input_ids", "tokens"), take("window_lengths", "windows"),
                                  take("word_windows", "words"))
        num_words = len(words)
        phrase_grid = take("phrase_grid", "words", self.max_phrase_words).reshape(self.max_phrase_words, num_words)
        text_start, text_end = self.span("text", index)
        text = arrays["text"][text_start:text_end].tobytes()
        ends = take("word_ends", "words").tolist()
        word_list = [text[start:end].decode("utf-8") for start, end in zip([0] + ends[:-1], ends)]
        return DocumentFeatures(
            url=self.url(index), words=word_list, input_ids=tokens,
            window_offsets=np.concatenate([[0], np.cumsum(windows)]).astype(np.int64),
            word_windows=words, word_starts=take("word_starts", "words"),
            phrase_grid=phrase_grid, phrase_first=first_mentions(phrase_grid),
            gold_spans=take("gold_spans", "gold", 2).reshape(-1, 2),
            tag_labels=take("tag_labels", "words"),
            words_cut=int(arrays["words_cut"][index]), gold_cut=int(arrays["gold_cut"][index]),
            doc_tokens=int(arrays["doc_tokens"][index]))

    def __iter__(self) -> Iterator[DocumentFeatures]:
        for index in range(len(self)):
            yield self[index]

    def describe_cuts(self) -> str:
        """What the `max_doc_tokens` cap left unread, for the log: never silent."""
        totals = self.meta["totals"]
        return (f"{totals['documents_cut']} of {len(self)} documents longer than {self.options.doc_tokens} "
                f"sub-tokens were cut: {totals['words_cut']} words and {totals['gold_cut']} gold keyphrase "
                f"occurrences not read")

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


# --------------------------------------------------------------------------- building

class StoreWriter:
    """Appends packed chunks to a store's files in a staging folder; `finish` makes it a store."""

    def __init__(self, staging: Path, dtypes: dict[str, np.dtype]):
        self.staging, self.dtypes = staging, dtypes
        self.files = {name: open(staging / f"{name}.bin", "wb") for name in dtypes}
        self.lengths = dict.fromkeys(dtypes, 0)
        self.offsets = dict.fromkeys(UNITS, 0)
        self.documents = 0
        self.totals = {"documents_cut": 0, "words_cut": 0, "gold_cut": 0}
        for unit in UNITS:
            self._write(f"offsets.{unit}", np.zeros(1, dtype=np.int64))

    def _write(self, name: str, values: np.ndarray) -> None:
        self.files[name].write(np.ascontiguousarray(values, dtype=self.dtypes[name]).tobytes())
        self.lengths[name] += len(values)

    def add(self, packed: dict[str, np.ndarray]) -> int:
        for unit in UNITS:
            ends = self.offsets[unit] + np.cumsum(packed[f"count.{unit}"])
            self._write(f"offsets.{unit}", ends)
            if len(ends):
                self.offsets[unit] = int(ends[-1])
        for name in self.dtypes:
            if not name.startswith("offsets."):
                self._write(name, packed[name])
        documents = len(packed["count.tokens"])
        self.documents += documents
        self.totals["documents_cut"] += int((packed["words_cut"] > 0).sum())
        self.totals["words_cut"] += int(packed["words_cut"].sum())
        self.totals["gold_cut"] += int(packed["gold_cut"].sum())
        return documents

    def finish(self, meta: dict[str, Any]) -> None:
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        meta = {**meta, "format": STORE_FORMAT, "documents": self.documents, "totals": self.totals,
                "arrays": {name: {"dtype": self.dtypes[name].str, "length": self.lengths[name]}
                           for name in self.dtypes}}
        with open(self.staging / META_NAME, "w") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def record_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line of a preprocessed file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def line_chunks(path: Path, size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for item in record_lines(path):
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_chunk(path: Path, lines: list[tuple[int, bytes]], tokenizer, options: FeatureOptions,
                dtypes: dict[str, np.dtype]) -> tuple[dict[str, np.ndarray], int]:
    """Parse, featurize and pack one chunk of lines; returns the packed arrays and the bytes read."""
    records = [parse_record(raw, path, number) for number, raw in lines]
    return pack_chunk(build_features(records, tokenizer, options), dtypes), sum(len(raw) for _, raw in lines)


_worker_tokenizer = None


def _init_worker(tokenizer_name: str) -> None:
    global _worker_tokenizer
    import torch

    from bertkpe.data.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    _worker_tokenizer = load_tokenizer(tokenizer_name)


def _build_in_worker(path: Path, lines: list[tuple[int, bytes]], options: FeatureOptions,
                     dtypes: dict[str, np.dtype]) -> tuple[dict[str, np.ndarray], int]:
    return build_chunk(path, lines, _worker_tokenizer, options, dtypes)


def packed_chunks(path: Path, tokenizer, options: FeatureOptions, dtypes: dict[str, np.dtype], workers: int,
                  chunk_size: int = CHUNK_DOCUMENTS) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Packed chunks in file order. With workers > 1 at most two chunks per worker are in
    flight, so memory is bounded whatever the file's size."""
    chunks = line_chunks(path, chunk_size)
    if workers <= 1:
        for lines in chunks:
            yield build_chunk(path, lines, tokenizer, options, dtypes)
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(tokenizer.name_or_path,)) as pool:
        pending: deque[Future] = deque()
        for lines in chunks:
            pending.append(pool.submit(_build_in_worker, path, lines, options, dtypes))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def store_key(path: Path, tokenizer, options: FeatureOptions) -> str:
    """Hash of the input's bytes, the tokenizer's definition and every feature option (the
    tokenizer's name or folder is left out: the same definition gives the same features)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    settings = {**asdict(options), "tokenizer": tokenizer_fingerprint(tokenizer), "format": STORE_FORMAT}
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:24]


def default_workers(path: Path) -> int:
    """One process builds 400-500 abstracts/s; below some thousands of documents, starting
    workers and shipping chunks back costs about what the extra cores gain."""
    return 1 if path.stat().st_size < PARALLEL_MIN_BYTES else min(os.cpu_count() or 1, 8)


def build_store(path: Path, tokenizer, options: FeatureOptions, staging: Path, workers: int,
                chunk_size: int = CHUNK_DOCUMENTS) -> None:
    """Featurize `path` into the (empty) folder `staging`, chunk by chunk."""
    prefix, suffix = special_tokens_around(tokenizer)
    dtypes = array_dtypes(options, len(tokenizer), len(prefix) + len(suffix))
    writer = StoreWriter(staging, dtypes)
    progress = tqdm(total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True, leave=False)
    try:
        for packed, size in packed_chunks(path, tokenizer, options, dtypes, workers, chunk_size):
            writer.add(packed)
            progress.update(size)
        writer.finish({"options": asdict(options), "source": str(path), "source_bytes": path.stat().st_size,
                       "built": time.strftime("%Y-%m-%d %H:%M:%S")})
    finally:
        writer.close()
        progress.close()


@contextlib.contextmanager
def build_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Held while one process builds a store; others block here until it is done (or dead)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            logger.info("waiting for %s to finish building %s", holder, what)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(path: str | os.PathLike, tokenizer, options: FeatureOptions,
               cache_dir: str | os.PathLike | None = "data/cached_features", workers: int | None = None,
               chunk_size: int = CHUNK_DOCUMENTS) -> FeatureStore:
    """The store of a preprocessed file, built first if no store matches its key.

    Without `cache_dir` the store is built in a temporary folder removed with the store."""
    path = Path(path)
    workers = default_workers(path) if workers is None else workers
    if cache_dir is None:
        staging = Path(tempfile.mkdtemp(prefix=f"{path.stem}.features-"))
        try:
            build_store(path, tokenizer, options, staging, workers, chunk_size)
            store = FeatureStore(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        weakref.finalize(store, shutil.rmtree, staging, True)
        return store
    cache_dir = Path(cache_dir)
    name = f"{path.stem}.{store_key(path, tokenizer, options)}"
    folder = cache_dir / name
    if not (folder / META_NAME).is_file():
        with build_lock(cache_dir / f"{name}.lock", f"the feature store {folder}"):
            if not (folder / META_NAME).is_file():
                staging = staging_folder(folder)  # clears what killed builds left: no one else builds it now
                started = time.perf_counter()
                try:
                    build_store(path, tokenizer, options, staging, workers, chunk_size)
                    os.rename(staging, folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                store = FeatureStore(folder)
                logger.info("built the feature store %s: %d documents, %.1f MB, in %.1f s", folder, len(store),
                            store.nbytes / 1e6, time.perf_counter() - started)
                return store
    logger.info("feature store %s", folder)
    return FeatureStore(folder)
