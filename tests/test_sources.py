"""Source readers, tokenizers, KP20K keyphrase cleaning and present-keyphrase positions."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bertkpe.data.matching import find_occurrences, index_positions, locate_keyphrases
from bertkpe.data.sources import (LiaadCorpus, MissingSourceError, clean_kp20k_keyphrase, kp20k_tokenize,
                                  liaad_tokenize, read_kp20k, read_liaad, read_openkp)
from bertkpe.files import LineError


def located(doc) -> dict[str, list[tuple[int, int]]]:
    spans = locate_keyphrases(doc.words, doc.keyphrases, doc.stemmer)
    return {" ".join(kp): occ for kp, occ in zip(doc.keyphrases, spans)}


# ----------------------------------------------------------------------------- matching

def test_find_occurrences_reports_every_occurrence_including_overlaps():
    doc = ["a", "a", "a", "b", "a", "a"]
    assert find_occurrences(doc, ["a", "a"]) == [(0, 1), (1, 2), (4, 5)]
    assert find_occurrences(doc, ["a", "b", "a"], index_positions(doc)) == [(2, 4)]
    assert find_occurrences(doc, ["a", "a", "a", "a"]) == []
    assert find_occurrences(doc, ["c"]) == []
    assert find_occurrences(doc, []) == []
    assert find_occurrences(tuple(doc), ("a", "a")) == [(0, 1), (1, 2), (4, 5)]


def test_locate_keyphrases_normalises_both_sides():
    words = ["Neural", "Networks", "learn", ";", "a", "neural", "network", "learned"]
    assert locate_keyphrases(words, [["neural", "network"], ["learning"]], "porter") == [
        [(0, 1), (5, 6)], [(2, 2), (7, 7)]]
    assert locate_keyphrases(words, [["neural", "network"], ["NETWORKS"]], "none") == [[(5, 6)], [(1, 1)]]


# ----------------------------------------------------------------------------- tokenizers and cleaning

def test_kp20k_tokenize():
    assert kp20k_tokenize("Support vector machines (SVM), 3.5% faster.") == [
        "Support", "vector", "machines", "(", "SVM", ")", ",", "3.5", "%", "faster", "."]
    # Hyphens and slashes separate; "#&+*" stay in words; abbreviations and possessives are one token.
    assert kp20k_tokenize("user-friendly I/O in C++ and C# for the U.S. Navy's P&ID") == [
        "user", "friendly", "I", "O", "in", "C++", "and", "C#", "for", "the", "U.S.", "Navy's", "P&ID"]
    # Non-ASCII letters are letters (Meng et al.'s ASCII class would give "na", "ve").
    assert kp20k_tokenize("A naïve Bayes\tmodel: Gödel's theorem") == [
        "A", "naïve", "Bayes", "model", "Gödel's", "theorem"]
    assert kp20k_tokenize("drivers' 'quoted' .NET") == ["drivers", "'", "'", "quoted", "'", ".", "NET"]


def test_liaad_tokenize():
    assert liaad_tokenize("États-Unis : l’ISS, aujourd'hui à 7h44 UTC.") == [
        "États-Unis", ":", "l", "’", "ISS", ",", "aujourd", "'", "hui", "à", "7h44", "UTC", "."]
    assert liaad_tokenize("\ufeffpre\u00admier Wrocław żółw") == ["premier", "Wrocław", "żółw"]
    assert liaad_tokenize("  \r\n\t ") == []


@pytest.mark.parametrize("raw, expected", [
    ("Data Mining", ["data", "mining"]),
    ("  image\tcoding   gain ", ["image", "coding", "gain"]),  # tabs and double spaces
    ("learning (artificial intelligence)", ["learning"]),  # bracketed parts removed
    ("HYP(M) [x] {y} z", ["hyp", "z"]),
    ("user-friendly I/O", ["user", "friendly", "i", "o"]),  # same tokenizer as the text
    ("U.S. Navy", ["u.s.", "navy"]),
    ("3D model", ["3d", "model"]),
    ("JPEG2000", ["jpeg2000"]),
    ("a b c d e f", ["a", "b", "c", "d", "e", "f"]),  # 6 tokens: kept
    ("a b c d e f g", []),  # more than 6 tokens
    ("", []),
    ("   ", []),
    ("(SVM)", []),  # nothing left once brackets go
    ("windows-95(98", []),  # unbalanced bracket: odd punctuation
    ("WAM!Net", []),
    ("Women@SCS action plan", []),
    ("x, y", []),
    ("what? when", []),
    ("a: b", []),
    ('the "best" one', []),
    ("rate = 5", []),
    ("events detection. fuzzy", []),  # stray punctuation token
    ("75v05", []),  # MSC classification codes
    ("primary 68t10", []),
    ("b6150", []),  # Inspec-style classification codes
    ("C1140D", []),
])
def test_clean_kp20k_keyphrase(raw, expected):
    assert clean_kp20k_keyphrase(raw) == expected


# ----------------------------------------------------------------------------- real documents

@pytest.mark.parametrize("corpora, documents", [("fixtures", 24), ("datasets", 500)])
def test_kp20k_real_documents(request, corpora, documents):
    docs = list(read_kp20k(request.getfixturevalue(corpora) / "kp20k" / "kp20k_testing.json", stemmer="porter"))
    assert len(docs) == documents
    first = docs[0]
    assert first.url == "0" and first.stemmer == "porter"
    assert first.words[:9] == ["Data", "mining", "efforts", "increase", "business", "productivity", "and",
                               "efficiency", "."]
    # keyword "data mining;productivity;efficiency;data mining": the repeat is dropped.
    assert first.keyphrases == [["data", "mining"], ["productivity"], ["efficiency"]]
    assert located(first) == {"data mining": [(0, 1), (27, 28), (55, 56)], "productivity": [(5, 5)],
                              "efficiency": [(7, 7)]}
    fourth = docs[3]
    assert fourth.words[59:64] == ["Web", "Based", "Project", "Management", "System"]
    spans = located(fourth)
    assert spans["web based project management system"] == [(59, 63)]
    assert spans["project management"] == [(6, 7), (61, 62), (97, 98)]
    assert spans["project control"] == [] and spans["implementation"] == []


@pytest.mark.parametrize("corpora, documents", [("fixtures", 12), ("datasets", 75)])
def test_openkp_real_document(request, corpora, documents):
    path = request.getfixturevalue(corpora) / "openkp" / "OpenKPDev.jsonl"
    docs = {d.url: d for d in read_openkp(path, stemmer="none")}
    assert len(docs) == documents
    doc = docs["kpcrowd://science-20933265"]
    assert doc.stemmer == "none"
    assert doc.words[:5] == ["Video", "Robots", "to", "Aid", "in"] and len(doc.words) == 78
    spans = located(doc)
    assert spans["robots"] == [(1, 1), (33, 33), (58, 58)]
    assert spans["Comment"] == [(67, 67), (76, 76)]  # "Comment" and "comment"
    assert spans["Japanese engineers working"] == [(40, 42)]


def test_openkp_readme_example_drops_empty_keyphrases(fixtures):
    path = fixtures / "openkp" / "OpenKP_readme_example.jsonl"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert [] in raw["KeyPhrases"]
    (doc,) = read_openkp(path, stemmer="none")
    assert [] not in doc.keyphrases and len(doc.keyphrases) == len([kp for kp in raw["KeyPhrases"] if kp])


@pytest.mark.parametrize("corpora, documents", [("fixtures", 12), ("datasets", 75)])
def test_openkp_eval_public_has_no_keyphrases(request, corpora, documents):
    path = request.getfixturevalue(corpora) / "openkp" / "OpenKPEvalPublic.jsonl"
    docs = list(read_openkp(path, stemmer="none", with_keyphrases=False))
    assert len(docs) == documents and all(d.keyphrases == [] for d in docs)


@pytest.mark.parametrize("corpora, documents", [("fixtures", 10), ("datasets", 2000)])
def test_liaad_inspec_document(request, corpora, documents):
    with LiaadCorpus(request.getfixturevalue(corpora) / "liaad" / "Inspec.zip") as corpus:
        assert corpus.language == "en-US" and len(corpus.doc_ids) == documents
        assert corpus.doc_ids[:4] == ["2", "3", "4", "6"]  # numeric order
        (doc,) = corpus.documents(["8"])
    assert doc.url == "8" and doc.stemmer == "porter"
    assert doc.words[7:11] == ["[", "Global", "Crossing", "]"]
    assert located(doc) == {"Hutchison Telecommunications": [(11, 12)], "Singapore Technologies": [(14, 15)],
                            "Global Crossing": [(8, 9), (19, 20)], "bankrupt": [(35, 35)],
                            "telecommunication": [(12, 12)]}  # stemmed: "Telecommunications"


def test_liaad_wikinews_french_stemmed_match(fixtures):
    (doc,) = read_liaad(fixtures / "liaad" / "WikiNews.zip", ids=["43971"])
    assert doc.stemmer == "french"
    assert doc.words[:3] == ["États-Unis", ":", "Lancement"]
    assert doc.words[17] == "fusée" and doc.words[110] == "fusées"
    spans = located(doc)
    assert spans["fusée"] == [(17, 17), (110, 110)]
    assert spans["fusée falcon 9"] == [(17, 19)]
    assert spans["lancement"][:2] == [(2, 2), (10, 10)]


@pytest.mark.parametrize("corpora, documents", [("fixtures", 10), ("datasets", 110)])
def test_liaad_layouts_folder_nested_folder_and_zip_root(tmp_path, request, corpora, documents):
    zip_root = request.getfixturevalue(corpora) / "liaad" / "110-PT-BN-KP.zip"
    with zipfile.ZipFile(zip_root) as z:
        z.extractall(tmp_path / "outer" / "pt")
    with LiaadCorpus(tmp_path / "outer" / "pt") as folder, LiaadCorpus(tmp_path / "outer") as nested, \
            LiaadCorpus(zip_root) as archive:
        assert folder.doc_ids == nested.doc_ids == archive.doc_ids and len(archive.doc_ids) == documents
        assert folder.language == archive.language == "pt-PT"
        first = archive.doc_ids[0]
        assert next(folder.documents([first])) == next(archive.documents([first]))
    (doc,) = read_liaad(tmp_path / "outer", ids=[first], language="en")
    assert doc.stemmer == "porter"


def test_liaad_portuguese_stemmed_match(fixtures):
    (doc,) = read_liaad(fixtures / "liaad" / "110-PT-BN-KP.zip",
                        ids=["2000_10_09-13_00_00-JornaldaTarde-8-topic-seg.txt-Nr1"])
    assert doc.stemmer == "portuguese" and len(doc.words) == 410
    assert doc.words[:3] == ["Temos", "agora", "irão"] and doc.words[61] == "Timor-Leste"
    spans = located(doc)
    assert spans["base de Maceda"] == [(13, 15), (257, 259)]
    assert spans["soldado"] == [(53, 53), (339, 339), (373, 373)]  # "soldados", "soldado", "soldados"
    assert spans["Timor-Leste"] == [(61, 61)] and spans["pára-quedistas"] == [(365, 365)]


def test_liaad_polish_stemmed_match(fixtures):
    with LiaadCorpus(fixtures / "liaad" / "pak2018.zip") as corpus:
        assert corpus.language == "pl" and corpus.doc_ids[:3] == ["pak_0", "pak_1", "pak_2"]
        (doc,) = corpus.documents(["pak_0"])
    assert doc.stemmer == "polish"
    assert doc.words[:5] == ["Sterowanie", "układami", "napędowymi", "nowoczesnych", "samochodów"]
    assert doc.words[58:60] == ["sterowaniu", "predykcyjnym"]
    spans = located(doc)
    assert spans["sterowanie predykcyjne"] == [(58, 59)]  # the key in the nominative, the text declines it
    assert spans["modelowanie matematyczne"] == []


def test_liaad_missing_corpus_names_expected_path(tmp_path):
    with pytest.raises(MissingSourceError, match="docsutf8"):
        LiaadCorpus(tmp_path)
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(MissingSourceError, match="x.zip"):
        LiaadCorpus(tmp_path / "x.zip")


# ----------------------------------------------------------------------------- bad input

def write_lines(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD_OPENKP = b'{"url": "u1", "text": "a b", "KeyPhrases": [["a"]]}'
GOOD_KP20K = b'{"title": "T", "abstract": "a b", "keyword": "a;b"}'


@pytest.mark.parametrize("reader, bad, reason", [
    (read_openkp, b'{"url": "u2", "text": "a b", ', "not valid JSON"),
    (read_openkp, b'["not", "an", "object"]', "expected a JSON object"),
    (read_openkp, b'{"url": "u2", "KeyPhrases": []}', "missing field 'text'"),
    (read_openkp, b'{"url": "u2", "text": ["a"], "KeyPhrases": []}', "field 'text' must be str"),
    (read_openkp, b'{"url": 2, "text": "a", "KeyPhrases": []}', "field 'url' must be str"),
    (read_openkp, b'{"url": "u2", "text": "a"}', "missing field 'KeyPhrases'"),
    (read_openkp, b'{"url": "u2", "text": "a", "KeyPhrases": ["a"]}', "list of lists of strings"),
    (read_openkp, b'{"url": "u2", "text": "a", "KeyPhrases": [[1]]}', "list of lists of strings"),
    (read_openkp, b'{"url": "u2", "text": "a", "VDOM": [], "KeyPhrases": []}', "field 'VDOM' must be str"),
    (read_openkp, b'{"url": "u2", "text": "caf\xe9", "KeyPhrases": []}', "not valid UTF-8"),
    (read_kp20k, b'{"title": "T", "abstract": "a"}', "missing field 'keyword'"),
    (read_kp20k, b'{"title": "T", "abstract": null, "keyword": ""}', "field 'abstract' must be str"),
    (read_kp20k, b'{"title": "T", "abstract": "a", "keyword": ["a"]}', "field 'keyword' must be str"),
    (read_kp20k, b'{"title": "T" "abstract": "a", "keyword": "a"}', "not valid JSON"),
    (read_kp20k, b'\xff\xfe{"title": "T"}', "not valid UTF-8"),
])
def test_bad_lines_name_file_and_line(tmp_path, reader, bad, reason):
    good = GOOD_OPENKP if reader is read_openkp else GOOD_KP20K
    path = write_lines(tmp_path / "src.jsonl", good, b"", bad, good)
    with pytest.raises(LineError, match=reason) as info:
        list(reader(path, stemmer="none"))
    assert (info.value.source, info.value.line) == (str(path), 3)
    assert str(info.value).startswith(f"{path}:3: ")
    skipped: list[LineError] = []
    docs = list(reader(path, stemmer="none", on_bad_line=skipped.append))
    assert [d.url for d in docs] == (["u1", "u1"] if reader is read_openkp else ["0", "3"])
    assert [e.line for e in skipped] == [3]


def test_missing_source_file_names_expected_path(tmp_path):
    with pytest.raises(MissingSourceError, match=str(tmp_path / "nope.jsonl")):
        list(read_openkp(tmp_path / "nope.jsonl", stemmer="none"))


def make_liaad(root: Path, docs: dict[str, bytes], keys: dict[str, bytes], lan: bytes | None = b"fr\n") -> Path:
    (root / "docsutf8").mkdir(parents=True)
    (root / "keys").mkdir()
    for name, text in docs.items():
        (root / "docsutf8" / f"{name}.txt").write_bytes(text)
    for name, text in keys.items():
        (root / "keys" / f"{name}.key").write_bytes(text)
    if lan is not None:
        (root / "lan.txt").write_bytes(lan)
    return root


def test_liaad_bad_files(tmp_path):
    root = make_liaad(tmp_path / "c", {"1": "\ufeffLes fusées.".encode(), "2": b"caf\xe9", "10": b"x"},
                      {"1": b"fus\xc3\xa9e\r\n\r\n  Fus\xc3\xa9es \n", "2": b"a"})
    with LiaadCorpus(root) as corpus:
        assert corpus.doc_ids == ["1", "2", "10"] and corpus.language == "fr"
        (doc,) = corpus.documents(["1"])
        assert doc.words == ["Les", "fusées", "."] and doc.keyphrases == [["fusée"]]  # BOM gone, stem de-dup
        with pytest.raises(LineError, match="not valid UTF-8") as info:
            list(corpus.documents())
        assert info.value.line == "docsutf8/2.txt"
        skipped: list[LineError] = []
        assert [d.url for d in corpus.documents(on_bad_line=skipped.append)] == ["1"]
        assert [(e.line, e.reason) for e in skipped] == [
            ("docsutf8/2.txt", "not valid UTF-8 (unexpected end of data at byte 3)"), ("keys/10.key", "file missing")]


def test_liaad_zip_with_corpus_at_root(tmp_path):
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("docsutf8/a.txt", "Hello world")
        z.writestr("keys/a.key", "world\n")
    (doc,) = read_liaad(archive)
    assert doc.url == "a" and doc.stemmer == "none" and doc.keyphrases == [["world"]]
