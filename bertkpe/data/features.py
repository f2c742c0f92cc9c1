"""Model features: sub-token ids, word starts, n-gram mentions with phrase ids, labels.

Everything Python-side that the models need is built here, once per document, and
cached on disk; batching then only pads arrays.

A document longer than one encoder window (`max_token` sub-tokens) is read up to
`max_doc_tokens` sub-tokens as overlapping windows, each cut at word boundaries and
wrapped in the encoder's special tokens. Every word takes its vector from the window in
which it has the most context on both sides, so the heads see one word sequence for
the whole document. With `max_doc_tokens == max_token` there is one window: exactly
the original BERT-KPE truncation.

Mentions (DESIGN.md) are kept in a *grid* of shape (N, W): row n-1 holds the n-grams
of n words, column i the n-gram starting at word i. Reading the valid cells row by
row gives the n-major mention layout. Each cell holds the mention's phrase id, or -1
where the n-gram runs past the document or is not a candidate (it contains a word
with no letter or digit, such as a punctuation token, or a word the tokenizer
dropped).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bertkpe.data.matching import NO_STEMMER, normalize_words

TAGS = ("O", "B", "I", "E", "U")
TAG_ID = {tag: index for index, tag in enumerate(TAGS)}


@dataclass(frozen=True)
class FeatureOptions:
    """Every option that changes a document's features (and so the cache key)."""

    tokenizer: str
    max_token: int = 510  # sub-tokens per encoder window, special tokens excluded
    max_phrase_words: int = 5
    stemmer: str | None = None  # None: the stemmer each document was matched with
    max_doc_tokens: int | None = None  # sub-tokens read per document; None: one window (truncation)
    window_overlap: int = 128  # sub-tokens consecutive windows share

    @property
    def doc_tokens(self) -> int:
        return self.max_doc_tokens if self.max_doc_tokens is not None else self.max_token


@dataclass
class DocumentFeatures:
    url: str
    words: list[str]  # the kept (possibly truncated) document words
    input_ids: np.ndarray  # (T,) int64: the windows one after another, each with the encoder's special tokens
    window_offsets: np.ndarray  # (K + 1,) int64: window k is input_ids[offsets[k]:offsets[k + 1]]
    word_windows: np.ndarray  # (W,) int64: the window each word takes its vector from
    word_starts: np.ndarray  # (W,) int64: the word's first sub-token, as a position in its window
    phrase_grid: np.ndarray  # (N, W) int64 phrase id of each mention, -1 if not a candidate
    phrase_first: np.ndarray  # (P, 2) int64 (start, length) of each phrase's first mention
    gold_spans: np.ndarray  # (G, 2) int64 inclusive (start, end) of present keyphrases, <= N words
    tag_labels: np.ndarray  # (W,) int64 BIOEU tag ids
    words_cut: int = 0  # document words past max_doc_tokens, not read
    gold_cut: int = 0  # gold keyphrase occurrences among them
    doc_tokens: int = 0  # sub-tokens of the whole document, read or not

    @property
    def num_words(self) -> int:
        return int(self.word_starts.shape[0])

    @property
    def num_windows(self) -> int:
        return int(self.window_offsets.shape[0]) - 1

    def window(self, index: int) -> np.ndarray:
        return self.input_ids[self.window_offsets[index]:self.window_offsets[index + 1]]

    @property
    def num_phrases(self) -> int:
        return int(self.phrase_first.shape[0])

    def phrase_words(self, phrase_id: int) -> list[str]:
        start, length = self.phrase_first[phrase_id]
        return self.words[start:start + length]



def has_alnum(word: str) -> bool:
    return any(char.isalnum() for char in word)


def load_tokenizer(name_or_path: str):
    """A fast tokenizer that accepts pre-split words (byte-level BPE needs a prefix space)."""
    from transformers import AutoConfig, AutoTokenizer

    kwargs: dict[str, Any] = {}
    try:
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
    except (OSError, ValueError):
        model_type = ""
    if model_type in ("roberta", "longformer", "bart", "gpt2", "deberta"):
        kwargs["add_prefix_space"] = True
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, **kwargs)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: bertkpe needs a fast (Rust) tokenizer to map words to sub-tokens")
    quiet_length_warning(tokenizer)
    return tokenizer


def quiet_length_warning(tokenizer) -> None:
    """Documents are tokenized whole and cut into encoder windows afterwards, so the
    tokenizer's "longer than the maximum sequence length" warning does not apply."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True


def special_tokens_around(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """The special token ids the encoder expects before and after a single sequence."""
    probe = tokenizer(["keyphrase"], is_split_into_words=True, add_special_tokens=True)
    word_ids = probe.word_ids(0)
    inside = [position for position, word in enumerate(word_ids) if word is not None]
    ids = np.asarray(probe["input_ids"], dtype=np.int64)
    return ids[:inside[0]], ids[inside[-1] + 1:]


def encoder_token_limit(tokenizer, config: Any) -> int | None:
    """The most sub-tokens (special tokens excluded) the encoder accepts, if known."""
    prefix, suffix = special_tokens_around(tokenizer)
    specials = len(prefix) + len(suffix)
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        limits.append(model_max - specials)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
            positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start past padding
        limits.append(positions - specials)
    return min(limits) if limits else None


def check_max_token(max_token: int, tokenizer, encoder_config: Any, flag: str = "--max_token") -> None:
    """Refuse a sub-token budget the encoder cannot take, before any work is done: past its
    position limit the encoder fails mid-run with an index error that names no flag."""
    if max_token < 1:
        raise ValueError(f"{flag} must be at least 1, got {max_token}")
    limit = encoder_token_limit(tokenizer, encoder_config)
    if limit is not None and max_token > limit:
        raise ValueError(f"{flag} {max_token} is more than the encoder takes: at most {limit} sub-tokens "
                         f"besides its special tokens ({getattr(encoder_config, 'max_position_embeddings', '?')} "
                         f"positions)")


def phrase_ids_for(normalized: Sequence[str], candidate: np.ndarray, max_phrase_words: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Give equal n-grams one id. Returns the (N, W) grid of ids and (P, 2) first mentions."""
    num_words = len(normalized)
    grid = np.full((max_phrase_words, num_words), -1, dtype=np.int64)
    if num_words == 0:
        return grid, np.zeros((0, 2), dtype=np.int64)
    vocabulary: dict[str, int] = {}
    word_ids = np.fromiter((vocabulary.setdefault(word, len(vocabulary) + 1) for word in normalized),
                           dtype=np.int64, count=num_words)
    # Column k of `windows` is the word id at offset k (ids start at 1; 0 past the end), so
    # an n-gram's first n columns identify it exactly and never equal a longer n-gram's.
    padded = np.concatenate([word_ids, np.zeros(max_phrase_words, dtype=np.int64)])
    offsets = np.arange(num_words)[:, None] + np.arange(max_phrase_words)[None, :]
    windows = padded[offsets]  # (W, N)
    bad = np.concatenate([~candidate, np.ones(max_phrase_words, dtype=bool)])[offsets]
    valid = ~(np.cumsum(bad, axis=1) > 0)  # (W, N): n-gram of length n+1 at i is a candidate
    mask = valid.T  # (N, W)
    if not mask.any():
        return grid, np.zeros((0, 2), dtype=np.int64)
    base = len(vocabulary) + 1
    if max_phrase_words * np.log2(base) < 62:
        # Mixed-radix code of the n-gram's word ids: one exact int64 per mention.
        codes = np.cumsum(windows * base ** np.arange(max_phrase_words, dtype=np.int64), axis=1)  # (W, N)
        _, first_index, inverse = np.unique(codes.T[mask], return_index=True, return_inverse=True)
    else:
        lengths = np.arange(max_phrase_words)
        keys = np.where(lengths[None, None, :] <= lengths[:, None, None], windows[None], 0)  # (N, W, N)
        _, first_index, inverse = np.unique(keys[mask], axis=0, return_index=True, return_inverse=True)
    length_index, start_index = np.nonzero(mask)
    grid[mask], phrase_first = number_phrases(first_index, inverse, length_index, start_index)
    return grid, phrase_first


def number_phrases(first_index: np.ndarray, inverse: np.ndarray, length_index: np.ndarray,
                   start_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phrase ids numbered by first appearance in n-major order, so ids are stable and
    readable, and each phrase's first mention (start, length). The mentions are listed in
    n-major order (`length_index`, `start_index`); `first_index` and `inverse` are what
    `np.unique` returns over their keys."""
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    firsts = first_index[order]
    return rank[inverse.reshape(-1)], np.stack([start_index[firsts], length_index[firsts] + 1], axis=1).astype(np.int64)


def first_mentions(phrase_grid: np.ndarray) -> np.ndarray:
    """(P, 2) (start, length) of each phrase's first mention in n-major order: phrase ids
    are numbered by first appearance in that order, so the grid alone determines them."""
    num_words = phrase_grid.shape[1]
    flat = phrase_grid.reshape(-1)
    cells = np.flatnonzero(flat >= 0)
    _, first = np.unique(flat[cells], return_index=True)
    cells = cells[first]
    return np.stack([cells % max(num_words, 1), cells // max(num_words, 1) + 1], axis=1).astype(np.int64)


def tag_labels_for(gold_spans: np.ndarray, num_words: int) -> np.ndarray:
    """BIOEU tags; where present keyphrases overlap, the earlier, then longer, span wins."""
    tags = np.full(num_words, TAG_ID["O"], dtype=np.int64)
    taken = np.zeros(num_words, dtype=bool)
    for start, end in sorted(gold_spans.tolist(), key=lambda span: (span[0], span[0] - span[1])):
        if taken[start:end + 1].any():
            continue
        taken[start:end + 1] = True
        if start == end:
            tags[start] = TAG_ID["U"]
        else:
            tags[start] = TAG_ID["B"]
            tags[start + 1:end] = TAG_ID["I"]
            tags[end] = TAG_ID["E"]
    return tags


def window_bounds(word_starts: np.ndarray, num_tokens: int, size: int, overlap: int) -> np.ndarray:
    """(K, 2) sub-token [start, end) of overlapping windows of at most `size` sub-tokens.

    Windows start and end where a word starts, so no word is split between two, and
    each starts at the first word boundary at least `overlap` sub-tokens before the end
    of the previous one. Only a single word longer than a window is cut inside.
    """
    if num_tokens <= size:
        return np.array([[0, num_tokens]], dtype=np.int64)
    boundaries = np.union1d(word_starts[word_starts < num_tokens], [0])
    bounds = []
    start = 0
    while True:
        if start + size >= num_tokens:
            bounds.append((start, num_tokens))
            break
        inside = boundaries[(boundaries > start) & (boundaries <= start + size)]
        end = int(inside[-1]) if len(inside) else start + size
        bounds.append((start, end))
        following = boundaries[(boundaries >= max(end - overlap, start + 1)) & (boundaries <= end)]
        start = int(following[0]) if len(following) else end
    return np.array(bounds, dtype=np.int64)


def choose_windows(bounds: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """For each word with sub-tokens [first, last], the window where it has the most context
    on both sides (the least of the sub-tokens before it and after it in the window);
    the earliest on a tie."""
    starts, ends = bounds[:, :1], bounds[:, 1:]
    holds = (starts <= first[None]) & (first[None] < np.maximum(ends, starts + 1))
    context = np.minimum(first[None] - starts, ends - 1 - last[None])
    return np.argmax(np.where(holds, context, np.iinfo(np.int64).min), axis=0).astype(np.int64)


def crop_windows(doc: DocumentFeatures, first: int, count: int) -> DocumentFeatures:
    """The document as if windows `first` .. `first + count - 1` were all of it: the words
    that take their vector from them, the mentions that end inside them, phrases numbered
    again by first appearance, gold spans inside them. Training on a sample of a long
    document's windows (`--train_windows`) learns from these."""
    last = min(first + count, doc.num_windows)
    if first == 0 and last == doc.num_windows:
        return doc
    kept = np.flatnonzero((doc.word_windows >= first) & (doc.word_windows < last))
    if len(kept) == 0:
        raise ValueError(f"{doc.url}: windows {first}..{last - 1} hold no word of their own")
    start, end = int(kept[0]), int(kept[-1]) + 1
    if len(kept) != end - start:
        raise ValueError(f"{doc.url}: the words of windows {first}..{last - 1} are not contiguous")
    num_words = end - start
    grid = doc.phrase_grid[:, start:end].copy()
    mention_end = np.arange(num_words)[None, :] + np.arange(grid.shape[0])[:, None]
    grid[mention_end >= num_words] = -1
    length_index, start_index = np.nonzero(grid >= 0)
    _, first_index, inverse = np.unique(grid[length_index, start_index], return_index=True, return_inverse=True)
    grid[length_index, start_index], phrase_first = number_phrases(first_index, inverse, length_index, start_index)
    gold = doc.gold_spans
    inside = (gold[:, 0] >= start) & (gold[:, 1] < end)
    gold_spans = (gold[inside] - start).astype(np.int64).reshape(-1, 2)
    offsets = doc.window_offsets[first:last + 1]
    return DocumentFeatures(
        url=doc.url, words=doc.words[start:end], input_ids=doc.input_ids[offsets[0]:offsets[-1]],
        window_offsets=offsets - offsets[0], word_windows=doc.word_windows[start:end] - first,
        word_starts=doc.word_starts[start:end], phrase_grid=grid, phrase_first=phrase_first,
        gold_spans=gold_spans, tag_labels=tag_labels_for(gold_spans, num_words),
        words_cut=doc.words_cut + doc.num_words - num_words, gold_cut=doc.gold_cut + int((~inside).sum()),
        doc_tokens=doc.doc_tokens)


def build_features(records: Sequence[dict[str, Any]], tokenizer, options: FeatureOptions
                   ) -> list[DocumentFeatures]:
    """Features for a chunk of preprocessed records, tokenized in one batched call."""
    doc_tokens = options.doc_tokens
    # A word is at least one sub-token, so no more than doc_tokens words can fit.
    word_lists = [list(record["doc_words"][:doc_tokens]) for record in records]
    encoded = tokenizer(word_lists, is_split_into_words=True, add_special_tokens=False,
                        return_attention_mask=False, return_token_type_ids=False)
    prefix, suffix = special_tokens_around(tokenizer)
    # The length of a document cut at doc_tokens counts its unread words too (tokenized
    # only for those documents), so results can be told apart by true document length.
    cut = [index for index, record in enumerate(records) if len(record["doc_words"]) > len(word_lists[index])
           or len(encoded["input_ids"][index]) > doc_tokens]
    full_lengths = dict(zip(cut, map(len, tokenizer(
        [list(records[index]["doc_words"]) for index in cut], is_split_into_words=True, add_special_tokens=False,
        return_attention_mask=False, return_token_type_ids=False)["input_ids"]))) if cut else {}
    features = []
    for index, (record, words) in enumerate(zip(records, word_lists)):
        token_ids = np.asarray(encoded["input_ids"][index], dtype=np.int64)
        word_of_token = np.asarray(encoded.word_ids(index), dtype=np.int64)
        num_words = len(words)
        if len(token_ids) > doc_tokens:
            # Keep whole words only: cut before the word that crosses doc_tokens.
            num_words = int(word_of_token[doc_tokens])
            keep = word_of_token < num_words
            token_ids, word_of_token = token_ids[keep], word_of_token[keep]
        words = words[:num_words]
        num_tokens = len(token_ids)
        # First and last sub-token of each word; a word the tokenizer dropped (no sub-token)
        # points at the next word's start and is excluded from candidates.
        first = np.full(num_words + 1, num_tokens, dtype=np.int64)
        np.minimum.at(first, word_of_token, np.arange(num_tokens))
        covered = first[:num_words] < num_tokens
        first = np.minimum.accumulate(first[::-1])[::-1][:num_words]
        last = np.full(num_words, -1, dtype=np.int64)
        np.maximum.at(last, word_of_token, np.arange(num_tokens))
        first = np.minimum(first, max(num_tokens - 1, 0))
        last = np.maximum(last, first)
        bounds = window_bounds(first, num_tokens, options.max_token, options.window_overlap)
        word_windows = choose_windows(bounds, first, last)
        word_starts = first - bounds[word_windows, 0] + len(prefix)
        windows = [np.concatenate([prefix, token_ids[start:end], suffix]) for start, end in bounds]
        window_offsets = np.cumsum([0] + [len(window) for window in windows], dtype=np.int64)
        input_ids = np.concatenate(windows)

        stemmer = options.stemmer or record.get("stemmer") or NO_STEMMER
        normalized = normalize_words(words, stemmer)
        candidate = covered & np.fromiter((has_alnum(word) for word in words), dtype=bool, count=num_words)
        phrase_grid, phrase_first = phrase_ids_for(normalized, candidate, options.max_phrase_words)
        occurrences = [(start, end) for spans in record.get("start_end_pos", []) for start, end in spans]
        spans = [(start, end) for start, end in occurrences
                 if end < num_words and end - start < options.max_phrase_words]
        gold_spans = np.asarray(sorted(set(spans)), dtype=np.int64).reshape(-1, 2)
        features.append(DocumentFeatures(
            url=str(record["url"]), words=words, input_ids=input_ids, window_offsets=window_offsets,
            word_windows=word_windows, word_starts=word_starts,
            phrase_grid=phrase_grid, phrase_first=phrase_first, gold_spans=gold_spans,
            tag_labels=tag_labels_for(gold_spans, num_words),
            words_cut=len(record["doc_words"]) - num_words,
            gold_cut=sum(end >= num_words for _, end in occurrences),
            doc_tokens=full_lengths.get(index, num_tokens)))
    return features


def parse_record(raw: bytes, path: str | os.PathLike, line_number: int) -> dict[str, Any]:
    """One line of a preprocessed file (the output of `bertkpe preprocess`); errors name the file and line."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}:{line_number}: not a JSON line ({error})") from error
    if not isinstance(record, dict) or not isinstance(record.get("doc_words"), list) or "url" not in record:
        raise ValueError(f"{path}:{line_number}: expected an object with 'url' and 'doc_words'")
    return record


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a small preprocessed file, in memory (a corpus goes through a feature store)."""
    with open(path, "rb") as handle:
        return [parse_record(raw, path, number) for number, raw in enumerate(handle, start=1) if raw.strip()]


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, normaliser, special tokens).
    Its truncation and padding are left out: they are settings of a call, which a tokenizer
    file may carry until the first call resets them, and features never use them."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode("utf-8"))
    digest.update(json.dumps([ids.tolist() for ids in special_tokens_around(tokenizer)]).encode("utf-8"))
    return digest.hexdigest()
