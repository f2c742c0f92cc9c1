"""Hand-computed scores for both protocols, the file reader and `bertkpe score`."""
from __future__ import annotations

import json
from fractions import Fraction as F
from pathlib import Path

import pytest

from bertkpe import metrics
from bertkpe.cli import main
from bertkpe.metrics import ScoringConfig


def approx(expected: dict) -> dict:
    return {key: pytest.approx(float(value)) for key, value in expected.items()}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- openkp

# Dedup candidates: "nba 2k17"(hit) "key generator"(hit) "xbox" "pizza"; 3 distinct references.
NBA_CANDIDATES = [["NBA", "2K17"], ["Key", "Generator"], ["Xbox"], ["nba", "2k17"], [], ["Pizza"]]
NBA_REFERENCES = [["nba", "2k17"], ["Xbox", "One"], ["key", "generator"], ["Key", "Generator"], []]
# Candidates "54 pizza express"(hit) "pizza"; 2 references.
PIZZA_CANDIDATES = [["54", "Pizza", "Express"], ["Pizza"]]
PIZZA_REFERENCES = [["54", "pizza", "express"], ["Delivery"]]


def test_openkp_document_official_example():
    assert metrics.document_scores_openkp(NBA_CANDIDATES, NBA_REFERENCES) == approx({
        "F1@1": F(1, 2), "P@1": 1, "R@1": F(1, 3),
        "F1@3": F(2, 3), "P@3": F(2, 3), "R@3": F(2, 3),
        "F1@5": F(1, 2), "P@5": F(2, 5), "R@5": F(2, 3),
    })


def test_openkp_fewer_candidates_than_k_still_divide_by_k():
    assert metrics.document_scores_openkp(PIZZA_CANDIDATES, PIZZA_REFERENCES) == approx({
        "F1@1": F(2, 3), "P@1": 1, "R@1": F(1, 2),
        "F1@3": F(2, 5), "P@3": F(1, 3), "R@3": F(1, 2),
        "F1@5": F(2, 7), "P@5": F(1, 5), "R@5": F(1, 2),
    })


def test_openkp_empty_phrases_follow_the_official_script():
    # The official script drops a phrase whose first word is empty, and right-strips the joined text.
    scores = metrics.document_scores_openkp([["", "nba"], ["NBA", ""]], [["nba"]], ks=(1,))
    assert scores == approx({"F1@1": 1, "P@1": 1, "R@1": 1})


def test_openkp_has_no_unicode_normalisation():
    scores = metrics.document_scores_openkp([["cafe\u0301"]], [["caf\u00e9"]], ks=(1,))
    assert scores["P@1"] == 0


def test_openkp_all_empty_references_score_zero_and_count():
    scores = metrics.score_openkp(
        {"nba": NBA_CANDIDATES, "pizza": PIZZA_CANDIDATES, "empty": [["Xbox"]]},
        {"nba": NBA_REFERENCES, "pizza": PIZZA_REFERENCES, "empty": [[], [""]]},
    )
    assert scores == approx({
        "F1@1": (F(1, 2) + F(2, 3)) / 3, "P@1": F(2, 3), "R@1": (F(1, 3) + F(1, 2)) / 3,
        "F1@3": (F(2, 3) + F(2, 5)) / 3, "P@3": F(1, 3), "R@3": (F(2, 3) + F(1, 2)) / 3,
        "F1@5": (F(1, 2) + F(2, 7)) / 3, "P@5": F(1, 5), "R@5": (F(2, 3) + F(1, 2)) / 3,
        "num_docs": 3, "num_docs_without_reference": 1,
    })


def test_url_sets_must_match():
    with pytest.raises(ValueError, match="lack reference url.*pizza"):
        metrics.score_openkp({"nba": []}, {"nba": [], "pizza": []})
    with pytest.raises(ValueError, match="absent from references.*extra"):
        metrics.score_kp20k({"nba": [], "extra": []}, {"nba": []})


# --------------------------------------------------------------------------- kp20k

KP20K_REFERENCES = [["neural", "network"], ["t-test"], ["caf\u00e9"], ["Neural", "Networks"], "deep learning"]
# After stem dedup: 4 references. Predictions after dropping the empty one and the stem duplicate:
# "neural networks"(stem hit) "t - test"(punctuation split hit) "café" decomposed (NFD hit) "svm".
KP20K_PREDICTIONS = [["neural", "networks"], ["Neural", "Network"], ["t", "-", "test"], [],
                     ["cafe\u0301"], ["svm"]]
KP20K_DOC1 = {
    "F1@1": F(2, 5), "P@1": 1, "R@1": F(1, 4),
    "F1@3": F(6, 7), "P@3": 1, "R@3": F(3, 4),
    "F1@5": F(2, 3), "P@5": F(3, 5), "R@5": F(3, 4),
    "F1@10": F(3, 7), "P@10": F(3, 10), "R@10": F(3, 4),
}


def test_kp20k_document_stem_nfd_and_punctuation_matches():
    assert metrics.document_scores_kp20k(KP20K_PREDICTIONS, KP20K_REFERENCES) == approx(KP20K_DOC1)


def test_kp20k_document_without_reference_is_not_scored():
    assert metrics.document_scores_kp20k([["svm"]], [[], ["  "], ""]) is None


def test_kp20k_macro_average_skips_documents_without_reference():
    scores = metrics.score_kp20k(
        {"a": KP20K_PREDICTIONS, "none": [["svm"]], "miss": []},
        {"a": KP20K_REFERENCES, "none": [[]], "miss": ["support vector machine"]},
    )
    assert scores == approx({**{key: value / 2 for key, value in KP20K_DOC1.items()},
                             "num_docs": 3, "num_docs_without_reference": 1})


DOC_WORDS = "We train Neural Networks , with a t-test on the network".split()
PRESENT_REFERENCES = [["neural", "network"], ["t-test"], ["deep", "learning"], ["work"], ["train", "network"]]
PRESENT_PREDICTIONS = [["deep", "learning"], ["neural", "nets"], ["t-test"]]


def test_kp20k_present_only_keeps_contiguous_stemmed_references():
    # Present: "neural network", "t - test"; not "deep learning", nor "work" (inside "network"),
    # nor "train network" (not contiguous).
    scores = metrics.document_scores_kp20k(PRESENT_PREDICTIONS, PRESENT_REFERENCES, doc_words=DOC_WORDS)
    assert scores == approx({
        "F1@1": 0, "P@1": 0, "R@1": 0,
        "F1@3": F(2, 5), "P@3": F(1, 3), "R@3": F(1, 2),
        "F1@5": F(2, 7), "P@5": F(1, 5), "R@5": F(1, 2),
        "F1@10": F(1, 6), "P@10": F(1, 10), "R@10": F(1, 2),
    })
    all_gold = metrics.document_scores_kp20k(PRESENT_PREDICTIONS, PRESENT_REFERENCES)
    assert all_gold["P@3"] == pytest.approx(2 / 3) and all_gold["R@3"] == pytest.approx(2 / 5)
    assert metrics.document_scores_kp20k(PRESENT_PREDICTIONS, [["deep", "learning"]], doc_words=DOC_WORDS) is None


def test_score_dispatch():
    predictions, references = {"a": PIZZA_CANDIDATES}, {"a": PIZZA_REFERENCES}
    assert metrics.score(predictions, references, "openkp") == metrics.score_openkp(predictions, references)
    assert metrics.score(predictions, references, "kp20k") == metrics.score_kp20k(predictions, references)
    with pytest.raises(ValueError, match="kp20k protocol only"):
        metrics.score(predictions, references, "openkp", doc_words={"a": []})
    with pytest.raises(ValueError, match="unknown protocol"):
        metrics.score(predictions, references, "semeval")


# --------------------------------------------------------------------------- files and command line

def test_read_keyphrase_file(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text('{"url": 7, "KeyPhrases": [["NBA", "2K17"], "key  generator", []], "Scores": [1, 0.5, 0]}\n'
                    "\n" '{"url": "b", "KeyPhrases": []}\n', encoding="utf-8")
    assert metrics.read_keyphrase_file(path) == {"7": [["NBA", "2K17"], ["key", "generator"], []], "b": []}


@pytest.mark.parametrize("lines, reason", [
    (['{"url": "a", "KeyPhrases": []}', '{"url": "b", '], "2: not valid JSON"),
    (['{"url": "a"}'], "1: missing field 'KeyPhrases'"),
    (['{"url": "a", "KeyPhrases": [[1]]}'], "1: KeyPhrases must be"),
    (['{"url": "a", "KeyPhrases": []}', '{"url": "a", "KeyPhrases": []}'], "2: duplicate url 'a'"),
])
def test_read_keyphrase_file_errors_name_file_and_line(tmp_path, lines, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        metrics.read_keyphrase_file(path)
    assert str(error.value).startswith(f"{path}:{reason}")


def test_cli_round_trip_openkp(tmp_path, capsys, fixtures):
    readme = fixtures / "openkp" / "OpenKP_readme_example.jsonl"
    gold = [{"url": json.loads(line)["url"], "KeyPhrases": json.loads(line)["KeyPhrases"]}
            for line in readme.read_text(encoding="utf-8").splitlines()]
    pred = write_jsonl(tmp_path / "pred.jsonl", gold)
    out = tmp_path / "scores.json"
    assert main(["score", str(pred), str(readme), "--protocol", "openkp", "--output", str(out)]) == 0
    # Gold [["Doctor","Appointment"],["Web","Application"],[]] scored against itself.
    written = json.loads(out.read_text())
    assert written.pop("scoring") == ScoringConfig("openkp").to_dict()
    assert written == approx({
        "F1@1": F(2, 3), "P@1": 1, "R@1": F(1, 2),
        "F1@3": F(4, 5), "P@3": F(2, 3), "R@3": 1,
        "F1@5": F(4, 7), "P@5": F(2, 5), "R@5": 1,
        "num_docs": 1, "num_docs_without_reference": 0,
    })
    printed = capsys.readouterr().out
    assert "F1" in printed and "@3  0.8000  0.6667  1.0000" in printed


def test_cli_kp20k_present_only(tmp_path):
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"url": 1, "KeyPhrases": PRESENT_PREDICTIONS}])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"url": "1", "KeyPhrases": PRESENT_REFERENCES,
                                                "doc_words": DOC_WORDS}])
    out = tmp_path / "scores.json"
    assert main(["score", str(pred), str(ref), "--protocol", "kp20k", "--present_only_source", str(ref),
                 "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["F1@3"] == pytest.approx(2 / 5) and scores["num_docs"] == 1


@pytest.mark.parametrize("pred_urls, ref_urls, named", [(["a"], ["a", "lost"], "lost"),
                                                         (["a", "stray"], ["a"], "stray")])
def test_cli_missing_url_is_a_clear_error(tmp_path, capsys, pred_urls, ref_urls, named):
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"url": url, "KeyPhrases": [["x"]]} for url in pred_urls])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"url": url, "KeyPhrases": [["x"]]} for url in ref_urls])
    assert main(["score", str(pred), str(ref), "--protocol", "kp20k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and "Traceback" not in err
