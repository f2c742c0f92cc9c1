"""Character offsets: word spans of the three splitters and `extract(..., offsets=True)`.

Offsets must slice the text as the user gave it, whatever cleaning the splitter did
(NFD accents, invisible characters, tabs, repeated spaces, punctuation inside words).
"""
from __future__ import annotations

import random
import sys
import unicodedata

import pytest

from helpers import default_tokenizer, featurize, find_spans, make_record, normalize, tiny_model

from bertkpe import KeyphraseExtractor
from bertkpe.data.sources import _clean_text, _clean_text_positions
from bertkpe.dataset_classes import get_span_splitter, get_word_splitter, locate_words, whitespace_split_spans
from bertkpe.extractor import occurrence_offsets

SPLITTERS = ("whitespace", "kp20k", "liaad")
STEMMER = {"whitespace": "none", "kp20k": "porter", "liaad": "porter"}

# Accents in NFD, a tab, runs of spaces, a soft hyphen and a zero-width space inside words,
# punctuation inside words ("C++", "U.S.", "3.5", "Young's", "Timor-Leste").
MESSY = (unicodedata.normalize("NFD", "Réseaux neuronaux\tprofonds:  les réseaux neuronaux, ") +
         "pré\u00admier  C++ code   in the U.S.\u200b, Young's 3.5% Timor-Leste data.\n"
         + unicodedata.normalize("NFD", "Les Réseaux   Neuronaux\t\tprofonds et C++ code."))
# Characters NFC rewrites across several code points: Hangul jamo, a Tibetan vowel sign that
# decomposes into marks, marks out of canonical order, a mark with no precomposed form.
EXOTIC = "\u1100\u1161\u11a8 \u0f40\u0f73x e\u0327\u0301 a\u0301\u0323b \u0065\u0301\u0327 ﬁ Å"


def test_whitespace_spans_split_where_str_split_does():
    every_character = "".join(chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code < 0xE000)
    assert [word for word, _, _ in whitespace_split_spans(every_character)] == every_character.split()


@pytest.mark.parametrize("name", SPLITTERS)
@pytest.mark.parametrize("text", [MESSY, EXOTIC, "", "   \t\n", "\u00ad\u200b"])
def test_span_words_are_the_splitter_words(name, text):
    spans = get_span_splitter(name)(text)
    assert [word for word, _, _ in spans] == get_word_splitter(name)(text)
    assert all(0 <= start < end <= len(text) for _, start, end in spans)
    assert [start for _, start, _ in spans] == sorted(start for _, start, _ in spans)


@pytest.mark.parametrize("name", SPLITTERS)
def test_spans_slice_the_original_text(name):
    for word, start, end in get_span_splitter(name)(MESSY):
        written = MESSY[start:end]
        assert written == written.strip() and written[0] not in "\u00ad\u200b"
        assert (written if name == "whitespace" else _clean_text(written)) == word


def test_cleaned_characters_map_to_what_was_written():
    written = "pre\u00admier " + unicodedata.normalize("NFD", "été") + "\u200b!"
    cleaned, starts, ends = _clean_text_positions(written)
    assert cleaned == _clean_text(written) == "premier été!"
    assert [written[start:end] for start, end in zip(starts, ends)] == \
        list("premier ") + ["e\u0301", "t", "e\u0301", "!"]


def test_random_text_spans():
    alphabet = list("ab Z9.,'-+()%\t\n") + ["\u0301", "\u0327", "\u00ad", "\u200b", "\u1100", "\u1161", "\u11a8",
                                            "\u0f73", "é", "\u00a0", "ß", "ﬁ", "\u2028", "\ufeff"]
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert _clean_text_positions(text)[0] == _clean_text(text)
        for name in SPLITTERS:
            spans = get_span_splitter(name)(text)
            assert [word for word, _, _ in spans] == get_word_splitter(name)(text), (name, text)
            for word, start, end in spans:
                assert word in (text[start:end] if name == "whitespace" else _clean_text(text[start:end]))


def test_custom_splitter_words_are_located_in_order():
    text = "new york|is|big|new york"
    spans = get_span_splitter(lambda value: value.split("|"))(text)
    assert [(start, end) for _, start, end in spans] == [(0, 8), (9, 11), (12, 15), (16, 24)]
    with pytest.raises(ValueError, match=r"word 0 \('NEW'\) of the custom word splitter"):
        locate_words(["NEW"], text)


# ----------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def model(one_thread):
    return tiny_model("bert2joint", hidden=32, layers=1, heads=2)


def extractor(model, name: str, **options) -> KeyphraseExtractor:
    return KeyphraseExtractor(model, default_tokenizer(), word_splitter=name, stemmer=STEMMER[name],
                              device="cpu", **options)


def expected_offsets(name: str, text: str, phrase: str) -> list[list[int]]:
    """Every run of the document's words equal to the phrase's (normalised), found independently."""
    spans = get_span_splitter(name)(text)
    words = [word for word, _, _ in spans]
    return [[spans[first][1], spans[last][2]] for first, last in find_spans(words, phrase.split(" "), STEMMER[name])]


@pytest.mark.parametrize("name", SPLITTERS)
def test_offsets_list_and_slice_every_occurrence(model, name):
    kx = extractor(model, name)
    plain = kx.extract(MESSY, top_k=10_000)
    located = kx.extract(MESSY, top_k=10_000, offsets=True)
    assert [(phrase, score) for phrase, score, _ in located] == plain and all(len(entry) == 2 for entry in plain)
    as_split = kx.extract(MESSY, top_k=10_000, offsets=True, as_written=False)
    assert [(score, offsets) for _, score, offsets in as_split] == [(score, offsets) for _, score, offsets in located]
    split = get_word_splitter(name)
    repeated = 0
    for (written, _, offsets), (phrase, _, _) in zip(located, as_split):
        assert offsets == expected_offsets(name, MESSY, phrase), phrase
        for start, end in offsets:
            assert normalize(split(MESSY[start:end]), STEMMER[name]) == normalize(phrase.split(" "), STEMMER[name])
        first_start, first_end = offsets[0]
        assert " ".join(split(MESSY[first_start:first_end])) == phrase
        occurrences = [MESSY[start:end] for start, end in offsets]
        clean = [text for text in occurrences if " ".join(text.split()) == text]
        assert written == (clean or occurrences)[0]  # as written: single-spaced where it can be
        repeated += len(offsets) > 1
    assert repeated >= 3


def test_accented_phrase_offsets_in_nfd_text(model):
    kx = extractor(model, "liaad")
    located = {phrase: offsets for phrase, _, offsets in kx.extract(MESSY, top_k=10_000, offsets=True,
                                                                     as_written=False)}
    nfd = [unicodedata.normalize("NFD", written)
           for written in ("Réseaux neuronaux", "réseaux neuronaux", "Réseaux   Neuronaux")]
    assert [MESSY[start:end] for start, end in located["Réseaux neuronaux"]] == nfd  # the words are NFC
    assert [MESSY[start:end] for start, end in located["prémier"]] == ["pré\u00admier"]
    assert [MESSY[start:end] for start, end in located["Réseaux neuronaux profonds"]] == [
        unicodedata.normalize("NFD", "Réseaux neuronaux\tprofonds"),
        unicodedata.normalize("NFD", "Réseaux   Neuronaux\t\tprofonds")]
    written = [phrase for phrase, _ in kx.extract(MESSY, top_k=10_000)]
    assert nfd[0] in written and "pré\u00admier" in written and "prémier" not in written  # as the text has them
    # its occurrences are apart by a tab each time: the first is given as it stands
    assert unicodedata.normalize("NFD", "Réseaux neuronaux\tprofonds") in written


@pytest.mark.parametrize("name", SPLITTERS)
def test_every_phrase_is_written_so_in_its_text(model, name):
    """KP20K abstracts as users paste them (hyphens, line breaks, double spaces): each phrase
    returned is a piece of its text, and is split into the words the model matched."""
    import json

    from helpers import FIXTURES

    rows = [json.loads(line) for line in (FIXTURES / "kp20k" / "kp20k_testing.json").read_text().splitlines()]
    texts = [f"{row['title']}.\n{row['abstract']}".replace(". ", ".  ", 3) for row in rows]
    kx = extractor(model, name)
    split = get_word_splitter(name)
    for text, written, words in zip(texts, kx.extract(texts, top_k=20), kx.extract(texts, top_k=20, as_written=False)):
        assert [score for _, score in written] == [score for _, score in words]
        for (phrase, _), (joined, _) in zip(written, words):
            assert phrase in text and " ".join(split(phrase)) == joined
    assert any("-" in phrase for found in kx.extract(texts, top_k=50) for phrase, _ in found) or name == "whitespace"


def test_stemmed_variants_are_occurrences_of_one_phrase(model):
    text = "Neural networks learn.\tA neural  network generalises; NEURAL NETWORKS converge."
    located = {phrase: offsets for phrase, _, offsets in extractor(model, "kp20k").extract(
        text, top_k=10_000, offsets=True)}
    assert [text[start:end] for start, end in located["Neural networks"]] == [
        "Neural networks", "neural  network", "NEURAL NETWORKS"]
    assert "neural network" not in located


def test_punctuation_inside_phrases(model):
    text = "C++ code for the U.S. army; C++  code again, and Timor-Leste or timor-leste."
    kp20k = {phrase: offsets for phrase, _, offsets in extractor(model, "kp20k").extract(
        text, top_k=10_000, offsets=True)}
    assert [text[start:end] for start, end in kp20k["C++ code"]] == ["C++ code", "C++  code"]
    assert [text[start:end] for start, end in kp20k["U.S. army"]] == ["U.S. army"]
    liaad = {phrase: offsets for phrase, _, offsets in extractor(model, "liaad").extract(
        text, top_k=10_000, offsets=True)}
    assert [text[start:end] for start, end in liaad["Timor-Leste"]] == ["Timor-Leste", "timor-leste"]


def test_offsets_only_for_the_words_the_model_saw():
    text = "alpha beta gamma delta epsilon zeta alpha beta"
    spans = whitespace_split_spans(text)
    (document,) = featurize([make_record([word for word, _, _ in spans])], max_token=4)
    assert document.num_words == 4  # cut at 4 sub-tokens: the second "alpha beta" is unseen
    phrase_ids = list(range(document.num_phrases))
    found = occurrence_offsets(document, phrase_ids, [(start, end) for _, start, end in spans])
    by_phrase = {" ".join(document.phrase_words(phrase_id)): offsets for phrase_id, offsets in zip(phrase_ids, found)}
    assert by_phrase["alpha beta"] == [[0, 10]] and by_phrase["gamma delta"] == [[11, 22]]
    assert all(end <= len("alpha beta gamma delta") for offsets in found for _, end in offsets)


def test_offsets_for_batches_custom_splitters_and_pre_split_words(model):
    kx = extractor(model, "liaad")
    documents = [MESSY, "", "... !!!", "one word", MESSY[::-1]]
    batched = kx.extract(documents, top_k=7, batch_size=2, offsets=True)
    for found, document in zip(batched, documents):
        alone = kx.extract(document, top_k=7, offsets=True)
        assert [(phrase, offsets) for phrase, _, offsets in found] == [(phrase, offsets) for phrase, _, offsets in alone]
        assert [score for _, score, _ in found] == pytest.approx([score for _, score, _ in alone], rel=1e-4, abs=1e-5)
    assert batched[1] == [] and batched[2] == []

    custom = KeyphraseExtractor(model, default_tokenizer(), word_splitter=lambda text: text.split("|"), device="cpu")
    text = "new york|is|big|new york"
    located = {phrase: offsets for phrase, _, offsets in custom.extract(text, top_k=100, offsets=True)}
    assert located["new york"] == [[0, 8], [16, 24]]
    upper = KeyphraseExtractor(model, default_tokenizer(), word_splitter=lambda text: text.upper().split(),
                               device="cpu")
    with pytest.raises(ValueError, match="custom word splitter"):
        upper.extract("some text", offsets=True)
    assert upper.extract("some text") != []

    words = ["graph", "models", "graph"]
    by_words = kx.extract_words([words], top_k=3, word_offsets=[[(0, 5), (6, 12), (20, 25)]])[0]
    assert dict((phrase, offsets) for phrase, _, offsets in by_words)["graph"] == [[0, 5], [20, 25]]
    with pytest.raises(ValueError, match="3 words but 2 word offsets"):
        kx.extract_words([words], word_offsets=[[(0, 5), (6, 12)]])
    assert kx.extract_words([words], top_k=3) == [[(phrase, score) for phrase, score, _ in by_words]]
