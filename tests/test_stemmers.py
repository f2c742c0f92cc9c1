"""Stemmer choice per language, and the names stored in records and checkpoints."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from nltk.stem.porter import PorterStemmer
from nltk.stem.snowball import SnowballStemmer

from bertkpe.data.matching import (NO_STEMMER, PYSTEMMER_BY_ISO, SNOWBALL_BY_ISO, get_normalizer,
                                   locate_keyphrases, stemmer_for_language)
from bertkpe.data.sources import LiaadCorpus

# Every name that preprocessed data and checkpoints written before PyStemmer may hold.
EXISTING_NAMES_BY_LANGUAGE = {
    None: "none", "": "none", "en": "porter", "en-US": "porter", "ar": "arabic", "da": "danish",
    "nl": "dutch", "fi": "finnish", "fr": "french", "de": "german", "hu": "hungarian", "it": "italian",
    "no": "norwegian", "nb": "norwegian", "pt": "portuguese", "pt-PT": "portuguese", "pt_BR": "portuguese",
    "ro": "romanian", "ru": "russian", "es": "spanish", "sv": "swedish",
}


@pytest.fixture(autouse=True)
def fresh_language_cache():
    """`stemmer_for_language` warns once per language; each test sees its own first call."""
    stemmer_for_language.cache_clear()
    yield
    stemmer_for_language.cache_clear()


@pytest.mark.parametrize("language", ["pl", "pl-PL", "PL"])
def test_polish_gets_the_snowball_polish_stemmer(language):
    assert stemmer_for_language(language) == "polish"


@pytest.mark.parametrize("text, keyphrase, span", [
    # pak2018-style abstracts: the gold phrase is in the nominative, the text inflects it.
    ("Opisano sterowaniu predykcyjnym układu .", "sterowanie predykcyjne", (1, 2)),
    ("Metoda redukcji drgań zawieszenia siedziska kierowcy .", "zawieszenie siedziska", (3, 4)),
    ("Metoda redukcji drgań zawieszenia siedziska kierowcy .", "drgania", (2, 2)),
    ("Zastosowanie sztucznej inteligencji w diagnostyce .", "sztuczna inteligencja", (1, 2)),
    ("Strojenie Regulatora PID .", "regulator PID", (1, 2)),
    ("Wyniki analizę dyskryminacyjną potwierdzają .", "analiza dyskryminacyjna", (1, 2)),
])
def test_polish_inflected_forms_match_their_gold_phrase(text, keyphrase, span):
    words, phrase = text.split(), keyphrase.split()
    assert locate_keyphrases(words, [phrase], stemmer_for_language("pl")) == [[span]]
    assert locate_keyphrases(words, [phrase], NO_STEMMER) == [[]]


def test_polish_stemmer_keeps_different_words_apart():
    polish = get_normalizer("polish")
    assert polish("kontrola") != polish("kontroler")
    assert locate_keyphrases("Sieci neuronowych użyto .".split(), [["sieć", "bayesowska"]], "polish") == [[]]


def test_polish_stems_agree_across_threads():
    stem_uncached = get_normalizer("polish").__wrapped__
    words = "Sterowaniu predykcyjnym zawieszenia siedziska sztucznej inteligencji drgań".split() * 200
    expected = [stem_uncached(word) for word in words]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(stem_uncached, words, chunksize=7)) == expected


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Warnings reach caplog however earlier tests set up the bertkpe logger, and each
    language warns anew (`stemmer_for_language` remembers the languages it has seen)."""
    monkeypatch.setattr(logging.getLogger("bertkpe"), "propagate", True)
    stemmer_for_language.cache_clear()
    yield
    stemmer_for_language.cache_clear()


def test_language_without_stemmer_falls_back_to_lower_case_with_a_warning(caplog, fresh_warnings):
    with caplog.at_level(logging.WARNING, logger="bertkpe"):
        assert stemmer_for_language("sk-SK") == NO_STEMMER
        assert stemmer_for_language("sk-SK") == NO_STEMMER
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'sk-SK'" in warnings[0]
    words = "Strojové Učenie v praxi".split()
    assert locate_keyphrases(words, [["strojové", "učenie"]], NO_STEMMER) == [[(0, 1)]]
    assert locate_keyphrases(words, [["strojového", "učenia"]], NO_STEMMER) == [[]]


def test_languages_with_a_stemmer_do_not_warn(caplog, fresh_warnings):
    with caplog.at_level(logging.WARNING, logger="bertkpe"):
        for language in ["pl", "fr", "en-US", "cs", None]:
            stemmer_for_language(language)
    assert not caplog.records


@pytest.mark.parametrize("language, name", sorted(EXISTING_NAMES_BY_LANGUAGE.items(), key=str))
def test_existing_languages_keep_their_stemmer_name(language, name):
    assert stemmer_for_language(language) == name


@pytest.mark.parametrize("name", sorted(set(SNOWBALL_BY_ISO.values()) - {"english"}))
def test_existing_snowball_names_still_mean_nltk_snowball(name):
    stem = SnowballStemmer(name).stem
    words = ["Nations", "übernommen", "transformações", "gouvernement", "Analysen", "развития"]
    assert [get_normalizer(name)(word) for word in words] == [stem(word.lower()) for word in words]


def test_existing_porter_and_none_are_unchanged():
    words = ["Generating", "Keyphrases", "ÉTÉ"]
    assert [get_normalizer("porter")(w) for w in words] == [PorterStemmer().stem(w.lower()) for w in words]
    assert get_normalizer(NO_STEMMER) is str.lower


def test_new_names_do_not_reuse_existing_ones():
    assert not set(PYSTEMMER_BY_ISO.values()) & (set(SnowballStemmer.languages) | {NO_STEMMER})
    assert not set(PYSTEMMER_BY_ISO) & set(SNOWBALL_BY_ISO)


@pytest.mark.parametrize("code", sorted(set(SNOWBALL_BY_ISO) | set(PYSTEMMER_BY_ISO)))
def test_every_chosen_name_round_trips_through_get_normalizer(code):
    name = stemmer_for_language(code)
    normalize = get_normalizer(name)
    assert normalize is get_normalizer(name)  # cached: one normaliser per name
    assert isinstance(normalize("Word"), str)


def test_unknown_stemmer_name_is_an_error():
    with pytest.raises(ValueError, match="unknown stemmer 'klingon'.*polish"):
        get_normalizer("klingon")


def test_pak2018_documents_with_a_located_keyphrase(datasets):
    # Lower-casing alone located a keyphrase in 20 of the 50 documents.
    with LiaadCorpus(datasets / "liaad" / "pak2018.zip") as corpus:
        documents = list(corpus.documents())
    assert {doc.stemmer for doc in documents} == {"polish"}
    located = sum(any(locate_keyphrases(doc.words, doc.keyphrases, doc.stemmer)) for doc in documents)
    assert located >= 40
