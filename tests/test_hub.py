"""Trained models shared the way the field does: a run's checkpoints carry their model card,
`bertkpe push` publishes one (to a local stand-in of the Hub, tests/hub_standin.py), and
every reader of checkpoints takes the Hub id back, online or from a cache alone."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import hub_standin
from helpers import ROOT, SUBPROCESS_ENV, read_jsonl, train_argv

from bertkpe import KeyphraseExtractor
from bertkpe.cli import run_command
from bertkpe.hub import checkpoint_folder

hub = hub_standin.hub

TEXTS = ["Web-Based Project Management System. A web-based project management system is described, with "
         "life-enhancing graph models; the electronic project-management system ranks keyphrases.",
         "Sparse graphs and graph theory: keyphrase extraction from scientific text with neural networks."]
PUBLISHED = {".gitattributes", "README.md", "config.json", "eval_results.json", "kpe_config.json",
             "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def trained(setup) -> Path:
    """A run trained and tested as users do: best/ holds its card with the test scores."""
    run = setup["runs"] / "for_the_hub"
    assert run_command("train", train_argv(setup, run.name, "--max_train_steps", "2")) == 0
    return run


def fill_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """A Hugging Face cache filled by hand, as a machine without network gets one: the
    snapshot of `repo_id` at `commit`, which `main` points to."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit, ignore=shutil.ignore_patterns("training_state.pt"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing answers: offline must not ask
    return cache


def cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertkpe", *arguments], cwd=ROOT, env={**SUBPROCESS_ENV, **env},
                          capture_output=True, text=True, timeout=300)


def test_every_checkpoint_of_a_run_explains_itself(trained):
    from huggingface_hub import ModelCard

    metrics = json.loads((trained / "metrics.json").read_text())
    assert json.loads((trained / "best" / "eval_results.json").read_text()) == metrics
    for name in ("best", "last"):
        card = ModelCard.load(trained / name / "README.md")
        assert card.data.library_name == "bertkpe" and "bert2joint" in card.data.tags
        kpe = json.loads((trained / name / "kpe_config.json").read_text())
        assert kpe["training"]["options"]["max_train_steps"] == 2
        [data] = kpe["training"]["data"]
        assert data["file"] == "kp20k.train.json" and data["documents"] > 0
        assert any(folder.name.endswith(data["store_key"]) for folder in (trained.parent.parent / "cache").iterdir())
        assert data["store_key"] in card.text and f'from_pretrained("{trained / name}")' in card.text
        assert "@inproceedings{sun2021capturing" in card.text
    card = ModelCard.load(trained / "best" / "README.md")
    for split, title in (("eval", "test"), ("dev", "dev")):
        f1, p, r = (f"{metrics[split][name]:.4f}" for name in ("F1@5", "P@5", "R@5"))
        assert any(line.startswith(f"| {title} | {metrics[split]['num_docs']} |") and f1 in line and p in line
                   and r in line for line in card.text.splitlines())
        assert {(result.dataset_split, result.metric_name, result.metric_value) for result in card.data.eval_results} \
            >= {(title, "F1@5", round(metrics[split]["F1@5"], 4))}
    assert "Scoring: averaging macro" in card.text and "protocol kp20k" in card.text


def test_push_then_load_back_by_id_online_and_offline(trained, hub, tmp_path):
    best = trained / "best"
    env = hub.client_env(tmp_path / "hf_home")
    result = cli("push", str(best), "owner/kpe", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pushed" in result.stdout and "owner/kpe" in result.stdout
    files = hub.files("owner/kpe")
    assert set(files) == PUBLISHED  # no training state, no staging leftovers
    for name in PUBLISHED - {".gitattributes", "README.md"}:
        assert files[name] == (best / name).read_bytes()
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "# owner/kpe" in card and 'from_pretrained("owner/kpe")' in card
    assert (best / "README.md").read_text() != card  # the folder's own card is left as it was
    expected = KeyphraseExtractor.from_pretrained(best).extract(TEXTS, top_k=5)

    inputs = tmp_path / "docs.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    for extra in ({}, {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}):  # the cache alone, offline
        output = tmp_path / f"out{len(extra)}.jsonl"
        result = cli("extract", "--checkpoint", "owner/kpe", "--input", str(inputs), "--lines", "--output",
                     str(output), "--device", "cpu", env={**env, **extra})
        assert result.returncode == 0, result.stderr[-3000:]
        found = [[(phrase, score) for phrase, score in row["keyphrases"]] for row in read_jsonl(output)]
        assert [[phrase for phrase, _ in doc] for doc in found] == [[phrase for phrase, _ in doc] for doc in expected]
        for doc, reference in zip(found, expected):
            assert [score for _, score in doc] == pytest.approx([score for _, score in reference], rel=1e-5)


def test_push_to_hub_from_python_publishes_a_scripts_test_runs_scores(trained, hub, monkeypatch):
    import bertkpe
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    scores = {"eval": {"F1@5": 0.5, "num_docs": 3, "scoring": {"protocol": "kp20k"}}}
    url = bertkpe.push_to_hub(trained / "best", "owner/from-python", token="standin-token", scores=scores,
                              commit_message="first version")
    assert url.startswith(hub.url) and hub.repo("owner/from-python").commits[-1].message == "first version"
    files = hub.files("owner/from-python")
    assert json.loads(files["eval_results.json"])["eval"] == scores["eval"]
    assert any(line.startswith("| test | 3 |") and "0.5000" in line for line in files["README.md"].decode().splitlines())
    assert json.loads((trained / "best" / "eval_results.json").read_text())["eval"]["F1@5"] != 0.5  # folder untouched


def test_push_refuses_what_is_not_a_checkpoint_or_an_id(trained, hub, tmp_path):
    env = hub.client_env(tmp_path / "hf_home")
    result = cli("push", str(tmp_path), "owner/kpe", env=env)
    assert result.returncode == 2 and "not a bertkpe checkpoint folder" in result.stderr
    result = cli("push", str(trained / "best"), "not/a/repo", env=env)
    assert result.returncode == 2 and "not a Hub model id" in result.stderr
    assert not any(method == "POST" for method, _ in hub.requests)


def test_a_cache_filled_by_hand_serves_every_reader_offline(setup, trained, offline_cache, tmp_path):
    best = trained / "best"
    snapshot = fill_cache(offline_cache, "owner/kpe", best)
    assert checkpoint_folder("owner/kpe") == snapshot
    assert checkpoint_folder("owner/kpe", revision="a" * 40) == snapshot
    local = KeyphraseExtractor.from_pretrained(best)
    assert KeyphraseExtractor.from_pretrained("owner/kpe").extract(TEXTS) == local.extract(TEXTS)
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        checkpoint_folder("owner/elsewhere")
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        checkpoint_folder("owner/kpe", revision="v2")
    with pytest.raises(ValueError, match="a revision .* applies to Hub ids only"):
        checkpoint_folder(best, revision="v2")

    # scripts/test.py --eval_checkpoint: the same scores as the run's own test
    argv = ["--eval_checkpoint", "owner/kpe", "--preprocess_folder", str(setup["data"]), "--cached_features_dir",
            str(setup["cache"]), "--feature_workers", "1", "--no_cuda", "--output_dir", str(tmp_path),
            "--run_name", "from_hub", "--max_doc_tokens", "96", "--splits", "eval"]
    assert run_command("test", argv) == 0
    tested = json.loads((tmp_path / "from_hub" / "metrics.json").read_text())["eval"]
    own = json.loads((trained / "metrics.json").read_text())["eval"]
    assert {name: tested[name] for name in own if "@" in name} == pytest.approx(
        {name: own[name] for name in own if "@" in name})


def test_fine_tuning_starts_from_a_trained_model_by_id(setup, trained, offline_cache):
    fill_cache(offline_cache, "owner/kpe", trained / "best")
    # at learning rate 0 the one step changes nothing: what training started from is what it saves
    run = setup["runs"] / "fine_tuned"
    argv = train_argv(setup, run.name, "--init_checkpoint", "owner/kpe", "--max_train_steps", "1",
                      "--learning_rate", "0", "--head_learning_rate", "0", "--no-test_after_training")
    assert run_command("train", argv) == 0
    started, trained_weights = load_file(run / "last" / "model.safetensors"), \
        load_file(trained / "best" / "model.safetensors")
    assert started.keys() == trained_weights.keys()
    assert all((started[name] == trained_weights[name]).all() for name in started)
    assert json.loads((run / "options.json").read_text())["init_checkpoint"] == "owner/kpe"
    with pytest.raises(SystemExit, match=r"--model_class bert2tag \(the checkpoint has bert2joint\)"):
        run_command("train", train_argv(setup, "refused", "--init_checkpoint", "owner/kpe", model_class="bert2tag"))
    with pytest.raises(SystemExit, match="--init_checkpoint owner/absent: .*not in the Hugging Face cache"):
        run_command("train", train_argv(setup, "refused", "--init_checkpoint", "owner/absent"))
