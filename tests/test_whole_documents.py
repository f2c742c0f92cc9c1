"""Whole documents: overlapping encoder windows, one word sequence, every n-gram a candidate.

Hand-worked window cuts, the window each word reads its vector from, documents of one
window unchanged, a keyphrase past token 510 found, pooling over the whole document,
and batches bounded by windows.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bertkpe.data.batching import collate, length_grouped_batches
from bertkpe.data.features import FeatureOptions, build_features, crop_windows
from bertkpe.data.windows import choose_windows, window_bounds
from bertkpe.decoding import MAX_POOLING, PhrasePooling, decode_batch
from bertkpe.extractor import KeyphraseExtractor
from helpers import MODEL_CLASSES, default_tokenizer, featurize, make_record, tiny_model


def test_windows_cut_at_word_boundaries_and_overlap():
    # words start at sub-tokens 0, 2, 3, 6, 7, 9, 12 of 14; windows of 5 sharing 2:
    # [0, 3): the word at 3 runs to 6, past 5; next start: the first boundary >= 3 - 2 -> 2
    # [2, 7), then the first boundary >= 5 -> 6; [6, 9) (9 + 3 > 11), next >= 7 -> 7;
    # [7, 12), next >= 10 -> 12; [12, 14) reaches the end
    starts = np.array([0, 2, 3, 6, 7, 9, 12])
    assert window_bounds(starts, 14, size=5, overlap=2).tolist() == [[0, 3], [2, 7], [6, 9], [7, 12], [12, 14]]
    assert window_bounds(starts, 5, size=5, overlap=2).tolist() == [[0, 5]]  # one window: no cut
    # a single word longer than a window is the only thing cut inside a word
    assert window_bounds(np.array([0, 10]), 12, size=4, overlap=1).tolist() == [[0, 4], [4, 8], [8, 12]]


def test_each_word_reads_the_window_where_it_has_most_context():
    bounds = np.array([[0, 10], [6, 16]])
    first, last = np.array([0, 7, 8, 9, 15]), np.array([0, 7, 9, 9, 15])
    # token 7: min(7, 9 - 7) = 2 in the first window, min(1, 15 - 7) = 1 in the second
    # tokens 8-9: min(8, 0) = 0 against min(2, 6) = 2; token 9: 0 against 3
    assert choose_windows(bounds, first, last).tolist() == [0, 0, 1, 1, 1]


def long_record(num_words: int = 900, tail: tuple[str, ...] = ("zebra", "crossing")) -> dict:
    words = [f"w{index % 97}" for index in range(num_words)] + list(tail)
    return make_record(words, [list(tail)], url="long")


def test_windows_cover_the_document_and_words_point_at_their_first_sub_token():
    tokenizer = default_tokenizer()
    record = long_record()
    (doc,) = featurize([record], max_token=100, max_doc_tokens=16384, window_overlap=20)
    assert doc.words == record["doc_words"] and doc.num_windows > 10
    assert doc.gold_spans.tolist() == [[900, 901]] and doc.words_cut == 0
    for index, word in enumerate(doc.words):
        window = doc.window(int(doc.word_windows[index]))
        assert len(window) <= 102 and window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
        alone = tokenizer([word], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        assert window[doc.word_starts[index]:doc.word_starts[index] + len(alone)].tolist() == alone, index
    (cut,) = featurize([record], max_token=100, max_doc_tokens=100)
    assert cut.num_windows == 1 and cut.words_cut == len(record["doc_words"]) - cut.num_words
    assert cut.gold_spans.tolist() == [] and cut.gold_cut == 1


def test_one_window_documents_are_read_as_before():
    records = [make_record("deep graph models for sparse graph data".split(), [["graph", "data"]], url="a"),
               make_record("a short one".split(), url="b")]
    tokenizer = default_tokenizer()
    before = build_features(records, tokenizer, FeatureOptions(tokenizer="t", max_token=510))
    after = build_features(records, tokenizer, FeatureOptions(tokenizer="t", max_token=510, max_doc_tokens=16384))
    for old, new in zip(before, after):
        assert new.num_windows == 1 and new.word_windows.tolist() == [0] * new.num_words
        for name in ("input_ids", "word_starts", "phrase_grid", "phrase_first", "gold_spans", "tag_labels"):
            assert np.array_equal(getattr(old, name), getattr(new, name)), name


def reference_end_log_probs(model, words, word_mask):
    """The original head's end attention: a (W, W) softmax over j >= i."""
    scores = model.end_query(words) @ model.end_key(words).transpose(1, 2) / math.sqrt(model.hidden_size)
    num_words = words.shape[1]
    allowed = torch.ones(num_words, num_words, dtype=torch.bool).triu()[None] & word_mask[:, None, :]
    log_probs = F.log_softmax(scores.float().masked_fill(~allowed, torch.finfo(torch.float32).min), dim=-1)
    ends = (torch.arange(num_words)[:, None] + torch.arange(model.max_phrase_words)[None]).clamp(max=num_words - 1)
    return torch.gather(log_probs, 2, ends[None].expand(words.shape[0], -1, -1))


@pytest.mark.parametrize("num_words", [1, 7, 300, 512])
def test_span_end_attention_equals_the_original_within_its_reach(num_words):
    model = tiny_model("bert2span", seed=3).eval()
    words = torch.randn(2, num_words, model.hidden_size, generator=torch.Generator().manual_seed(num_words))
    word_mask = torch.ones(2, num_words, dtype=torch.bool)
    word_mask[1, num_words // 2 + 1:] = False
    with torch.no_grad():
        ours, original = model.end_log_probs(words, word_mask), reference_end_log_probs(model, words, word_mask)
    ends = torch.arange(num_words)[:, None] + torch.arange(model.max_phrase_words)[None]
    valid = (ends < num_words)[None] & F.pad(word_mask, (0, model.max_phrase_words))[
        torch.arange(2)[:, None, None], ends[None]]
    torch.testing.assert_close(ours[valid], original[valid], rtol=0, atol=2e-6)


def test_span_end_attention_past_its_reach_is_normalised_over_the_reach():
    model = tiny_model("bert2span", seed=3, head_options={"span_end_window": 16}).eval()
    words = torch.randn(1, 40, model.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.end_log_probs(words, torch.ones(1, 40, dtype=torch.bool))
        scores = model.end_query(words) @ model.end_key(words).transpose(1, 2) / math.sqrt(model.hidden_size)
    for start in (0, 10, 30):
        reach = scores[0, start, start:start + 16]
        expected = reach[:model.max_phrase_words] - torch.logsumexp(reach, 0)
        torch.testing.assert_close(ours[0, start, :len(expected)], expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_a_batch_of_windows_scores_each_document_as_alone(model_class):
    records = [long_record(300), make_record("graph models of sparse data".split(), url="short"), long_record(150)]
    documents = featurize(records, max_token=60, max_doc_tokens=4096, window_overlap=10)
    assert [doc.num_windows for doc in documents][0] > 3
    model = tiny_model(model_class, seed=1).eval()
    with torch.no_grad():
        together = model(collate(documents, pad_token_id=0)).mention_scores
        for row, doc in enumerate(documents):
            alone = model(collate([doc], pad_token_id=0)).mention_scores[0]
            width = doc.num_words
            torch.testing.assert_close(together[row, :, :width], alone[:, :width], rtol=1e-4, atol=1e-5)


def test_a_phrase_takes_the_score_of_its_best_mention_anywhere():
    record = long_record(700, tail=("zebra", "crossing", "w1"))
    (doc,) = featurize([record], max_token=100, max_doc_tokens=16384, window_overlap=20)
    batch = collate([doc], pad_token_id=0)
    scores = torch.zeros(batch.phrase_grid.shape).masked_fill(~batch.mention_mask, float("-inf"))
    last = doc.num_words - 1
    assert doc.word_windows[last] == doc.num_windows - 1  # "w1" at the very end is read in the last window
    scores[0, 0, 1] = 0.2  # "w1" early in the document
    scores[0, 0, last] = 0.9  # and in the last window
    (ranked,) = decode_batch(scores, batch, [doc], top_k=1, pooling=MAX_POOLING)
    assert ranked.phrases == [["w1"]] and ranked.scores == [pytest.approx(0.9)]


def test_extraction_finds_a_keyphrase_only_past_token_510(tmp_path):
    model = tiny_model("bert2joint", seed=2, max_positions=512).eval()
    model.save_pretrained(tmp_path, default_tokenizer(), extra={"dataset_class": "multidata", "stemmer": "none"})
    text = " ".join(f"w{index % 97}" for index in range(800)) + " zebra crossing"
    whole = KeyphraseExtractor.from_pretrained(tmp_path, device="cpu")
    truncated = KeyphraseExtractor.from_pretrained(tmp_path, device="cpu", max_doc_tokens=510)
    assert "zebra crossing" in [phrase for phrase, _ in whole.extract(text, top_k=10_000)]
    assert not any("zebra" in phrase for phrase, _ in truncated.extract(text, top_k=10_000))


def test_batches_hold_at_most_the_window_budget():
    windows = [1, 5, 2, 1, 9, 1]
    lengths = [10, 50, 20, 10, 90, 10]
    batches = length_grouped_batches(lengths, 4, shuffle=False, windows=windows)
    # by length: 4 (9 windows, alone), 1 (5, alone), 2 + 0 + 3 (2 + 1 + 1), 5 (1)
    assert batches == [[4], [1], [2, 0, 3], [5]]
    assert length_grouped_batches(lengths, 4, shuffle=False, windows=[1] * 6) == \
        length_grouped_batches(lengths, 4, shuffle=False)


def test_scores_by_document_length(tmp_path):
    from bertkpe.evaluation import score_split
    from bertkpe.metrics import ScoringConfig
    from helpers import write_jsonl

    references = write_jsonl(tmp_path / "ref.jsonl", [{"url": "a", "KeyPhrases": [["graph"]]},
                                                      {"url": "b", "KeyPhrases": [["tree"], ["node"]]},
                                                      {"url": "c", "KeyPhrases": [["forest"]]}])
    predictions = write_jsonl(tmp_path / "pred.jsonl", [{"url": "a", "KeyPhrases": [["graph"]]},
                                                        {"url": "b", "KeyPhrases": [["tree"]]},
                                                        {"url": "c", "KeyPhrases": [["leaf"]]}])
    scores = score_split(predictions, references, ScoringConfig("kp20k"), doc_tokens=[100, 511, 9000])
    # a: 1 hit of 1 reference: P@5 1/5, R 1, F1 1/3; b: P@5 1/5, R 1/2, F1 2/7; c: no hit
    assert set(scores["by_length"]) == {"0-512", ">8k"}
    assert scores["by_length"]["0-512"]["num_docs"] == 2
    assert scores["by_length"]["0-512"]["F1@5"] == pytest.approx((1 / 3 + 2 / 7) / 2)
    assert scores["by_length"][">8k"] == {**scores["by_length"][">8k"], "num_docs": 1, "F1@5": 0.0, "F1@10": 0.0}
    assert scores["F1@5"] == pytest.approx((1 / 3 + 2 / 7) / 3)


def test_decoding_chunks_hold_a_bounded_number_of_windows(monkeypatch):
    from bertkpe import evaluation

    monkeypatch.setattr(evaluation, "DECODE_CHUNK", 4)
    windows = np.array([1, 1, 1, 1, 1, 3, 6, 1, 2])
    # first windows at 0 1 2 3 | 4 5 | 8 | 14 15: each chunk starts its documents within 4 windows
    assert evaluation.decode_chunks(windows) == [(0, 4), (4, 6), (6, 7), (7, 9)]
    assert evaluation.decode_chunks(np.array([], dtype=np.int64)) == []
    assert evaluation.decode_chunks(np.ones(10, dtype=np.int64)) == [(0, 4), (4, 8), (8, 10)]


def test_scoring_a_split_needs_its_references_in_the_same_order(tmp_path):
    from bertkpe.evaluation import score_split
    from bertkpe.metrics import ScoringConfig
    from helpers import write_jsonl

    references = write_jsonl(tmp_path / "ref.jsonl", [{"url": "a", "KeyPhrases": [["graph"]]},
                                                      {"url": "b", "KeyPhrases": [["tree"]]}])
    swapped = write_jsonl(tmp_path / "swapped.jsonl", [{"url": "b", "KeyPhrases": []}, {"url": "a", "KeyPhrases": []}])
    with pytest.raises(ValueError, match=r"ref.jsonl:1: url 'a', but in .*swapped.jsonl line 1 has url 'b'"):
        score_split(swapped, references, ScoringConfig("kp20k"))
    short = write_jsonl(tmp_path / "short.jsonl", [{"url": "a", "KeyPhrases": []}])
    with pytest.raises(ValueError, match=r"ref.jsonl:2: url 'b', but in .*short.jsonl it has no more lines"):
        score_split(short, references, ScoringConfig("kp20k"))
    longer = write_jsonl(tmp_path / "long.jsonl", [{"url": "a", "KeyPhrases": []}, {"url": "b", "KeyPhrases": []},
                                                   {"url": "c", "KeyPhrases": []}])
    with pytest.raises(ValueError, match=r"long.jsonl:3: url 'c' is absent from .*ref.jsonl"):
        score_split(longer, references, ScoringConfig("kp20k"))


def test_document_pooling_ranks_short_documents_as_max_pooling():
    documents = featurize([make_record("graph models of sparse graph data and graph theory".split(), url="a"),
                           make_record("trees and forests".split(), url="b")])
    batch = collate(documents, pad_token_id=0)
    scores = torch.rand(batch.phrase_grid.shape, generator=torch.Generator().manual_seed(0))
    scores = scores.masked_fill(~batch.mention_mask, float("-inf"))
    by_max = decode_batch(scores, batch, documents, top_k=20, pooling=MAX_POOLING)
    by_document = decode_batch(scores, batch, documents, top_k=20)
    assert [r.phrases for r in by_document] == [r.phrases for r in by_max]
    assert [r.scores for r in by_document] == [r.scores for r in by_max]


def test_document_pooling_weighs_frequency_and_first_position_in_long_documents():
    # 1390 words: "rare" once at word 1000 with the best score 1.0, "often" 10 times from
    # word 0 with 0.6, every other mention 0 (spread 1.0; fillers occur at most 3 times,
    # so they gain at most 0.25 * log 3 + 0.25 = 0.52); the length weight is
    # log(1390 / 512) = 0.9988; "often": 0.6 + 0.9988 * (0.25 * log 10 + 0.25 * 1) = 1.4247,
    # "rare": 1.0 + 0.9988 * (0 + 0.25 * (1 - 1000 / 1390)) = 1.0701
    words = [f"w{index % 690}" for index in range(1390)]
    for position in range(0, 1000, 100):
        words[position] = "often"
    words[1000] = "rare"
    (doc,) = featurize([make_record(words)], max_token=100, max_doc_tokens=16384, window_overlap=20)
    batch = collate([doc], pad_token_id=0)
    scores = torch.zeros(batch.phrase_grid.shape).masked_fill(~batch.mention_mask, float("-inf"))
    scores[0, 0, 1000] = 1.0
    scores[0, 0, [position for position in range(0, 1000, 100)]] = 0.6
    (ranked,) = decode_batch(scores, batch, [doc], top_k=2, pooling=PhrasePooling("document", 0.25, 0.25))
    assert ranked.phrases == [["often"], ["rare"]]
    weight = math.log(1390 / 512)
    assert ranked.scores == [pytest.approx(0.6 + weight * (0.25 * math.log(10) + 0.25)),
                             pytest.approx(1.0 + weight * 0.25 * (1 - 1000 / 1390))]
    (by_max,) = decode_batch(scores, batch, [doc], top_k=2, pooling=MAX_POOLING)
    assert by_max.phrases == [["rare"], ["often"]]
    with pytest.raises(ValueError, match="'max' or 'document'"):
        PhrasePooling("mean")


@pytest.mark.parametrize("model_class", ["bert2span", "bert2joint"])
def test_long_documents_train_in_micro_batches_bounded_by_windows(setup, tmp_path, monkeypatch, model_class):
    from bertkpe.cli import run_command
    from bertkpe.models.base import KeyphraseModel
    from helpers import train_argv

    seen = []
    forward = KeyphraseModel.forward

    def recording_forward(self, batch, compute_loss=False):
        if compute_loss:
            seen.append((batch.input_ids.shape[0], len(batch.indices)))
        return forward(self, batch, compute_loss)

    monkeypatch.setattr(KeyphraseModel, "forward", recording_forward)
    argv = train_argv(setup, "long", "--max_train_epochs", "1", "--no-test_after_training", model_class=model_class,
                      output_dir=tmp_path) + ["--max_token", "32", "--max_doc_tokens", "4096", "--window_overlap", "8",
                                              "--train_windows", "0"]
    assert run_command("train", argv) == 0
    # micro-batches of at most 4 windows; a document of more windows is alone in its micro-batch
    assert all(windows <= 4 or documents == 1 for windows, documents in seen), seen
    assert max(windows for windows, _ in seen) > 4 and sum(documents for _, documents in seen) == 24
    assert "0 of 24 documents longer than 4096 sub-tokens were cut" in (tmp_path / "long" / "train.log").read_text()
    evaluation = json.loads((tmp_path / "long" / "eval_history.jsonl").read_text().splitlines()[-1])
    assert evaluation["unread"] == {"documents_cut": 0, "words": 0, "gold_occurrences": 0}


def varied_record(num_words: int = 600) -> dict:
    """Words that repeat at several distances, so phrases recur within and across windows."""
    words = [f"w{(index * 7) % 41}" if index % 5 else f"v{index % 13}" for index in range(num_words)]
    return make_record(words, [["w7", "w14"], ["v1"], ["w35", "v8", "w8"]], url="varied")


def test_a_crop_of_windows_is_the_document_those_windows_hold():
    tokenizer = default_tokenizer()
    record = varied_record()
    (doc,) = featurize([record], max_token=60, max_doc_tokens=16384, window_overlap=12)
    assert doc.num_windows > 8 and len(doc.gold_spans) > 10
    assert crop_windows(doc, 0, doc.num_windows) is doc and crop_windows(doc, 0, 99) is doc
    for first, count in ((0, 1), (3, 2), (7, 3), (doc.num_windows - 2, 5)):
        crop = crop_windows(doc, first, count)
        kept = np.flatnonzero((doc.word_windows >= first) & (doc.word_windows < first + count))
        start, end = int(kept[0]), int(kept[-1]) + 1
        assert crop.words == record["doc_words"][start:end]
        assert crop.num_windows == min(count, doc.num_windows - first)
        # every word still reads its own first sub-token, in the same window as before
        for index in range(crop.num_words):
            original = doc.window(int(doc.word_windows[start + index]))[doc.word_starts[start + index]]
            assert crop.window(int(crop.word_windows[index]))[crop.word_starts[index]] == original
        # phrases, gold spans and tags are those of the words alone, as a document of its own
        spans = [[(s - start, e - start) for s, e in group if start <= s and e < end]
                 for group in record["start_end_pos"]]
        (alone,) = featurize([make_record(crop.words, record["keyphrases"], spans=spans)], max_token=100_000)
        for name in ("phrase_grid", "phrase_first", "tag_labels"):
            assert np.array_equal(getattr(crop, name), getattr(alone, name)), (first, name)
        assert sorted(map(tuple, crop.gold_spans.tolist())) == sorted(map(tuple, alone.gold_spans.tolist()))
        assert crop.words_cut == doc.num_words - crop.num_words
        assert crop.gold_cut == len(doc.gold_spans) - len(crop.gold_spans)
        assert crop.window(0)[0] == tokenizer.cls_token_id and crop.window(crop.num_windows - 1)[-1] == \
            tokenizer.sep_token_id


def test_training_on_sampled_windows_draws_a_run_of_windows_per_epoch(setup, tmp_path, monkeypatch):
    from bertkpe.cli import run_command
    from bertkpe.data.sampling import WindowBatchSampler
    from bertkpe.models.base import KeyphraseModel
    from helpers import train_argv

    drawn = {}
    plan = WindowBatchSampler.plan

    def recording(self, epoch):
        chosen, first, count, batches, mine = plan(self, epoch)
        drawn.setdefault(epoch, list(zip(chosen.tolist(), first.tolist(), count.tolist())))
        return chosen, first, count, batches, mine

    windows_seen = []
    forward = KeyphraseModel.forward

    def recording_forward(self, batch, compute_loss=False):
        if compute_loss:
            windows_seen.append(batch.input_ids.shape[0] / len(batch.indices))
        return forward(self, batch, compute_loss)

    monkeypatch.setattr(WindowBatchSampler, "plan", recording)
    monkeypatch.setattr(KeyphraseModel, "forward", recording_forward)
    argv = train_argv(setup, "sampled", "--max_train_epochs", "2", "--no-test_after_training",
                      output_dir=tmp_path) + ["--max_token", "32", "--max_doc_tokens", "4096", "--window_overlap", "8",
                                              "--per_gpu_train_batch_size", "6", "--train_windows", "2"]
    assert run_command("train", argv) == 0
    assert sorted(drawn) == [0, 1]
    assert all([position for position, _, _ in items] == list(range(24)) for items in drawn.values())
    assert all(windows <= 2 for _, _, windows in drawn[0] + drawn[1])
    assert max(windows_seen) <= 2 and len(windows_seen) < 2 * 24
    assert drawn[0] != drawn[1]  # a new draw each epoch
    with pytest.raises(SystemExit, match=r"--train_windows must be 0 \(all windows\) or more, got -1"):
        run_command("train", [{"sampled": "negative"}.get(value, value) for value in argv[:-1]] + ["-1"])
    assert not (tmp_path / "negative").exists()


def test_extract_command_reads_whole_documents_unless_capped(tmp_path, capsys):
    from bertkpe.cli import main

    model = tiny_model("bert2joint", seed=2, max_positions=512).eval()
    model.save_pretrained(tmp_path / "ckpt", default_tokenizer(), extra={"dataset_class": "multidata",
                                                                         "stemmer": "none"})
    document = tmp_path / "paper.txt"
    document.write_text(" ".join(f"w{index % 97}" for index in range(800)) + " zebra crossing\n", encoding="utf-8")
    found = {}
    for name, flags in (("whole", []), ("capped", ["--max_doc_tokens", "510", "--phrase_pooling", "max"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["extract", "--checkpoint", str(tmp_path / "ckpt"), "--input", str(document), "--top_k", "10000",
                     "--device", "cpu", "--output", str(out), *flags]) == 0
        (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        found[name] = {phrase for phrase, _ in record["keyphrases"]}
    assert "zebra crossing" in found["whole"] and not any("zebra" in phrase for phrase in found["capped"])


def test_default_document_pooling_weighs_first_position():
    from bertkpe.decoding import DOCUMENT_POOLING

    assert PhrasePooling() == DOCUMENT_POOLING["papers"] == PhrasePooling("document", 0.0, 0.5)
    # 1390 words; "late" once at word 1200 scores 1.0, "early" once at word 10 scores 0.7 and
    # everything else 0: early 0.7 + log(1390 / 512) * 0.5 * (1 - 10 / 1390) = 1.1958,
    # late 1.0 + log(1390 / 512) * 0.5 * (1 - 1200 / 1390) = 1.0683
    words = [f"w{index}" for index in range(1390)]
    words[10], words[1200] = "early", "late"
    (doc,) = featurize([make_record(words)], max_token=100, max_doc_tokens=16384, window_overlap=20)
    batch = collate([doc], pad_token_id=0)
    scores = torch.zeros(batch.phrase_grid.shape).masked_fill(~batch.mention_mask, float("-inf"))
    scores[0, 0, 10], scores[0, 0, 1200] = 0.7, 1.0
    (ranked,) = decode_batch(scores, batch, [doc], top_k=2)
    weight = math.log(1390 / 512)
    assert ranked.phrases == [["early"], ["late"]]
    assert ranked.scores == [pytest.approx(0.7 + weight * 0.5 * (1 - 10 / 1390)),
                             pytest.approx(1.0 + weight * 0.5 * (1 - 1200 / 1390))]
