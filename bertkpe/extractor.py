"""Keyphrases of raw text with a trained checkpoint: the Python API and `bertkpe extract`.

    from bertkpe import KeyphraseExtractor
    kx = KeyphraseExtractor.from_pretrained("results/.../best")   # or a Hub id, "owner/name"
    kx.extract("A document ...", top_k=5)             # [("phrase", score), ...]
    kx.extract(["doc 1", "doc 2"], top_k=10)          # one list per document
    kx.extract("A document ...", offsets=True)         # [("phrase", score, [[start, end], ...]), ...]

Text is split into words the way the checkpoint's training data was split (its
`dataset_class`: openkp -> whitespace, kp20k -> the KP20K tokenizer, multidata -> the
LIAAD tokenizer), then goes through the same feature, batching, model and decoding code
as evaluation. Phrases come back as the text writes them at their first occurrence
(`as_written=False`: their words as split, the form matching uses). Whole documents are read, up to `max_doc_tokens` sub-tokens (16384 by
default), as overlapping encoder windows: every n-gram of what is read is a candidate.

With `offsets=True` each keyphrase also lists where every one of its occurrences is in
the text as given: `text[start:end]` runs from the first character of the occurrence's
first word to the last character of its last word, whatever cleaning the splitter did
(NFC composition, invisible characters dropped). An occurrence is any candidate n-gram
with the phrase's normalised words, so stemmed variants ("networks", "network") are
occurrences of one phrase. Offsets count Unicode code points (Python `str` indices).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Sequence, Union

import numpy as np
import torch

from bertkpe.data.batching import collate, length_grouped_batches
from bertkpe.data.features import DocumentFeatures, FeatureOptions, build_features
from bertkpe.data.matching import NO_STEMMER
from bertkpe.data.tokenizers import encoder_token_limit, load_tokenizer, quiet_length_warning
from bertkpe.data.sources import WordSpans
from bertkpe.dataset_classes import DATASET_CLASSES, DEFAULT_SPLITTER, WordSplitter, get_span_splitter, get_word_splitter
from bertkpe.decoding import phrase_pooling as choose_pooling, rank_batch
from bertkpe.models.base import KeyphraseModel, read_kpe_config
from bertkpe.options import DEFAULT_MAX_DOC_TOKENS, document_options

Keyphrases = list  # list[tuple[str, float]], or list[tuple[str, float, list[list[int]]]] with offsets
WordOffsets = Sequence[tuple[int, int]]  # (start, end) of each word of a document in its text


def occurrence_offsets(document: DocumentFeatures, phrase_ids: Sequence[int], word_offsets: WordOffsets
                       ) -> list[list[list[int]]]:
    """[start, end] in the text of every mention of each phrase, in text order: a mention runs from
    the start of its first word to the end of its last."""
    lengths, starts = np.nonzero(np.isin(document.phrase_grid, list(phrase_ids)))
    order = np.lexsort((lengths, starts))
    found: dict[int, list[list[int]]] = {phrase_id: [] for phrase_id in phrase_ids}
    for length, start in zip(lengths[order].tolist(), starts[order].tolist()):
        phrase_id = int(document.phrase_grid[length, start])
        found[phrase_id].append([int(word_offsets[start][0]), int(word_offsets[start + length][1])])
    return [found[phrase_id] for phrase_id in phrase_ids]


def written_form(text: str, occurrences: Sequence[Sequence[int]]) -> str:
    """A phrase as the text writes it: its first occurrence whose words are apart by single
    spaces (not across a line break or a tab), else its first occurrence as it stands."""
    for start, end in occurrences:
        written = text[start:end]
        if " ".join(written.split()) == written:
            return written
    start, end = occurrences[0]
    return text[start:end]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- the API


class KeyphraseExtractor:
    """A trained keyphrase model with its tokenizer and the options it was trained with.

    Build it with `from_pretrained(checkpoint_dir)`; `extract()` takes raw text.
    """

    def __init__(self, model: KeyphraseModel, tokenizer, *, max_token: int = 510, stemmer: str = NO_STEMMER,
                 word_splitter: str | WordSplitter = DEFAULT_SPLITTER, tokenizer_name: str = "",
                 device: str | torch.device | None = None, max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS,
                 window_overlap: int | None = None, phrase_pooling: str = "document", text_kind: str | None = None,
                 int8: bool = False):
        self.device = torch.device(device) if device is not None else torch.device("cpu") if int8 else default_device()
        if int8:
            from bertkpe.quantization import quantize_int8, require_int8_support

            require_int8_support(self.device)
            model = quantize_int8(model)
        self.int8 = int8
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        limit = encoder_token_limit(tokenizer, model.encoder.config)
        quiet_length_warning(tokenizer)
        self.max_token = min(int(max_token), limit) if limit is not None else int(max_token)
        self.stemmer = stemmer or NO_STEMMER
        self.split_words = get_word_splitter(word_splitter)
        self.split_word_spans = get_span_splitter(word_splitter)
        self.pooling = choose_pooling(phrase_pooling, text_kind)
        self.options = FeatureOptions(tokenizer=tokenizer_name or getattr(tokenizer, "name_or_path", ""),
                                      max_token=self.max_token, max_phrase_words=model.max_phrase_words,
                                      stemmer=self.stemmer,
                                      **dict(zip(("max_doc_tokens", "window_overlap"),
                                                 document_options(self.max_token, max_doc_tokens, window_overlap))))
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        device: str | torch.device | None = None,
                        word_splitter: str | WordSplitter | None = None, stemmer: str | None = None,
                        max_token: int | None = None, max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS,
                        window_overlap: int | None = None, phrase_pooling: str = "document",
                        text_kind: str | None = None, int8: bool = False) -> "KeyphraseExtractor":
        """Load a checkpoint: a folder (`save_pretrained` layout: config.json, model.safetensors,
        kpe_config.json, tokenizer files), or a Hub model id (`owner/name`, at `revision`),
        fetched into the Hugging Face cache (`HF_HUB_OFFLINE=1` reads the cache alone).

        From kpe_config.json: `model_class`, `max_phrase_words` (read by the model loader),
        `max_token` (default 510), `dataset_class` (picks the word splitter; default: the
        LIAAD tokenizer) and `stemmer` (merges phrases with equal stems; default "none").
        Keyword arguments override them. A document is read up to `max_doc_tokens`
        sub-tokens, as windows of `max_token` sharing `window_overlap`; `max_doc_tokens`
        equal to `max_token` reads what the original toolkit read (its first window).
        `phrase_pooling` "document" (default) adds document-level evidence to the best
        mention's score in documents longer than a window, weighted for `text_kind` (papers,
        news or pages; default: the kind the checkpoint was trained on, where it was one,
        else papers); "max" is the original pooling.
        `int8` runs the encoder with int8 weights in ONNX Runtime on the CPU (see
        `bertkpe.quantization`): faster, slightly different scores; refused on other devices.
        """
        from bertkpe.hub import checkpoint_folder
        from bertkpe.models import load_model

        directory = checkpoint_folder(name_or_path, revision)
        config = read_kpe_config(directory)
        model = load_model(directory, device="cpu")
        tokenizer = load_tokenizer(str(directory))
        dataset_class = config.get("dataset_class")
        if word_splitter is None:
            word_splitter = DATASET_CLASSES[dataset_class].word_splitter if dataset_class in DATASET_CLASSES \
                else DEFAULT_SPLITTER
        return cls(model, tokenizer,
                   max_token=max_token if max_token is not None else int(config.get("max_token") or 510),
                   stemmer=stemmer if stemmer is not None else (config.get("stemmer") or NO_STEMMER),
                   word_splitter=word_splitter, tokenizer_name=str(directory), device=device,
                   max_doc_tokens=max_doc_tokens, window_overlap=window_overlap, phrase_pooling=phrase_pooling,
                   text_kind=text_kind or config.get("text_kind"), int8=int8)

    def extract(self, documents: Union[str, Sequence[str]], top_k: int = 5, batch_size: int = 16,
                progress: bool = False, offsets: bool = False, as_written: bool = True
                ) -> Union[Keyphrases, list[Keyphrases]]:
        """The top_k keyphrases of one document (a str) or of each of a list of documents.

        Each keyphrase is `(phrase, score)`, best first: the phrase as the text writes it
        ("Web-Based Project Management System": its first occurrence with its words apart by
        single spaces where there is one, else its first), the score a Python float (higher is better; its scale depends on
        the head). `as_written=False` gives instead the phrase's words as split, joined by
        single spaces ("Web Based Project Management System"), the form the model and the
        scorer match. Phrases with equal normalised words (lower-cased, stemmed when the
        checkpoint's stemmer is on) are one phrase. A document is read whole up to
        `max_doc_tokens` sub-tokens; words past that are not candidates. An empty document
        gives []. Documents are batched by length, at most `batch_size` encoder windows a
        batch; results come back in input order.

        `offsets=True` makes each keyphrase `(phrase, score, [[start, end], ...])`: every
        occurrence among the candidate words, in text order, with `text[start:end]` the
        occurrence as written. A custom word splitter's words are found in the text
        (`locate_words`); where they are not pieces of it, in order, a phrase is its words
        joined, and `offsets=True` raises a ValueError saying which word is missing.
        """
        if isinstance(documents, str):
            return self.extract([documents], top_k=top_k, batch_size=batch_size, offsets=offsets,
                                as_written=as_written)[0]
        texts = list(documents)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"document {index} is {type(text).__name__}, expected str")
        if not offsets and not as_written:
            return self.extract_words([self.split_words(text) for text in texts], top_k=top_k,
                                      batch_size=batch_size, progress=progress)
        spans = [self.located_words(text, required=offsets) for text in texts]
        words = [self.split_words(text) if doc is None else [word for word, _, _ in doc]
                 for text, doc in zip(texts, spans)]
        found = self.extract_words(words, top_k=top_k, batch_size=batch_size, progress=progress,
                                   word_offsets=[None if doc is None else [(start, end) for _, start, end in doc]
                                                 for doc in spans],
                                   texts=texts if as_written else None)
        return found if offsets else [[keyphrase[:2] for keyphrase in ranked] for ranked in found]

    def located_words(self, text: str, required: bool) -> WordSpans | None:
        """The text's words with where each is written; None where a custom splitter's words
        are not pieces of the text and offsets are not `required`."""
        try:
            return self.split_word_spans(text)
        except ValueError:
            if required:
                raise
            return None

    def extract_words(self, word_lists: Sequence[Sequence[str]], top_k: int = 5, batch_size: int = 16,
                      progress: bool = False, chunk_size: int = 4096,
                      word_offsets: Sequence[WordOffsets | None] | None = None,
                      texts: Sequence[str] | None = None) -> list[Keyphrases]:
        """Like `extract`, for documents already split into words: phrases are their words
        joined by single spaces.

        `word_offsets`, the (start, end) of each word in its document's text, adds each
        keyphrase's occurrence offsets, as `extract(..., offsets=True)` does; with the
        `texts` as well, phrases are as written at their first occurrence. A document whose
        offsets are None gets neither.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if word_offsets is not None:
            if len(word_offsets) != len(word_lists):
                raise ValueError(f"word_offsets has {len(word_offsets)} documents, word_lists {len(word_lists)}")
            for index, (words, spans) in enumerate(zip(word_lists, word_offsets)):
                if spans is not None and len(spans) != len(words):
                    raise ValueError(f"document {index}: {len(words)} words but {len(spans)} word offsets")
        if texts is not None and (word_offsets is None or len(texts) != len(word_lists)):
            raise ValueError("texts need word_offsets, and one text per document")
        results: list[Keyphrases] = [[] for _ in word_lists]
        todo = [index for index, words in enumerate(word_lists) if len(words) > 0]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(word_lists), unit="doc", desc="extract", file=sys.stderr)
            bar.update(len(word_lists) - len(todo))
        # Feature building holds every document's arrays: go by chunks for huge inputs.
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            chunk_offsets = None if word_offsets is None else [word_offsets[i] for i in chunk]
            chunk_texts = None if texts is None else [texts[i] for i in chunk]
            for index, ranked in self._extract_chunk([word_lists[i] for i in chunk], top_k, batch_size, bar,
                                                     chunk_offsets, chunk_texts):
                results[chunk[index]] = ranked
        if bar is not None:
            bar.close()
        return results

    def _extract_chunk(self, word_lists: Sequence[Sequence[str]], top_k: int, batch_size: int, bar,
                       word_offsets: Sequence[WordOffsets | None] | None, texts: Sequence[str] | None
                       ) -> Iterable[tuple[int, Keyphrases]]:
        records = [{"url": str(index), "doc_words": list(words), "start_end_pos": [], "stemmer": self.stemmer}
                   for index, words in enumerate(word_lists)]
        features = build_features(records, self.tokenizer, self.options)  # one batched tokenizer call
        # Documents without a candidate n-gram (e.g. only punctuation) need no forward pass.
        live = [index for index, doc in enumerate(features) if doc.num_phrases > 0]
        if bar is not None:
            bar.update(len(features) - len(live))
        lengths = [len(features[index].input_ids) for index in live]
        batches = length_grouped_batches(lengths, batch_size, shuffle=False,
                                         windows=[features[index].num_windows for index in live])
        with torch.inference_mode():
            for batch_positions in batches:
                indices = [live[position] for position in batch_positions]
                documents = [features[index] for index in indices]
                batch = collate(documents, indices, self.pad_token_id)
                for index, ranked in zip(indices, rank_batch(self.model, batch, documents, top_k, self.device, self.pooling)):
                    phrases = [" ".join(words) for words in ranked.phrases]
                    scores = [float(score) for score in ranked.scores]
                    spans = None if word_offsets is None else word_offsets[index]
                    if spans is None:
                        yield index, list(zip(phrases, scores))
                        continue
                    found = occurrence_offsets(features[index], ranked.phrase_ids, spans)
                    if texts is not None:
                        phrases = [written_form(texts[index], where) if where else phrase
                                   for phrase, where in zip(phrases, found)]
                    yield index, list(zip(phrases, scores, found))
                if bar is not None:
                    bar.update(len(indices))

    def __repr__(self) -> str:
        return (f"KeyphraseExtractor(model_class={self.model.model_class!r}, device={str(self.device)!r}, "
                f"max_token={self.max_token}, stemmer={self.stemmer!r})")


# ----------------------------------------------------------------------------- command line

# The options that shape the output records: `--resume` requires the ones the output was written with.


def keyphrase_record(doc_id: Any, keyphrases: Keyphrases) -> dict:
    """One output line, `{"id", "keyphrases": [[phrase, score], ...]}`: whatever else
    `extract` returns for a keyphrase follows its score."""
    return {"id": doc_id, "keyphrases": [list(keyphrase) for keyphrase in keyphrases]}
