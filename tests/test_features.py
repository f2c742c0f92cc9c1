"""Features: mention grid, phrase ids, gold spans, BIOEU tags, truncation, word starts, batching."""
from __future__ import annotations

import random

import numpy as np
import pytest

from bertkpe.data.phrases import TAG_ID, first_mentions, phrase_ids_for, tag_labels_for
from bertkpe.data.tokenizers import load_tokenizer
from helpers import batch_of, default_tokenizer, featurize, kp20k_records, make_record, normalize

O, B, I, E, U = (TAG_ID[tag] for tag in "OBIEU")


# --------------------------------------------------------------------------- slow references

def reference_phrases(normalized, candidate, max_phrase_words):
    """Grid and first mentions by plain loops: ids by first appearance in n-major order."""
    num_words = len(normalized)
    grid = np.full((max_phrase_words, num_words), -1, dtype=np.int64)
    ids, first = {}, []
    for n in range(1, max_phrase_words + 1):
        for i in range(num_words - n + 1):
            if not all(candidate[i:i + n]):
                continue
            key = tuple(normalized[i:i + n])
            if key not in ids:
                ids[key] = len(ids)
                first.append((i, n))
            grid[n - 1, i] = ids[key]
    return grid, np.asarray(first, dtype=np.int64).reshape(-1, 2)


def reference_grid(words, stemmer, max_phrase_words):
    candidate = [any(char.isalnum() for char in word) for word in words]
    return reference_phrases(normalize(words, stemmer), candidate, max_phrase_words)


def check_word_starts(doc, tokenizer, specials):
    """Each word's sub-tokens (tokenized alone) sit at word_starts, special tokens around."""
    tokens = tokenizer.convert_ids_to_tokens(doc.input_ids.tolist())
    assert tokens[0] == specials[0] and tokens[-1] == specials[1]
    assert [token for token in tokens if token in specials] == list(specials)
    position = 1
    for index, word in enumerate(doc.words):
        alone = tokenizer([word], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        assert doc.input_ids[position:position + len(alone)].tolist() == alone, (index, word)
        if alone:
            assert doc.word_starts[index] == position
        position += len(alone)
    assert position == len(doc.input_ids) - 1


# --------------------------------------------------------------------------- by hand

WORDS = ["Neural", "networks", ",", "neural", "network", "learn"]


def test_phrase_grid_unstemmed_by_hand():
    record = make_record(WORDS, [["neural", "networks"], ["learn"]], stemmer="none")
    assert record["start_end_pos"] == [[[0, 1]], [[5, 5]]]
    (doc,) = featurize([record], max_phrase_words=3)
    assert doc.phrase_grid.tolist() == [[0, 1, -1, 0, 2, 3],
                                        [4, -1, -1, 5, 6, -1],
                                        [-1, -1, -1, 7, -1, -1]]
    assert doc.phrase_first.tolist() == [[0, 1], [1, 1], [4, 1], [5, 1], [0, 2], [3, 2], [4, 2], [3, 3]]
    assert doc.phrase_words(5) == ["neural", "network"] and doc.phrase_words(4) == ["Neural", "networks"]
    assert doc.gold_spans.tolist() == [[0, 1], [5, 5]]
    assert doc.tag_labels.tolist() == [B, E, O, O, O, U]
    assert doc.num_words == 6 and doc.num_phrases == 8


def test_phrase_grid_porter_merges_plural():
    record = make_record(WORDS, [["neural", "networks"], ["learn"]], stemmer="porter")
    assert record["start_end_pos"] == [[[0, 1], [3, 4]], [[5, 5]]]
    (doc,) = featurize([record], max_phrase_words=3)
    # "networks" and "network" share id 1; "neural networks" and "neural network" share id 3.
    assert doc.phrase_grid.tolist() == [[0, 1, -1, 0, 1, 2],
                                        [3, -1, -1, 3, 4, -1],
                                        [-1, -1, -1, 5, -1, -1]]
    assert doc.phrase_first.tolist() == [[0, 1], [1, 1], [5, 1], [0, 2], [4, 2], [3, 3]]
    assert doc.gold_spans.tolist() == [[0, 1], [3, 4], [5, 5]]
    assert doc.tag_labels.tolist() == [B, E, O, B, E, U]
    # The options' stemmer overrides the record's.
    (unstemmed,) = featurize([record], max_phrase_words=3, stemmer="none")
    assert unstemmed.phrase_grid[1, 0] != unstemmed.phrase_grid[1, 3]
    assert unstemmed.phrase_grid[0, 1] != unstemmed.phrase_grid[0, 4]


def test_punctuation_words_are_not_candidates():
    words = ["(", "graph", "-", "model", ")", "...", "data", "3", "x-ray"]
    (doc,) = featurize([make_record(words)], max_phrase_words=3)
    grid, first = reference_grid(words, "none", 3)
    assert doc.phrase_grid.tolist() == grid.tolist() and doc.phrase_first.tolist() == first.tolist()
    for column in (0, 2, 4, 5):  # every mention covering a punctuation word is -1
        for n in range(1, 4):
            for start in range(max(column - n + 1, 0), column + 1):
                assert doc.phrase_grid[n - 1, start] == -1, (n, start)
    assert doc.phrase_grid[0, 7] >= 0 and doc.phrase_grid[0, 8] >= 0 and doc.phrase_grid[1, 7] >= 0


def test_gold_spans_filtered_sorted_deduplicated():
    words = "a graph of the neural network model of data".split()
    spans = [[[4, 5], [4, 5]], [[1, 1]], [[0, 5]], [[4, 7]], [[6, 8]]]  # dup; ok; 6 words; 4 words; ok
    record = make_record(words, [["x"]] * 5, spans=spans)
    (doc,) = featurize([record], max_phrase_words=3)
    assert doc.gold_spans.tolist() == [[1, 1], [4, 5], [6, 8]]
    assert doc.tag_labels.tolist() == [O, U, O, O, B, E, B, I, E]
    (empty,) = featurize([make_record(words)], max_phrase_words=3)
    assert empty.gold_spans.shape == (0, 2) and empty.tag_labels.tolist() == [O] * len(words)


def test_tag_labels_overlaps_earlier_then_longer_wins():
    spans = np.array([[1, 2], [0, 1], [0, 2], [4, 4], [5, 7], [7, 8]])
    assert tag_labels_for(spans, 10).tolist() == [B, I, E, O, U, B, I, E, O, O]
    assert tag_labels_for(np.zeros((0, 2), dtype=np.int64), 3).tolist() == [O, O, O]


def test_phrase_ids_with_a_large_vocabulary():
    rng = random.Random(11)
    words = [f"w{rng.randrange(9000)}" for _ in range(6000)]
    for _ in range(50):  # repeat some segments so that long n-grams recur
        start, target, length = rng.randrange(5990), rng.randrange(5990), rng.randint(1, 6)
        words[target:target + length] = words[start:start + length]
    candidate = np.array([rng.random() > 0.01 for _ in words], dtype=bool)
    grid, first = phrase_ids_for(words, candidate, 5)
    expected_grid, expected_first = reference_phrases(words, candidate.tolist(), 5)
    assert np.array_equal(grid, expected_grid) and np.array_equal(first, expected_first)
    assert len(np.unique(grid[4][grid[4] >= 0])) < (grid[4] >= 0).sum()  # some 5-grams repeat


def test_phrase_ids_match_loop_reference_on_random_words():
    rng = random.Random(7)
    vocabulary = ["a", "b", "c", "d", ",", "e"]
    for trial in range(80):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 25))]
        candidate = np.array([word != "," and rng.random() > 0.05 for word in words], dtype=bool)
        max_phrase_words = rng.randint(1, 5) if trial % 4 else rng.randint(6, 30)
        grid, first = phrase_ids_for(words, candidate, max_phrase_words)
        expected_grid, expected_first = reference_phrases(words, candidate.tolist(), max_phrase_words)
        assert grid.tolist() == expected_grid.tolist(), (trial, words)
        assert first.tolist() == expected_first.tolist(), (trial, words)
        assert grid.dtype == np.int64 and first.dtype == np.int64


# --------------------------------------------------------------------------- tokenization

def test_truncation_keeps_whole_words():
    tokenizer = default_tokenizer()
    words = ["alpha", "beta", "tokenization", "gamma"]  # tokenization -> token ##ization
    record = make_record(words, spans=[[[0, 1]], [[1, 2]], [[3, 3]]])
    (cut,) = featurize([record], max_token=3)
    assert cut.words == ["alpha", "beta"]
    assert tokenizer.convert_ids_to_tokens(cut.input_ids.tolist()) == ["[CLS]", "alpha", "beta", "[SEP]"]
    assert cut.gold_spans.tolist() == [[0, 1]] and cut.phrase_grid.shape == (5, 2)
    (kept,) = featurize([record], max_token=4)
    assert tokenizer.convert_ids_to_tokens(kept.input_ids.tolist()) == [
        "[CLS]", "alpha", "beta", "token", "##ization", "[SEP]"]
    assert kept.word_starts.tolist() == [1, 2, 3] and kept.gold_spans.tolist() == [[0, 1], [1, 2]]
    (whole,) = featurize([record], max_token=5)
    assert whole.words == words and whole.word_starts.tolist() == [1, 2, 3, 5]
    assert whole.gold_spans.tolist() == [[0, 1], [1, 2], [3, 3]]
    for doc in (cut, kept, whole):
        check_word_starts(doc, tokenizer, ("[CLS]", "[SEP]"))


def test_words_the_tokenizer_drops_are_not_candidates():
    tokenizer = default_tokenizer()
    words = ["alpha", "\u200b", "keyphrase", "beta"]
    (doc,) = featurize([make_record(words)], max_phrase_words=2)
    assert tokenizer.convert_ids_to_tokens(doc.input_ids.tolist()) == [
        "[CLS]", "alpha", "key", "##ph", "##rase", "beta", "[SEP]"]
    assert doc.word_starts.tolist() == [1, 2, 2, 5]
    assert doc.phrase_grid.tolist() == [[0, -1, 1, 2], [-1, -1, 3, -1]]


def test_empty_document():
    (doc,) = featurize([make_record([])])
    assert doc.num_words == 0 and doc.num_phrases == 0 and doc.phrase_grid.shape == (5, 0)
    assert default_tokenizer().convert_ids_to_tokens(doc.input_ids.tolist()) == ["[CLS]", "[SEP]"]


def test_byte_level_tokenizer(roberta_tokenizer_dir):
    tokenizer = load_tokenizer(str(roberta_tokenizer_dir))
    assert tokenizer.is_fast and tokenizer.add_prefix_space
    words = ["Neural", "networks", ",", "graph", "models", "zebrafish", "fast", "!"]  # zebrafish: unseen
    record = make_record(words, [["neural", "networks"], ["graph", "models"], ["fast"]])
    (doc,) = featurize([record], tokenizer)
    check_word_starts(doc, tokenizer, ("<s>", "</s>"))
    tokens = tokenizer.convert_ids_to_tokens(doc.input_ids.tolist())
    assert all(tokens[start].startswith("\u0120") for start in doc.word_starts)  # each word's first piece
    assert doc.gold_spans.tolist() == [[0, 1], [3, 4], [6, 6]]
    grid, first = reference_grid(words, "none", 5)
    assert doc.phrase_grid.tolist() == grid.tolist() and doc.phrase_first.tolist() == first.tolist()
    # Truncation inside a multi-piece word drops the whole word.
    lengths = [len(tokenizer([word], is_split_into_words=True, add_special_tokens=False)["input_ids"])
               for word in words]
    assert lengths[5] > 1
    max_token = sum(lengths[:5]) + 1
    (cut,) = featurize([record], tokenizer, max_token=max_token)
    assert cut.words == words[:5] and len(cut.input_ids) == sum(lengths[:5]) + 2
    assert cut.gold_spans.tolist() == [[0, 1], [3, 4]]
    check_word_starts(cut, tokenizer, ("<s>", "</s>"))


# --------------------------------------------------------------------------- real documents

@pytest.fixture(scope="module")
def kp20k_test_records(fixtures):
    return kp20k_records(fixtures / "kp20k" / "kp20k_testing.json", 24)


def test_real_documents(kp20k_test_records):
    tokenizer = default_tokenizer()
    max_token, max_words = 160, 5
    documents = featurize(kp20k_test_records, max_token=max_token, max_phrase_words=max_words)
    truncated = total_gold = 0
    for record, doc in zip(kp20k_test_records, documents):
        assert doc.url == record["url"] and doc.words == record["doc_words"][:doc.num_words]
        truncated += doc.num_words < len(record["doc_words"])
        assert len(doc.input_ids) <= max_token + 2
        check_word_starts(doc, tokenizer, ("[CLS]", "[SEP]"))
        keyphrases = {normalize(phrase, "porter") for phrase in record["keyphrases"]}
        for start, end in doc.gold_spans.tolist():
            assert normalize(doc.words[start:end + 1], "porter") in keyphrases
        expected = sorted({(start, end) for group in record["start_end_pos"] for start, end in group
                           if end < doc.num_words and end - start < max_words})
        assert [tuple(span) for span in doc.gold_spans.tolist()] == expected
        total_gold += len(expected)
        grid, first = reference_grid(doc.words, "porter", max_words)
        assert np.array_equal(doc.phrase_grid, grid) and np.array_equal(doc.phrase_first, first)
        for phrase_id in range(doc.num_phrases):
            start, length = doc.phrase_first[phrase_id]
            assert doc.phrase_grid[length - 1, start] == phrase_id
        assert np.array_equal(first_mentions(doc.phrase_grid), doc.phrase_first)  # what a store rebuilds them from
    assert truncated > 0 and total_gold > 20


# --------------------------------------------------------------------------- batching

def test_collate_pads_and_labels():
    from bertkpe.data.batching import COUNT_UNITS, IGNORE_INDEX

    records = [make_record(WORDS, [["neural", "networks"], ["learn"]], stemmer="porter"),
               make_record(["graph", "model"], [["graph"]])]
    documents = featurize(records, max_phrase_words=3)
    batch = batch_of(documents)
    assert batch.input_ids.shape == (2, 8) and batch.attention_mask.sum(1).tolist() == [8, 4]
    assert batch.input_ids[1, 4:].tolist() == [0] * 4
    assert batch.word_mask.sum(1).tolist() == [6, 2] and batch.word_starts[1].tolist() == [1, 2, 0, 0, 0, 0]
    assert batch.phrase_grid.shape == (2, 3, 6) and (batch.phrase_grid[1, :, 2:] == -1).all()
    assert batch.phrase_grid[1, :, :2].tolist() == [[0, 1], [2, -1], [-1, -1]]
    assert batch.phrase_mask.sum(1).tolist() == [6, 3]
    assert batch.gold_spans.tolist() == [[[0, 1], [3, 4], [5, 5]], [[0, 0], [-1, -1], [-1, -1]]]
    assert batch.tag_labels[1].tolist() == [U, O] + [IGNORE_INDEX] * 4
    labels = batch.mention_labels
    assert sorted(map(tuple, labels.nonzero().tolist())) == [(0, 0, 5), (0, 1, 0), (0, 1, 3), (1, 0, 0)]
    assert batch.phrase_labels.long().tolist() == [[0, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]]
    # doc 0: 6 words, 5 + 3 + 1 candidate mentions (none with the comma), 2 keyphrase phrases
    # of 6, 3 gold spans; doc 1: 2 words, 3 mentions, 1 keyphrase phrase of 3, 1 span
    assert dict(zip(COUNT_UNITS, batch.counts.tolist())) == {"words": 8, "mentions": 9 + 3, "ranked_documents": 2,
                                                            "gold_spans": 4}
    assert batch.max_positives == 2
    assert batch.to("cpu").indices == [0, 1]


def test_length_grouped_batches_and_shard():
    import torch

    from bertkpe.data.batching import length_grouped_batches, shard

    rng = random.Random(3)
    lengths = [rng.randint(1, 100) for _ in range(53)]
    batches = length_grouped_batches(lengths, 4, torch.Generator().manual_seed(1), bucket_batches=3)
    assert sorted(index for batch in batches for index in batch) == list(range(53))
    assert all(0 < len(batch) <= 4 for batch in batches)
    assert all([lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True) for batch in batches)
    assert batches == length_grouped_batches(lengths, 4, torch.Generator().manual_seed(1), bucket_batches=3)
    ordered = length_grouped_batches(lengths, 4, shuffle=False)
    flat = [index for batch in ordered for index in batch]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True) and len(ordered) == 14
    for world_size in range(1, 6):
        for count in range(0, 8):
            batches = [[index] for index in range(count)]
            shards = [shard(batches, rank, world_size) for rank in range(world_size)]
            expected = -(-count // world_size)
            assert [len(part) for part in shards] == [expected] * world_size, (world_size, count)
            assert {index for part in shards for (index,) in part} == set(range(count))
