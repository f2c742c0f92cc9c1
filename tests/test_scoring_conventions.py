"""Hand-computed scores for each scoring convention switch, the recorded configuration and `bertkpe score`."""
from __future__ import annotations

import dataclasses
import json
from fractions import Fraction as F
from pathlib import Path

import pytest

from bertkpe import metrics
from bertkpe.cli import main
from bertkpe.metrics import PRESETS, ScoringConfig


def approx(expected: dict) -> dict:
    return {key: pytest.approx(float(value)) if isinstance(value, F) else value for key, value in expected.items()}


def table(ks: tuple, rows: list[tuple]) -> dict:
    """{"F1@k", "P@k", "R@k"} from one (F1, P, R) row per k."""
    return {f"{name}@{k}": value for k, row in zip(ks, rows) for name, value in zip(("F1", "P", "R"), row)}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# Three documents whose words no stemmer or lower-casing changes, so both protocols agree.
# d1: predictions alpha(hit) beta gamma(hit) delta; references alpha gamma omega -> 4 predictions, 3 references.
# d2: predictions sigma kappa(hit); reference kappa -> 2 predictions, 1 reference.
# empty: prediction alpha; no reference -> 1 prediction, 0 references.
PREDICTIONS = {"d1": ["alpha", "beta", "gamma", "delta"], "d2": ["sigma", "kappa"], "empty": ["alpha"]}
REFERENCES = {"d1": ["alpha", "gamma", "omega"], "d2": ["kappa"], "empty": []}
KS = (1, 3, "M", "O")

# Per document, hits/cut-off for P and hits/references for R:
#   d1 @1 1/1, 1/3 -> F1 1/2      @3 2/3, 2/3 -> F1 2/3
#      @M (k=4) 2/4, 2/3 -> F1 2(1/2)(2/3)/(1/2+2/3) = 4/7      @O (k=3) 2/3, 2/3 -> F1 2/3
#   d2 @1 0, 0 -> 0               @3 1/3, 1/1 -> F1 1/2
#      @M (k=2) 1/2, 1/1 -> F1 2/3                               @O (k=1) 0, 0 -> 0
#   empty: all 0; its cut-offs are @1 1, @3 3, @M 1, @O 0.
MACRO_DROP = table(KS, [  # mean over d1, d2
    (F(1, 4), F(1, 2), F(1, 6)),
    ((F(2, 3) + F(1, 2)) / 2, (F(2, 3) + F(1, 3)) / 2, (F(2, 3) + 1) / 2),  # 7/12, 1/2, 5/6
    ((F(4, 7) + F(2, 3)) / 2, F(1, 2), F(5, 6)),  # 13/21
    (F(1, 3), F(1, 3), F(1, 3)),
])
MACRO_COUNT = {key: value * 2 / 3 for key, value in MACRO_DROP.items()}  # same sums over three documents
# Micro: P = sum hits / sum cut-offs, R = sum hits / 4 references, F1 = 2PR / (P + R).
MICRO_DROP = table(KS, [
    (F(1, 3), F(1, 2), F(1, 4)),  # hits 1+0 over cut-offs 1+1
    (F(3, 5), F(1, 2), F(3, 4)),  # hits 2+1 over 3+3
    (F(3, 5), F(1, 2), F(3, 4)),  # hits 2+1 over 4+2
    (F(1, 2), F(1, 2), F(1, 2)),  # hits 2+0 over 3+1
])
MICRO_COUNT = table(KS, [  # the empty document adds its cut-offs to P's denominator, nothing else
    (F(2, 7), F(1, 3), F(1, 4)),  # 1 over 1+1+1: F1 = 2(1/12)/(7/12)
    (F(6, 13), F(1, 3), F(3, 4)),  # 3 over 3+3+3: F1 = 2(1/4)/(13/12)
    (F(6, 11), F(3, 7), F(3, 4)),  # 3 over 4+2+1: F1 = 2(9/28)/(33/28)
    (F(1, 2), F(1, 2), F(1, 2)),  # 2 over 3+1+0
])
COUNTS = {"num_docs": 3, "num_docs_without_reference": 1}


@pytest.mark.parametrize("protocol", ["openkp", "kp20k"])
@pytest.mark.parametrize("averaging, empty_documents, expected", [
    ("macro", "drop", MACRO_DROP), ("macro", "count", MACRO_COUNT),
    ("micro", "drop", MICRO_DROP), ("micro", "count", MICRO_COUNT),
])
def test_averaging_cutoffs_and_empty_documents(protocol, averaging, empty_documents, expected):
    config = ScoringConfig(protocol, averaging=averaging, ks=KS, empty_documents=empty_documents)
    scores = metrics.score(PREDICTIONS, REFERENCES, config)
    assert {key: value for key, value in scores.items() if key != "scoring"} == approx({**expected, **COUNTS})


def test_protocol_defaults_keep_earlier_numbers():
    # openkp counts the empty document, kp20k drops it; both macro at their standard ks.
    openkp = metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("openkp", ks=KS))
    kp20k = metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k", ks=KS))
    assert openkp["F1@M"] == pytest.approx(float(MACRO_COUNT["F1@M"]))
    assert kp20k["F1@M"] == pytest.approx(float(MACRO_DROP["F1@M"]))
    for protocol, earlier in (("openkp", metrics.score_openkp), ("kp20k", metrics.score_kp20k)):
        scores = metrics.score(PREDICTIONS, REFERENCES, ScoringConfig(protocol))
        assert {key: value for key, value in scores.items() if key != "scoring"} == earlier(PREDICTIONS, REFERENCES)
        assert metrics.score(PREDICTIONS, REFERENCES, protocol) == earlier(PREDICTIONS, REFERENCES)


def test_at_m_counts_deduplicated_predictions_and_o_the_references():
    # De-duplicated predictions: alpha(hit) beta -> @M k=2: P 1/2, R 1/2. References alpha omega -> @O k=2: same.
    scores = metrics.document_scores_kp20k(["alpha", "Alpha", "beta"], ["alpha", "omega"], ks=("M", "O"))
    assert scores == approx(table(("M", "O"), [(F(1, 2), F(1, 2), F(1, 2))] * 2))
    # No prediction at all: k = 0, P and F1 are 0, not a division by zero.
    assert metrics.document_scores_openkp([], ["alpha"], ks=("M",)) == approx(table(("M",), [(F(0), F(0), F(0))]))


# Present-only references: d1 keeps alpha and gamma (omega is not in its text); d2 keeps none.
DOC_WORDS = {"d1": "The alpha test of gamma".split(), "d2": "no such word here".split(),
             "empty": "alpha".split()}
PRESENT_KS = (1, 3)


def test_present_references_against_all():
    config = ScoringConfig("kp20k", references="present", ks=PRESENT_KS)
    present = metrics.score(PREDICTIONS, REFERENCES, config, doc_words=DOC_WORDS)
    # d1 only: @1 P 1, R 1/2 -> F1 2/3; @3 hits 2: P 2/3, R 1 -> F1 2(2/3)/(5/3) = 4/5. d2 and empty are dropped.
    assert present == approx({**table(PRESENT_KS, [(F(2, 3), 1, F(1, 2)), (F(4, 5), F(2, 3), 1)]),
                              "num_docs": 3, "num_docs_without_reference": 2, "scoring": config.to_dict()})
    counted = metrics.score(PREDICTIONS, REFERENCES, dataclasses.replace(config, empty_documents="count"),
                            doc_words=DOC_WORDS)
    # The same sums over three documents.
    assert counted["F1@3"] == pytest.approx(4 / 15) and counted["R@1"] == pytest.approx(1 / 6)
    everything = metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k", ks=PRESENT_KS))
    assert everything["F1@3"] == pytest.approx(7 / 12) and everything["num_docs_without_reference"] == 1
    assert PRESETS["bert-kpe-kp20k"] == ScoringConfig("kp20k", references="present", empty_documents="drop")


def test_present_references_need_words_and_the_kp20k_protocol():
    with pytest.raises(ValueError, match="needs the words"):
        metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k", references="present"))
    with pytest.raises(ValueError, match="scores against all references"):
        metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k"), doc_words=DOC_WORDS)
    with pytest.raises(ValueError, match="present-only source lacks url.*empty"):
        metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k", references="present"),
                      doc_words={"d1": [], "d2": []})
    with pytest.raises(ValueError, match="kp20k protocol only"):
        ScoringConfig("openkp", references="present")


# French: "réseau neuronal" is "réseaux neuronaux" for the French Snowball stemmer (réseau neuronal),
# not for Porter (réseau neuron vs réseaux neuronaux). "données classer" is "données classées" only
# when the stemmer sees composed letters: French stems both to "don class"; on the decomposed
# letters it would leave "donné classé". Porter gives "donné classer" vs "donné classé".
FRENCH_REFERENCES = ["réseaux neuronaux", "donne\u0301es classe\u0301es"]
FRENCH_PREDICTIONS = ["réseau neuronal", "données classer"]


@pytest.mark.parametrize("stemmer, expected", [
    ("french", table((1, 2), [(F(2, 3), 1, F(1, 2)), (1, 1, 1)])),  # hits [1, 1] over 2 references
    ("porter", table((1, 2), [(0, 0, 0), (0, 0, 0)])),
])
def test_stemmer_decides_matches(stemmer, expected):
    scores = metrics.document_scores_kp20k(FRENCH_PREDICTIONS, FRENCH_REFERENCES, ks=(1, 2), stemmer=stemmer)
    assert scores == approx(expected)


def test_stemmer_decides_present_references():
    # French: "réseau neuronal" occurs as "réseaux neuronaux" -> 1 present reference, hit at 1: all 1.
    # Porter: neither reference occurs, so the document has none and is dropped.
    doc_words = {"fr": "Nous étudions les réseaux neuronaux".split()}
    predictions, references = {"fr": ["réseaux neuronaux"]}, {"fr": ["réseau neuronal", "apprentissage profond"]}
    french = ScoringConfig("kp20k", stemmer="french", references="present", ks=(1,))
    assert metrics.score(predictions, references, french, doc_words) == approx({
        **table((1,), [(1, 1, 1)]), "num_docs": 1, "num_docs_without_reference": 0, "scoring": french.to_dict()})
    porter = dataclasses.replace(french, stemmer="porter")
    assert metrics.score(predictions, references, porter, doc_words)["num_docs_without_reference"] == 1


def test_recorded_configuration():
    config = ScoringConfig("kp20k", stemmer="french", averaging="micro", ks=[5, "M", "O"])
    recorded = metrics.score(PREDICTIONS, REFERENCES, config)["scoring"]
    assert recorded == {"protocol": "kp20k", "stemmer": "french", "references": "all", "averaging": "micro",
                        "ks": [5, "M", "O"], "empty_documents": "drop", "word_splitter": "kp20k"}
    assert ScoringConfig(**json.loads(json.dumps(recorded))) == config
    assert ScoringConfig("openkp").to_dict() == {"protocol": "openkp", "stemmer": None, "references": "all",
                                                 "averaging": "macro", "ks": [1, 3, 5], "empty_documents": "count",
                                                 "word_splitter": "whitespace"}
    assert ScoringConfig("kp20k").describe() == ("protocol=kp20k stemmer=porter references=all averaging=macro "
                                                 "ks=1,3,5,10 empty_documents=drop word_splitter=kp20k")


@pytest.mark.parametrize("fields, message", [
    ({"protocol": "semeval"}, "unknown protocol"),
    ({"protocol": "openkp", "stemmer": "porter"}, "without stemming"),
    ({"protocol": "kp20k", "stemmer": "klingon"}, "unknown stemmer"),
    ({"protocol": "kp20k", "references": "absent"}, "unknown references"),
    ({"protocol": "kp20k", "averaging": "weighted"}, "unknown averaging"),
    ({"protocol": "kp20k", "empty_documents": "skip"}, "unknown empty_documents"),
    ({"protocol": "kp20k", "ks": [0]}, "invalid k 0"),
    ({"protocol": "kp20k", "ks": ["X"]}, "invalid k 'X'"),
    ({"protocol": "kp20k", "ks": [5, 5]}, "distinct"),
])
def test_invalid_configurations_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ScoringConfig(**fields)


def test_format_scores_prints_the_chosen_ks():
    scores = metrics.score(PREDICTIONS, REFERENCES, ScoringConfig("kp20k", ks=KS))
    lines = metrics.format_scores(scores, KS).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["@1", "@3", "@M", "@O"]
    assert lines[3] == "  @M  0.6190  0.5000  0.8333"  # 13/21, 1/2, 5/6


# --------------------------------------------------------------------------- command line

@pytest.fixture
def files(tmp_path):
    def rows(mapping: dict, field: str) -> list:
        return [{"url": url, field: value} for url, value in mapping.items()]
    return {"pred": write_jsonl(tmp_path / "pred.jsonl", rows(PREDICTIONS, "KeyPhrases")),
            "ref": write_jsonl(tmp_path / "ref.jsonl", rows(REFERENCES, "KeyPhrases")),
            "source": write_jsonl(tmp_path / "source.jsonl", rows(DOC_WORDS, "doc_words")),
            "out": tmp_path / "scores.json"}


def test_cli_switches_round_trip(files, capsys):
    assert main(["score", str(files["pred"]), str(files["ref"]), "--preset", "bert-kpe-kp20k",
                 "--present_only_source", str(files["source"]), "--average", "micro", "--ks", "1", "3", "m", "O",
                 "--empty_documents", "count", "--output", str(files["out"])]) == 0
    # Present references: d1 alpha gamma (matches 1 0 1 0), d2 none (matches 0 0), empty none (0).
    # Micro, all three documents counted, 2 references: hits over cut-offs, hits over 2.
    scoring = {"protocol": "kp20k", "stemmer": "porter", "references": "present", "averaging": "micro",
               "ks": [1, 3, "M", "O"], "empty_documents": "count", "word_splitter": "kp20k"}
    assert json.loads(files["out"].read_text()) == approx({
        **table(KS, [(F(2, 5), F(1, 3), F(1, 2)),  # 1 over 1+1+1; F1 2(1/6)/(5/6)
                     (F(4, 11), F(2, 9), 1),  # 2 over 3+3+3; F1 2(2/9)/(11/9)
                     (F(4, 9), F(2, 7), 1),  # 2 over 4+2+1; F1 2(2/7)/(9/7)
                     (F(1, 2), F(1, 2), F(1, 2))]),  # 1 (d1's top 2) over 2+0+0
        "num_docs": 3, "num_docs_without_reference": 2, "scoring": scoring})
    printed = capsys.readouterr().out
    assert printed.startswith("scoring: protocol=kp20k stemmer=porter references=present averaging=micro "
                              "ks=1,3,M,O empty_documents=count word_splitter=kp20k\n"
                              "3 documents, 2 without reference (counted as zeros)")
    assert "  @M  0.4444  0.2857  1.0000" in printed and "  @O  0.5000  0.5000  0.5000" in printed


def test_cli_stemmer_switch(tmp_path):
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"url": "fr", "KeyPhrases": FRENCH_PREDICTIONS}])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"url": "fr", "KeyPhrases": FRENCH_REFERENCES}])
    out = tmp_path / "scores.json"
    for stemmer, f1_at_2 in (("french", 1.0), ("porter", 0.0)):
        assert main(["score", str(pred), str(ref), "--protocol", "kp20k", "--stemmer", stemmer, "--ks", "2",
                     "--output", str(out)]) == 0
        scores = json.loads(out.read_text())
        assert scores["F1@2"] == pytest.approx(f1_at_2) and scores["scoring"]["stemmer"] == stemmer


def test_cli_records_the_configuration_next_to_the_scores(files):
    # A bare --protocol and the preset of the same name write the same file, configuration included.
    assert main(["score", str(files["pred"]), str(files["ref"]), "--protocol", "kp20k",
                 "--output", str(files["out"])]) == 0
    bare = json.loads(files["out"].read_text())
    assert bare["scoring"] == ScoringConfig("kp20k").to_dict()
    assert main(["score", str(files["pred"]), str(files["ref"]), "--preset", "kp20k",
                 "--output", str(files["out"])]) == 0
    assert json.loads(files["out"].read_text()) == bare


@pytest.mark.parametrize("switches, message", [
    (["--protocol", "kp20k", "--references", "present"], "needs --present_only_source"),
    (["--protocol", "kp20k", "--references", "all", "--present_only_source", "SOURCE"], "present-only scoring only"),
    (["--protocol", "openkp", "--present_only_source", "SOURCE"], "kp20k protocol only"),
    (["--protocol", "openkp", "--stemmer", "french"], "without stemming"),
    (["--protocol", "kp20k", "--stemmer", "klingon"], "unknown stemmer"),
])
def test_cli_inconsistent_switches_are_clear_errors(files, capsys, switches, message):
    switches = [str(files["source"]) if switch == "SOURCE" else switch for switch in switches]
    assert main(["score", str(files["pred"]), str(files["ref"]), *switches]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_cli_refuses_a_bad_k(files, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["score", str(files["pred"]), str(files["ref"]), "--protocol", "kp20k", "--ks", "5", "0"])
    assert exit_.value.code == 2 and "invalid k 0" in capsys.readouterr().err
