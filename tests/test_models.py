"""The five heads against slow loop references; encoders; training; memory; checkpoints."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from bertkpe.decoding import decode_batch
from bertkpe.models import ATTENTION_DROPOUT_NAMES, load_model, pool_phrases
from bertkpe.models.rank import RANK_LOSSES, margin_rank_loss, softmax_rank_loss
from helpers import (ENCODER_KINDS, MODEL_CLASSES, batch_of, default_tokenizer, featurize, kp20k_records,
                     make_record, tiny_config, tiny_model)

N = 5
VOCABULARY = ["graph", "neural", "network", "networks", "model", "deep", "learning", "data", "tokenization",
              "keyphrase", ",", ".", "of", "the", "-"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two shared cores: a single intra-op thread is much faster than two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- slow references
# Everything below works on one document's word vectors h (W, H) in float64, with the
# model's own weights, by plain loops over words and n-grams.

def weights(layer):
    return layer.weight.detach().double(), layer.bias.detach().double()


def linear(layer, vector):
    weight, bias = weights(layer)
    return weight @ vector + bias


def ngram_vector(cnn, h, n, i):
    conv = cnn.convs[n - 1]
    weight, bias = conv.weight.detach().double(), conv.bias.detach().double()  # (C, H, n)
    total = bias.clone()
    for k in range(n):
        total = total + weight[:, :, k] @ h[i + k]
    return torch.relu(total)


def mentions(doc):
    """(n, i, phrase id) of every candidate mention, n-major."""
    return [(n, i, int(doc.phrase_grid[n - 1, i])) for n in range(1, N + 1) for i in range(doc.num_words - n + 1)
            if doc.phrase_grid[n - 1, i] >= 0]


class Reference:
    """One document's head quantities by plain loops (each computed once, on demand)."""

    def __init__(self, model, h):
        self.model, self.h = model, h
        self.cache = {}

    def memo(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def start_probs(self, i):
        return self.memo(("start", i), lambda: torch.softmax(linear(self.model.start_classifier, self.h[i]), 0))

    def end_probs(self, i):
        """P_end(j | i) for j = i..W-1: attention of word i's query over the keys of words j >= i."""
        def compute():
            query = linear(self.model.end_query, self.h[i])
            keys = [self.memo(("key", j), lambda j=j: linear(self.model.end_key, self.h[j]))
                    for j in range(i, len(self.h))]
            return torch.softmax(torch.stack([query @ key for key in keys]) / math.sqrt(self.h.shape[1]), 0)
        return self.memo(("end", i), compute)

    def tag_probs(self, i):
        return self.memo(("tag", i), lambda: torch.softmax(linear(self.model.classifier, self.h[i]), 0))

    def gram(self, n, i):
        return self.memo(("gram", n, i), lambda: ngram_vector(self.model.ngram_cnn, self.h, n, i))

    def chunk_probs(self, n, i):
        return torch.softmax(linear(self.model.chunk_classifier, self.gram(n, i)), 0)


def reference_mention_scores(model, h, doc, reference=None):
    """{(n, i): score} for every candidate mention of one document."""
    ref = reference or Reference(model, h)
    scores = {}
    for n, i, _ in mentions(doc):
        if model.model_class == "bert2span":
            scores[n, i] = ref.start_probs(i)[1] * ref.end_probs(i)[n - 1]
        elif model.model_class == "bert2tag":
            O, B, I, E, U = range(5)
            if n == 1:
                scores[n, i] = ref.tag_probs(i)[U]
            else:
                parts = ([ref.tag_probs(i)[B]] + [ref.tag_probs(k)[I] for k in range(i + 1, i + n - 1)]
                         + [ref.tag_probs(i + n - 1)[E]])
                scores[n, i] = min(parts)
        elif model.model_class == "bert2chunk":
            scores[n, i] = ref.chunk_probs(n, i)[1]
        else:  # rank and joint decode with the rank scores
            scores[n, i] = linear(model.rank_scorer, ref.gram(n, i))[0]
    return {key: float(value) for key, value in scores.items()}


def reference_phrase_scores(doc, scores):
    phrases = {}
    for n, i, phrase_id in mentions(doc):
        phrases[phrase_id] = max(phrases.get(phrase_id, -math.inf), scores[n, i])
    return phrases


def gold_set(doc):
    return {tuple(span) for span in doc.gold_spans.tolist()}


def reference_chunk_terms(ref, doc):
    """-log P(label) of every candidate mention (labels: is exactly a gold span)."""
    gold = gold_set(doc)
    return [-math.log(float(ref.chunk_probs(n, i)[int((i, i + n - 1) in gold)])) for n, i, _ in mentions(doc)]


def reference_rank_loss_document(doc, mention_scores):
    phrases = reference_phrase_scores(doc, mention_scores)
    positive = {phrase_id for n, i, phrase_id in mentions(doc) if (i, i + n - 1) in gold_set(doc)}
    negative = set(phrases) - positive
    if not positive or not negative:
        return None
    hinges = [max(0.0, 1.0 - phrases[p] + phrases[q]) for p in positive for q in negative]
    return sum(hinges) / len(hinges)


def reference_loss(model, words, documents):
    kind = model.model_class
    if kind == "bert2span":
        start_terms, end_terms = [], []
        for b, doc in enumerate(documents):
            ref = Reference(model, words[b, :doc.num_words])
            gold_starts = {start for start, _ in doc.gold_spans.tolist()}
            start_terms += [-math.log(float(ref.start_probs(i)[int(i in gold_starts)])) for i in range(doc.num_words)]
            end_terms += [-math.log(float(ref.end_probs(start)[end - start])) for start, end in doc.gold_spans.tolist()]
        return sum(start_terms) / len(start_terms) + sum(end_terms) / len(end_terms)
    if kind == "bert2tag":
        terms = []
        for b, doc in enumerate(documents):
            ref = Reference(model, words[b, :doc.num_words])
            terms += [-math.log(float(ref.tag_probs(i)[doc.tag_labels[i]])) for i in range(doc.num_words)]
        return sum(terms) / len(terms)
    chunk_terms, rank_losses = [], []
    for b, doc in enumerate(documents):
        ref = Reference(model, words[b, :doc.num_words])
        if kind in ("bert2chunk", "bert2joint"):
            chunk_terms += reference_chunk_terms(ref, doc)
        if kind in ("bert2rank", "bert2joint"):
            document_loss = reference_rank_loss_document(doc, reference_mention_scores(model, ref.h, doc, ref))
            if document_loss is not None:
                rank_losses.append(document_loss)
    chunk = sum(chunk_terms) / len(chunk_terms) if chunk_terms else 0.0
    rank = sum(rank_losses) / len(rank_losses) if rank_losses else 0.0
    return chunk + rank


# --------------------------------------------------------------------------- random documents

def random_documents(seed, sizes=(23, 9, 31, 1)):
    rng = random.Random(seed)
    records = []
    for index, size in enumerate(sizes):
        words = [rng.choice(VOCABULARY) for _ in range(size)]
        spans = []
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(size)
            spans.append([[start, min(size - 1, start + rng.randrange(N + 1))]])  # sometimes > N words
        records.append(make_record(words, [["x"]] * len(spans), url=f"random-{index}", spans=spans,
                                   stemmer=rng.choice(["none", "porter"])))
    return featurize(records, max_phrase_words=N)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_head_matches_loop_reference(model_class):
    documents = random_documents(seed=MODEL_CLASSES.index(model_class))
    batch = batch_of(documents)
    model = tiny_model(model_class, seed=1).eval()
    with torch.no_grad():
        words = model.word_vectors(batch)
        output = model.head(words, batch, compute_loss=True)
        assert torch.equal(model(batch).mention_scores, output.mention_scores)
        phrase_scores = model.phrase_scores(output.mention_scores, batch)
    words = words.double()
    assert output.mention_scores.shape == (len(documents), N, batch.word_mask.shape[1])
    top_k = 7
    ranked = decode_batch(output.mention_scores, batch, documents, top_k=top_k)
    for b, doc in enumerate(documents):
        expected = reference_mention_scores(model, words[b, :doc.num_words], doc)
        got = output.mention_scores[b]
        for n in range(1, N + 1):
            for i in range(got.shape[1]):
                if (n, i) in expected:
                    assert got[n - 1, i].item() == pytest.approx(expected[n, i], rel=1e-4, abs=1e-6), (n, i)
                else:
                    assert got[n - 1, i].item() == -math.inf, (n, i)
        phrases = reference_phrase_scores(doc, expected)
        assert sorted(phrases) == list(range(doc.num_phrases))
        for phrase_id in range(phrase_scores.shape[1]):
            value = phrase_scores[b, phrase_id].item()
            if phrase_id in phrases:
                assert value == pytest.approx(phrases[phrase_id], rel=1e-4, abs=1e-6)
            else:
                assert value == -math.inf
        # decoding: best-first reference order; with ties, any tied phrase may take the slot
        first_words = {}
        for n, i, phrase_id in mentions(doc):
            first_words.setdefault(phrase_id, doc.words[i:i + n])
        by_words = {tuple(first_words[phrase_id]): phrase_id for phrase_id in phrases}
        best = sorted(phrases.values(), reverse=True)[:top_k]
        assert ranked[b].url == doc.url
        assert ranked[b].scores == pytest.approx(best, rel=1e-4, abs=1e-6)
        assert len({tuple(words_) for words_ in ranked[b].phrases}) == len(best)
        for phrase, score in zip(ranked[b].phrases, ranked[b].scores):
            assert phrases[by_words[tuple(phrase)]] == pytest.approx(score, rel=1e-4, abs=1e-6)
    assert output.loss.item() == pytest.approx(reference_loss(model, words, documents), rel=1e-4)


# --------------------------------------------------------------------------- encoders

@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_every_head_over_every_encoder(kind):
    documents = random_documents(seed=3, sizes=(12, 5))
    batch = batch_of(documents)
    for model_class in MODEL_CLASSES:
        model = tiny_model(model_class, kind=kind, seed=2).train()
        output = model(batch, compute_loss=True)
        assert output.mention_scores.shape == (2, N, 12)
        assert torch.isfinite(output.loss) and output.loss.item() > 0
        output.loss.backward()
        embedding = model.encoder.get_input_embeddings().weight
        assert embedding.grad is not None and embedding.grad.abs().sum() > 0, (kind, model_class)
        head = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
        assert head and all(p.grad is not None and torch.isfinite(p.grad).all() for p in head), (kind, model_class)
        valid = batch.mention_mask
        assert torch.isfinite(output.mention_scores[valid]).all()
        assert (output.mention_scores[~valid] == -math.inf).all()


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_attention_dropout_replaces_the_encoders_own(kind):
    from bertkpe.models import build_model

    batch = batch_of(random_documents(seed=4, sizes=(12, 5)))
    config = tiny_config(kind, dropout=0.0)  # no hidden dropout: attention dropout is the only noise

    def two_forwards(attention_dropout):
        torch.manual_seed(1)
        model = build_model("bert2tag", config, attention_dropout=attention_dropout).train()
        with torch.no_grad():
            first, second = (model(batch).mention_scores for _ in range(2))
        return torch.equal(torch.nan_to_num(first), torch.nan_to_num(second))

    assert two_forwards(None) and two_forwards(0.0) and not two_forwards(0.5)
    assert all(getattr(config, name, 0.0) == 0.0 for name in ATTENTION_DROPOUT_NAMES)  # the caller's, untouched


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_hidden_dropout_replaces_the_encoders_own_and_the_heads(kind):
    from bertkpe.models import build_model

    batch = batch_of(random_documents(seed=4, sizes=(12, 5)))
    config = tiny_config(kind, dropout=0.3)
    model = build_model("bert2joint", config, attention_dropout=0.0, hidden_dropout=0.0).train()
    assert model.dropout_rate == 0.0 and model.ngram_cnn.dropout.p == 0.0
    with torch.no_grad():  # no dropout anywhere left: training forwards agree
        first, second = (model(batch).mention_scores for _ in range(2))
    assert torch.equal(torch.nan_to_num(first), torch.nan_to_num(second))
    assert build_model("bert2joint", config).dropout_rate == 0.3  # the caller's config, untouched


def test_attention_dropout_of_an_encoder_without_one_is_refused():
    from transformers import GPT2Config

    from bertkpe.models import with_dropout

    with pytest.raises(ValueError, match="gpt2 encoder config has no attention dropout setting"):
        with_dropout(GPT2Config(), 0.0)
    with pytest.raises(ValueError, match=r"attention dropout must be in \[0, 1\), got 1.0"):
        with_dropout(tiny_config("bert"), 1.0)


# --------------------------------------------------------------------------- training on real documents

@pytest.fixture(scope="module")
def training_documents(fixtures):
    records = kp20k_records(fixtures / "kp20k" / "kp20k_training.json", 12)
    documents = [doc for doc in featurize(records, max_token=80) if len(doc.gold_spans)]
    return records, documents[:6]


def contains(words, phrase):
    return any(words[i:i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_head_learns_real_documents(model_class, training_documents):
    records, documents = training_documents
    assert len(documents) == 6
    by_url = {record["url"]: record for record in records}
    batch = batch_of(documents)
    model = tiny_model(model_class, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return model(batch, compute_loss=True).loss.item()

    initial = eval_loss()
    for _ in range(20):
        model.train()
        optimizer.zero_grad()
        loss = model(batch, compute_loss=True).loss
        loss.backward()
        optimizer.step()
    final = eval_loss()
    assert final < 0.5 * initial, (initial, final)
    with torch.no_grad():
        ranked = decode_batch(model(batch).mention_scores, batch, documents, top_k=5)
    hits = 0
    for doc, result in zip(documents, ranked):
        assert len(result.phrases) == 5 and result.scores == sorted(result.scores, reverse=True)
        assert all(contains(by_url[doc.url]["doc_words"], phrase) for phrase in result.phrases)
        gold = {tuple(doc.words[start:end + 1]) for start, end in doc.gold_spans.tolist()}
        hits += any(tuple(phrase) in gold for phrase in result.phrases)
    assert hits >= 4, hits


# --------------------------------------------------------------------------- memory

class LargestOutput(torch.utils._python_dispatch.TorchDispatchMode):
    """Bytes of the largest tensor any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in (result if isinstance(result, (tuple, list)) else (result,)):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel() * value.element_size())
        return result


def head_memory(model, num_words):
    """Bytes saved for backward by a training forward of the head, and its largest tensor."""
    rng = random.Random(num_words)
    words = [rng.choice(VOCABULARY[:10]) + str(rng.randrange(num_words // 4)) for _ in range(num_words)]
    spans = [[[start, start + length]] for start, length in ((3, 1), (num_words // 2, 0), (num_words - 3, 2))]
    (doc,) = featurize([make_record(words, [["x"]] * 3, spans=spans)], max_token=500, max_doc_tokens=4 * num_words)
    assert doc.num_words == num_words
    batch = batch_of([doc])
    with torch.no_grad():
        vectors = model.word_vectors(batch)
    vectors.requires_grad_(True)
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    largest = LargestOutput()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), largest:
        loss = model.head(vectors, batch, compute_loss=True).loss
    loss.backward()
    return sum(saved.values()), largest.largest


def memory_slopes(model, lengths=(128, 256, 512)):
    """log-log slopes of (saved bytes, largest tensor) against document length in words."""
    measures = np.array([head_memory(model, length) for length in lengths], dtype=float)
    return [np.polyfit(np.log(lengths), np.log(measures[:, column]), 1)[0] for column in range(2)]


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_memory_grows_linearly_with_document_length(model_class):
    # the span head's end attention reaches 64 words here, so these documents outgrow it
    options = {"span_end_window": 64} if model_class == "bert2span" else {}
    model = tiny_model(model_class, seed=0, layers=1, head_options=options).train()
    saved, largest = memory_slopes(model, lengths=(512, 1024, 2048))
    assert saved < 1.3 and largest < 1.3, (saved, largest)


def test_memory_probe_sees_quadratic_growth():
    """Control: an end attention that reaches over the whole document (the original span
    head's) saves a (W, W) matrix for backward, and the probe shows it."""
    model = tiny_model("bert2span", seed=0, layers=1, head_options={"span_end_window": 4096}).train()
    saved, _ = memory_slopes(model, lengths=(512, 1024, 2048))
    assert saved > 1.7, saved


# --------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_save_and_load_round_trip(model_class, tmp_path):
    documents = random_documents(seed=5, sizes=(14, 6))
    batch = batch_of(documents)
    model = tiny_model(model_class, seed=4, max_phrase_words=N).eval()
    tokenizer = default_tokenizer()
    model.save_pretrained(tmp_path, tokenizer=tokenizer, extra={"dataset_class": "kp20k"})
    names = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "kpe_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= names
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and not loaded.training and loaded.max_phrase_words == N
    with torch.no_grad():
        assert torch.equal(model(batch).mention_scores, loaded(batch).mention_scores)
    from bertkpe.data.tokenizers import load_tokenizer
    assert load_tokenizer(str(tmp_path))(["graph"], is_split_into_words=True)["input_ids"] == \
        tokenizer(["graph"], is_split_into_words=True)["input_ids"]
    bare = tmp_path / "bare"
    model.save_pretrained(bare)
    assert {path.name for path in bare.iterdir()} == {"config.json", "model.safetensors", "kpe_config.json"}


# --------------------------------------------------------------------------- rank loss edge cases

def rank_loss_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Phrase scores, labels and mask of four documents that cover the loss's cases."""
    scores = torch.tensor([[2.0, 0.5, 1.8, 5.0],  # one positive, slot 3 masked out
                           [1.0, 0.0, 0.5, 0.0],  # two positives
                           [3.0, 1.0, 0.0, 0.0],  # all positive: excluded
                           [0.0, 1.0, 2.0, 0.0]], requires_grad=True)  # no positive: excluded
    labels = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return scores, labels, mask


def test_margin_rank_loss_by_hand():
    scores, labels, mask = rank_loss_case()
    # doc 0: (0 + 0.8) / 2 = 0.4; doc 1: (0.5 + 1.5) / 2 = 1.0; summed over the two documents
    loss = margin_rank_loss(scores, labels, mask, max_positives=2)
    assert loss.item() == pytest.approx(1.4)
    loss.backward()
    assert scores.grad[2:].abs().sum() == 0 and scores.grad[0, 3] == 0
    assert scores.grad[0].tolist() == pytest.approx([-0.5, 0.0, 0.5, 0.0])


def test_softmax_rank_loss_by_hand():
    scores, labels, mask = rank_loss_case()

    def softplus(x):
        return math.log1p(math.exp(x))

    negatives_0 = math.log(math.exp(0.5) + math.exp(1.8))
    document_0 = softplus(negatives_0 - 2.0)
    document_1 = (softplus(0.5 - 1.0) + softplus(0.5 - 0.0)) / 2
    loss = softmax_rank_loss(scores, labels, mask, max_positives=2)
    assert loss.item() == pytest.approx(document_0 + document_1, rel=1e-6)
    loss.backward()
    assert scores.grad[2:].abs().sum() == 0 and scores.grad[0, 3] == 0
    # every negative is pushed down in proportion to e^score: the one closest to the positive most
    assert scores.grad[0, 2].item() / scores.grad[0, 1].item() == pytest.approx(math.exp(1.8 - 0.5), rel=1e-5)
    assert scores.grad[0, 0].item() == pytest.approx(-(scores.grad[0, 1] + scores.grad[0, 2]).item(), rel=1e-5)


@pytest.mark.parametrize("rank_loss", sorted(RANK_LOSSES))
def test_rank_loss_with_no_pairs_is_zero_with_gradient(rank_loss):
    loss_of = RANK_LOSSES[rank_loss]
    no_pad = torch.ones(2, 3, dtype=torch.bool)
    for labels, mask in [(torch.zeros(2, 3), no_pad), (torch.ones(2, 3), no_pad),
                         (torch.ones(2, 3), torch.zeros(2, 3)), (torch.tensor([[1, 0, 0], [1, 1, 1]]),
                                                                 torch.tensor([[1, 0, 0], [1, 1, 1]]))]:
        # padded slots hold -inf, as pool_phrases leaves them
        scores = torch.tensor([[0.5, 1.0, 2.0], [2.0, 0.0, -1.0]]).masked_fill(~mask.bool(), -math.inf)
        scores.requires_grad_(True)
        loss = loss_of(scores, labels.bool(), mask.bool(), int((labels.bool() & mask.bool()).sum(1).max()))
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.equal(scores.grad, torch.zeros_like(scores))
    empty = torch.zeros(0, 0, requires_grad=True)
    loss = loss_of(empty, torch.zeros(0, 0, dtype=torch.bool), torch.zeros(0, 0, dtype=torch.bool), 0)
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("rank_loss", sorted(RANK_LOSSES))
def test_rank_loss_ignores_padded_minus_infinity(rank_loss):
    scores = torch.tensor([[1.0, 0.0, -math.inf], [2.0, -math.inf, -math.inf]], requires_grad=True)
    labels = torch.tensor([[True, False, False], [True, False, False]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss = RANK_LOSSES[rank_loss](scores, labels, mask, 1)
    expected = {"margin": 0.0, "softmax": math.log1p(math.exp(-1.0))}[rank_loss]
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(scores.grad).all()


def test_rank_loss_is_a_head_option_saved_with_the_checkpoint(tmp_path):
    from bertkpe.options import RANK_LOSS_NAMES
    from bertkpe.models import build_model

    assert sorted(RANK_LOSS_NAMES) == sorted(RANK_LOSSES)
    for model_class in ("bert2rank", "bert2joint"):
        model = build_model(model_class, tiny_config("bert"), rank_loss="softmax")
        model.save_pretrained(tmp_path / model_class)
        assert load_model(tmp_path / model_class).rank_loss == "softmax"
        assert build_model(model_class, tiny_config("bert")).rank_loss == "margin"
    with pytest.raises(ValueError, match="rank_loss is one of"):
        build_model("bert2joint", tiny_config("bert"), rank_loss="hinge")


def test_joint_chunk_loss_weight_scales_the_chunk_term_and_is_saved_with_the_checkpoint(tmp_path):
    from bertkpe.models import build_model

    batch = batch_of(random_documents(seed=4))
    model = tiny_model("bert2joint", seed=1).eval()
    losses = {}
    with torch.no_grad():
        words = model.word_vectors(batch)
        for weight in (0.0, 1.0, 0.3):
            model.chunk_loss_weight = weight
            losses[weight] = float(model.head(words, batch, compute_loss=True).loss)
    rank_only, chunk = losses[0.0], losses[1.0] - losses[0.0]
    assert chunk > 0 and rank_only > 0
    assert losses[0.3] == pytest.approx(rank_only + 0.3 * chunk, rel=1e-6)
    model = build_model("bert2joint", tiny_config("bert"), rank_loss="softmax", chunk_loss_weight=0.3)
    model.save_pretrained(tmp_path / "joint")
    loaded = load_model(tmp_path / "joint")
    assert (loaded.chunk_loss_weight, loaded.rank_loss) == (0.3, "softmax")
    assert build_model("bert2joint", tiny_config("bert")).chunk_loss_weight == 1.0
    with pytest.raises(ValueError, match="chunk_loss_weight must be at least 0, got -1"):
        build_model("bert2joint", tiny_config("bert"), chunk_loss_weight=-1)


def test_pool_phrases_is_max_over_mentions():
    grid = torch.tensor([[[0, 1, 0, -1], [2, -1, -1, -1]]])
    scores = torch.tensor([[[0.1, 0.7, 0.4, 9.0], [0.2, 5.0, 5.0, 5.0]]])
    assert pool_phrases(scores, grid, 4).tolist() == [[pytest.approx(0.4), pytest.approx(0.7),
                                                       pytest.approx(0.2), -math.inf]]
