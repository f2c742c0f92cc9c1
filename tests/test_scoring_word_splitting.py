"""Both sides of kp20k scoring go through the dataset class's word splitter: gold keyphrases
as published and predictions as written in the text score as their preprocessed words do."""
from __future__ import annotations

import json
from fractions import Fraction as F
from pathlib import Path

import pytest

from bertkpe import metrics
from bertkpe.cli import main, run_command
from bertkpe.data.sources import clean_kp20k_keyphrase, kp20k_tokenize_spans
from bertkpe.dataset_classes import WORD_SPLITTERS, dataset_class
from bertkpe.metrics import ScoringConfig


def approx(expected: dict) -> dict:
    return {key: pytest.approx(float(value)) for key, value in expected.items()}


def table(ks: tuple, rows: list[tuple]) -> dict:
    """{"F1@k", "P@k", "R@k"} from one (F1, P, R) row per k."""
    return {f"{name}@{k}": value for k, row in zip(ks, rows) for name, value in zip(("F1", "P", "R"), row)}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_hyphenated_gold_phrase_matches_its_words():
    # The example: the KP20K tokenizer reads "Web-Based" as "Web Based", as preprocessing did.
    scores = metrics.document_scores_kp20k(["Web Based Project Management System"],
                                           ["Web-Based Project Management System"], ks=(1,))
    assert scores == approx(table((1,), [(1, 1, 1)]))


def test_both_sides_raw_however_punctuation_is_written():
    # Matches: "web based ..." = "Web-Based ..." (hit), "E-Learning" = "e learning" (hit), "construction" (miss),
    # "client/server" = "client-server" (hit); 3 references.
    predictions = ["web based project management system", "E-Learning", "construction", "client/server"]
    references = ["Web-Based Project Management System", "e learning", "client-server"]
    expected = table((1, 3, 5), [
        (F(1, 2), 1, F(1, 3)),  # 1/1, 1/3
        (F(2, 3), F(2, 3), F(2, 3)),  # 2/3, 2/3
        (F(3, 4), F(3, 5), 1),  # 3/5, 3/3: F1 2(3/5)/(8/5)
    ])
    assert metrics.document_scores_kp20k(predictions, references, ks=(1, 3, 5)) == approx(expected)
    # Word lists of the words as written ("Web-Based" one word) are re-split alike.
    as_words = [phrase.split() for phrase in predictions]
    assert metrics.document_scores_kp20k(as_words, references, ks=(1, 3, 5)) == approx(expected)


TRICKY = ["U.S. patents, e.g. C++ at 3.5% (Young's 'model')", "client/server: TCP/IP", "Timor-Leste, l’ISS",
          "naïve cafe\u0301 pre\u00admier", "  web-based\tsystems -- a - b  "]


@pytest.mark.parametrize("name", list(WORD_SPLITTERS))
def test_splitters_leave_their_own_words_unchanged(name):
    split = WORD_SPLITTERS[name]
    for text in TRICKY:
        words = split(text)
        assert split(" ".join(words)) == words, text


def test_already_split_phrases_score_as_without_splitting():
    # KP20K words, as preprocessing writes them: re-splitting them changes nothing ("whitespace" does not re-split).
    references = [["u.s.", "patents"], ["c++", "compiler"], ["young's", "modulus"], ["3.5", "ghz"], ["t", "test"]]
    predictions = [["U.S.", "patents"], ["svm"], ["C++", "compiler"], ["Young's", "modulus"], ["3.5", "GHz"]]
    expected = table((1, 5), [(F(1, 3), 1, F(1, 5)), (F(4, 5), F(4, 5), F(4, 5))])  # hits 1, then 4 of 5
    for name in ("kp20k", "whitespace"):
        scores = metrics.document_scores_kp20k(predictions, references, ks=(1, 5), word_splitter=name)
        assert scores == approx(expected), name


def test_the_splitter_decides_what_a_hyphen_is():
    # LIAAD keeps "Timor-Leste" one word, so its words "Timor Leste" do not match it; KP20K splits it.
    assert metrics.document_scores_kp20k(["Timor Leste"], ["Timor-Leste"], ks=(1,), word_splitter="liaad")["P@1"] == 0
    assert metrics.document_scores_kp20k([["Timor-Leste"]], ["Timor-Leste"], ks=(1,), word_splitter="liaad")["P@1"] == 1
    assert metrics.document_scores_kp20k(["Timor Leste"], ["Timor-Leste"], ks=(1,))["P@1"] == 1
    # The openkp protocol is the official script's exact match on whitespace words.
    assert metrics.document_scores_openkp(["web based"], ["Web-Based"], ks=(1,))["P@1"] == 0


def test_present_references_are_found_in_words_as_written():
    # The document's words are whitespace-split: "Web-Based" is found as "web based"; "e-learning" is absent.
    doc_words = "A Web-Based project management system for construction".split()
    scores = metrics.document_scores_kp20k(["Web-Based Project Management System"],
                                           ["web based project management system", "e-learning"],
                                           ks=(1,), doc_words=doc_words)
    assert scores == approx(table((1,), [(1, 1, 1)]))


def test_configuration_names_the_splitter():
    assert [dataset_class(name).scoring("porter").word_splitter for name in ("openkp", "kp20k", "multidata")] == \
        ["whitespace", "kp20k", "liaad"]
    assert ScoringConfig("kp20k").word_splitter == "kp20k" and ScoringConfig("openkp").word_splitter == "whitespace"
    # A configuration recorded before the field existed rebuilds with the protocol's splitter.
    recorded = {"protocol": "kp20k", "stemmer": "porter", "references": "all", "averaging": "macro",
                "ks": [5], "empty_documents": "drop"}
    assert ScoringConfig(**recorded) == ScoringConfig("kp20k", ks=[5], word_splitter="kp20k")
    with pytest.raises(ValueError, match="kp20k protocol only"):
        ScoringConfig("openkp", word_splitter="kp20k")
    with pytest.raises(ValueError, match="unknown word_splitter 'nltk'"):
        ScoringConfig("kp20k", word_splitter="nltk")


# --------------------------------------------------------------------------- bertkpe score

# a: references 3, predictions "web based ..."(hit) "construction" "e learning"(hit).
# b: references 2, predictions "tcp ip"(hit) "client server system"(stem hit).
RAW_REFERENCES = [{"url": "a", "KeyPhrases": ["Web-Based Project Management System", "construction industry",
                                              "e-learning"]},
                  {"url": "b", "KeyPhrases": ["client/server systems", "TCP/IP"]}]
PREPROCESSED_REFERENCES = [{"url": "a", "KeyPhrases": [["web", "based", "project", "management", "system"],
                                                       ["construction", "industry"], ["e", "learning"]]},
                           {"url": "b", "KeyPhrases": [["client", "server", "systems"], ["tcp", "ip"]]}]
WORD_PREDICTIONS = [{"url": "a", "KeyPhrases": [["Web", "Based", "Project", "Management", "System"],
                                                ["construction"], ["e", "learning"]]},
                    {"url": "b", "KeyPhrases": [["TCP", "IP"], ["client", "server", "system"]]}]
WRITTEN_PREDICTIONS = [{"url": "a", "KeyPhrases": ["Web-Based Project Management System", "construction",
                                                   "e-learning"]},
                       {"url": "b", "KeyPhrases": ["TCP/IP", "client-server system"]}]
# a @1 1/1, 1/3 -> F1 1/2; @3 2/3, 2/3 -> 2/3. b @1 1/1, 1/2 -> 2/3; @3 2/3, 2/2 -> 4/5. Macro means.
CLI_SCORES = table((1, 3), [((F(1, 2) + F(2, 3)) / 2, 1, (F(1, 3) + F(1, 2)) / 2),
                            ((F(2, 3) + F(4, 5)) / 2, F(2, 3), (F(2, 3) + 1) / 2)])


def score_files(tmp_path: Path, predictions: list, references: list, *switches: str) -> dict:
    pred = write_jsonl(tmp_path / "pred.jsonl", predictions)
    ref = write_jsonl(tmp_path / "ref.jsonl", references)
    out = tmp_path / "scores.json"
    assert main(["score", str(pred), str(ref), *switches, "--output", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("predictions", [WORD_PREDICTIONS, WRITTEN_PREDICTIONS])
@pytest.mark.parametrize("references", [PREPROCESSED_REFERENCES, RAW_REFERENCES])
@pytest.mark.parametrize("switches", [["--protocol", "kp20k"], ["--dataset_class", "kp20k"]])
def test_cli_scores_raw_and_preprocessed_sides_alike(tmp_path, predictions, references, switches):
    scores = score_files(tmp_path, predictions, references, *switches, "--ks", "1", "3")
    assert scores.pop("scoring")["word_splitter"] == "kp20k"
    assert scores == approx({**CLI_SCORES, "num_docs": 2, "num_docs_without_reference": 0})


def test_cli_word_splitter_switch(tmp_path, capsys):
    # LIAAD keeps "Web-Based" and "e-learning" whole and "/" a word: the word predictions miss both top phrases.
    scores = score_files(tmp_path, WORD_PREDICTIONS, RAW_REFERENCES, "--protocol", "kp20k", "--word_splitter", "liaad",
                         "--ks", "1")
    assert scores["F1@1"] == 0 and scores["scoring"]["word_splitter"] == "liaad"
    assert "word_splitter=liaad" in capsys.readouterr().out
    pred = write_jsonl(tmp_path / "pred.jsonl", WORD_PREDICTIONS)
    assert main(["score", str(pred), str(pred), "--protocol", "openkp", "--word_splitter", "kp20k"]) == 2
    assert "kp20k protocol only" in capsys.readouterr().err


def test_cli_published_gold_scores_as_preprocessed_references(tmp_path, fixtures):
    """The KP20K fixture's eval split, preprocessed: predictions as words against the references
    preprocessing wrote, and as written in the text against the gold keywords as published
    (less those cleaning drops), give the same scores."""
    assert run_command("preprocess", ["--dataset_class", "kp20k", "--source_dataset_dir", str(fixtures),
                                      "--output_path", str(tmp_path)]) == 0
    folder = tmp_path / "kp20k"
    sources = (fixtures / "kp20k" / "kp20k_testing.json").read_text(encoding="utf-8").splitlines()
    words, written, published = [], [], []
    for line in (folder / "kp20k.eval.json").read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        source = json.loads(sources[int(document["url"])])
        text = f"{source['title']} . {source['abstract']}"
        spans = kp20k_tokenize_spans(text)
        # Present keyphrases last first, then three spans of the title.
        picks = [positions[0] for positions in document["start_end_pos"]][::-1] + [[0, 0], [0, 1], [2, 3]]
        words.append({"url": document["url"], "KeyPhrases": [document["doc_words"][s:e + 1] for s, e in picks]})
        written.append({"url": document["url"], "KeyPhrases": [text[spans[s][1]:spans[e][2]] for s, e in picks]})
        kept = [keyword for keyword in source["keyword"].split(";")
                if clean_kp20k_keyphrase(keyword) and "(" not in keyword]
        published.append({"url": document["url"], "KeyPhrases": kept})
    assert any("-" in phrase for row in written for phrase in row["KeyPhrases"])
    assert any("-" in phrase for row in published for phrase in row["KeyPhrases"])
    candidates = [json.loads(line) for line in (folder / "kp20k.eval_candidate.json").read_text().splitlines()]
    preprocessed = score_files(tmp_path, words, candidates, "--protocol", "kp20k")
    assert score_files(tmp_path, written, published, "--protocol", "kp20k") == preprocessed
    # The run's own scoring (words on both sides) is what it was without re-splitting.
    unsplit = score_files(tmp_path, words, candidates, "--protocol", "kp20k", "--word_splitter", "whitespace")
    assert unsplit.pop("scoring") == {**preprocessed.pop("scoring"), "word_splitter": "whitespace"}
    assert unsplit == preprocessed
