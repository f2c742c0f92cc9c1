"""Decoding: phrase pooling, best-first order, short documents, -inf slots, stem merging."""
from __future__ import annotations

import math

import pytest
import torch

from bertkpe.decoding import decode_batch, top_phrases
from helpers import batch_of, featurize, make_record

INF = math.inf


def scores_for(batch, values):
    """(B, N, W) mention scores: values[b][(n, i)] where given, 0 elsewhere, -inf off-grid."""
    scores = torch.zeros(batch.phrase_grid.shape)
    for b, cells in enumerate(values):
        for (n, i), value in cells.items():
            scores[b, n - 1, i] = value
    return scores.masked_fill(~batch.mention_mask, -INF)


def test_top_phrases_order_and_masking():
    phrase_scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    scores, ids = top_phrases(phrase_scores, mask, 3)
    assert ids[0].tolist() == [1, 2, 0] and ids[1, :2].tolist() == [0, 1]  # a -inf slot's id is any
    assert scores.tolist() == [[pytest.approx(0.9), pytest.approx(0.5), pytest.approx(0.1)],
                               [pytest.approx(0.3), pytest.approx(0.2), -INF]]
    scores, ids = top_phrases(phrase_scores, mask, 10)  # k clipped to the phrase slots
    assert scores.shape == (2, 4) and ids[0, :3].tolist() == [1, 2, 0] and scores[0, 3] == -INF


def test_short_documents_decode_to_what_they_have():
    records = [make_record(["Graph"], url="one"),
               make_record(["deep", "graph", "models"], url="three"),
               make_record(["."], url="punctuation"),
               make_record([], url="empty"),
               make_record("a b c d e f g".split(), url="long")]
    documents = featurize(records, max_phrase_words=3)
    batch = batch_of(documents)
    assert [doc.num_phrases for doc in documents] == [1, 6, 0, 0, 18]
    values = [{(1, 0): 0.3},
              {(1, 0): 0.1, (1, 1): 0.8, (1, 2): 0.2, (2, 0): 0.5, (2, 1): 0.6, (3, 0): 0.4},
              {}, {},
              {(n, i): 0.01 * (10 * n + i) for n in range(1, 4) for i in range(7 - n + 1)}]
    ranked = decode_batch(scores_for(batch, values), batch, documents, top_k=10)
    assert [result.url for result in ranked] == ["one", "three", "punctuation", "empty", "long"]
    assert ranked[0].phrases == [["Graph"]] and ranked[0].scores == [pytest.approx(0.3)]
    assert ranked[1].phrases == [["graph"], ["graph", "models"], ["deep", "graph"],
                                 ["deep", "graph", "models"], ["models"], ["deep"]]
    assert ranked[1].scores == pytest.approx([0.8, 0.6, 0.5, 0.4, 0.2, 0.1])
    assert ranked[2].phrases == [] and ranked[3].phrases == [] and ranked[2].scores == []
    assert len(ranked[4].phrases) == 10
    assert ranked[4].phrases[:3] == [["e", "f", "g"], ["d", "e", "f"], ["c", "d", "e"]]  # best 3-grams first
    top1 = decode_batch(scores_for(batch, values), batch, documents, top_k=1)
    assert [result.phrases for result in top1] == [[["Graph"]], [["graph"]], [], [], [["e", "f", "g"]]]


def test_minus_infinity_mentions_are_dropped():
    documents = featurize([make_record(["deep", "graph"])], max_phrase_words=2)
    batch = batch_of(documents)
    scores = scores_for(batch, [{(1, 0): -INF, (1, 1): 0.5, (2, 0): 0.25}])
    (result,) = decode_batch(scores, batch, documents, top_k=5)
    assert result.phrases == [["graph"], ["deep", "graph"]] and result.scores == [0.5, 0.25]


def test_phrase_score_is_best_mention_and_stems_merge():
    words = ["Neural", "networks", "and", "a", "neural", "network"]
    for stemmer, expected, num_phrases in [
        ("porter", ([["Neural", "networks"], ["Neural"]], [0.9, 0.3]), 8),
        ("none", ([["neural", "network"], ["Neural"]], [0.9, 0.3]), 10),
    ]:
        documents = featurize([make_record(words, stemmer=stemmer)], max_phrase_words=2)
        batch = batch_of(documents)
        scores = torch.full(batch.phrase_grid.shape, 0.01).masked_fill(~batch.mention_mask, -INF)
        scores[0, 1, 0], scores[0, 1, 4] = 0.2, 0.9  # the two "neural network(s)" mentions
        scores[0, 0, 0], scores[0, 0, 4] = 0.3, 0.1  # "Neural" / "neural": one phrase in both
        (result,) = decode_batch(scores, batch, documents, top_k=2)
        assert (result.phrases, result.scores) == (expected[0], pytest.approx(expected[1]))
        (everything,) = decode_batch(scores, batch, documents, top_k=20)
        assert documents[0].num_phrases == num_phrases == len(everything.phrases)
        assert everything.scores == sorted(everything.scores, reverse=True)


def test_decoding_accepts_half_precision_scores():
    documents = featurize([make_record(["deep", "graph", "models"])], max_phrase_words=2)
    batch = batch_of(documents)
    scores = scores_for(batch, [{(1, 0): 0.25, (1, 1): 0.75, (1, 2): 0.5, (2, 0): 0.125, (2, 1): 1.0}])
    for dtype in (torch.float16, torch.bfloat16):
        (result,) = decode_batch(scores.to(dtype), batch, documents, top_k=3)
        assert result.phrases == [["graph", "models"], ["graph"], ["models"]]
        assert result.scores == [1.0, 0.75, 0.5]
