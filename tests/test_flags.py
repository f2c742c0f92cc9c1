"""Flags say what happens: refused up front where they cannot hold, never silently ignored."""
from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkpe.cli import run_command
from bertkpe.training import total_train_steps
from helpers import ROOT, read_jsonl, train_argv

QUICK = ("--no-test_after_training", "--no_eval", "--max_token", "48", "--max_doc_tokens", "48")


def budget(dataset_class: str, batch: int, accumulation: int, world_size: int = 1, **flags) -> tuple[int, str]:
    args = argparse.Namespace(dataset_class=dataset_class, per_gpu_train_batch_size=batch,
                              gradient_accumulation_steps=accumulation, max_train_steps=None,
                              max_train_epochs=None, **flags)
    return total_train_steps(args, steps_per_epoch=7, world_size=world_size)


def test_default_budget_is_the_papers_scaled_to_the_effective_batch():
    assert budget("kp20k", 8, 8)[0] == 73430  # the paper's 64 documents a step
    assert budget("kp20k", 8, 4, world_size=2)[0] == 73430  # 4 x 8 x 2 = 64 too
    assert budget("kp20k", 8, 1)[0] == 587440  # 8 documents a step: 8 times the steps, the same documents
    assert budget("openkp", 16, 4, world_size=4)[0] == 5202  # 256 a step: round(20810 / 4)
    steps, source = budget("openkp", 32, 1)
    assert steps == 41620 and source == "the paper's 20810 steps at 64 documents a step, scaled to 32 documents a step"
    assert budget("multidata", 8, 8) == (70, "10 epochs (no published budget for this dataset class)")
    assert budget("kp20k", 8, 8, world_size=3)[0] == 24477  # 192 a step: round(73430 / 3)
    explicit = argparse.Namespace(dataset_class="kp20k", per_gpu_train_batch_size=8, gradient_accumulation_steps=1,
                                  max_train_steps=12, max_train_epochs=None)
    assert total_train_steps(explicit, 7) == (12, "--max_train_steps")


def test_the_log_states_the_effective_batch_and_the_budget(setup, tmp_path):
    assert run_command("train", train_argv(setup, "run", "--max_train_steps", "1", *QUICK,
                                           "--gradient_accumulation_steps", "2", output_dir=tmp_path)) == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "budget: --max_train_steps), effective batch 8 = micro-batch 4 x accumulation 2 x 1 process(es)" in log


def test_max_token_past_the_encoder_limit_is_refused_before_the_run_starts(setup, tmp_path):
    # the tiny encoder has 512 positions: 510 sub-tokens besides [CLS] and [SEP]
    argv = train_argv(setup, "run", "--max_train_steps", "1", *QUICK, output_dir=tmp_path) + ["--max_token", "1000"]
    with pytest.raises(SystemExit, match=r"--max_token 1000 is more than the encoder takes: at most 510 sub-tokens"):
        run_command("train", argv)
    assert not (tmp_path / "run").exists()
    argv[-1] = "510"
    assert run_command("train", argv) == 0


@pytest.fixture(scope="module")
def short_run(setup, tmp_path_factory) -> Path:
    """A finished one-step bert2joint run (its last/ resumable, its best/ testable)."""
    out = tmp_path_factory.mktemp("flags")
    assert run_command("train", train_argv(setup, "run", "--max_train_steps", "1", *QUICK, output_dir=out)) == 0
    return out / "run"


def test_resume_refuses_changed_options_and_lists_them(short_run):
    before = (short_run / "options.json").read_text()
    with pytest.raises(SystemExit) as refused:
        run_command("train", ["--resume", str(short_run), "--model_class", "bert2span", "--learning_rate", "1e-3",
                              "--max_train_steps", "2"])
    message = str(refused.value)
    assert "--learning_rate 0.001 (the run has 5e-05)" in message
    assert "--model_class 'bert2span' (the run has 'bert2joint')" in message
    assert "max_train_steps" not in message.split("these differ")[1].split(". Start")[0]
    assert (short_run / "options.json").read_text() == before
    state = json.loads((short_run / "last" / "kpe_config.json").read_text())
    assert state["model_class"] == "bert2joint"


def test_resume_takes_unchanged_and_resumable_options(short_run):
    # the saved value repeated, an abbreviation of a resumable flag, and a new budget
    assert run_command("train", ["--resume", str(short_run), "--model_class", "bert2joint", "--display_i", "5",
                                 "--max_train_steps", "2"]) == 0
    log = (short_run / "train.log").read_text().split("resumed from")[-1]
    assert "2 optimizer steps" in log


def test_test_takes_the_dataset_from_the_checkpoint_and_never_overwrites(setup, short_run, tmp_path):
    argv = ["--eval_checkpoint", str(short_run / "best"), "--preprocess_folder", str(setup["data"]),
            "--cached_features_dir", str(setup["cache"]), "--no_cuda", "--output_dir", str(tmp_path),
            "--splits", "dev"]
    assert run_command("test", argv) == 0
    assert run_command("test", argv) == 0
    folders = sorted(path.name for path in tmp_path.iterdir())
    assert len(folders) == 2, folders  # a second test of the same checkpoint keeps the first
    assert all(name.startswith("test_kp20k_run-best_") for name in folders)
    first, second = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in folders)
    assert first["dev"]["F1@5"] == second["dev"]["F1@5"]
    assert run_command("test", argv + ["--run_name", "named"]) == 0
    with pytest.raises(SystemExit, match="already holds a test"):
        run_command("test", argv + ["--run_name", "named"])


def test_test_accepts_the_original_flags_and_checks_them(setup, short_run, tmp_path):
    original = ["--run_mode", "test", "--local_rank", "-1", "--model_class", "bert2joint",
                "--pretrain_model_type", str(setup["encoder"]), "--dataset_class", "kp20k",
                "--per_gpu_test_batch_size", "8", "--preprocess_folder", str(setup["data"]),
                "--pretrain_model_path", str(tmp_path), "--cached_features_dir", str(setup["cache"]),
                "--eval_checkpoint", str(short_run / "best"), "--max_phrase_words", "5", "--no_cuda",
                "--output_dir", str(tmp_path), "--run_name", "original", "--splits", "dev"]
    assert run_command("test", original) == 0
    assert len(read_jsonl(tmp_path / "original" / "predictions.dev.jsonl")) == 12
    mismatched = original[:original.index("--model_class") + 1] + ["bert2span"] + \
        original[original.index("--model_class") + 2:]
    with pytest.raises(SystemExit, match=r"--model_class bert2span \(the checkpoint has bert2joint\)"):
        run_command("test", mismatched + ["--max_phrase_words", "4"])
    with pytest.raises(SystemExit, match=r"--max_token 2000 is more than the encoder takes"):
        run_command("test", original[:-4] + ["--run_name", "long", "--max_token", "2000"])


@pytest.fixture
def echo_python(tmp_path) -> dict[str, str]:
    """An environment whose `python` prints its arguments, one a line, instead of training."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def script_args(script: str, env: dict[str, str], *extra: str) -> list[str]:
    done = subprocess.run(["bash", str(ROOT / "scripts" / script), *extra], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.splitlines()


def test_train_sh_trains_the_paper_budget_unless_told(echo_python):
    args = script_args("train.sh", echo_python)
    assert "--max_train_epochs" not in args and "--max_train_steps" not in args
    assert args[args.index("--gradient_accumulation_steps") + 1] == "8"
    args = script_args("train.sh", {**echo_python, "EPOCHS": "3"})
    assert args[args.index("--max_train_epochs") + 1] == "3"
    args = script_args("train.sh", {**echo_python, "STEPS": "100"})
    assert args[args.index("--max_train_steps") + 1] == "100"


def test_test_sh_leaves_the_dataset_class_to_the_checkpoint(echo_python):
    args = script_args("test.sh", echo_python, "results/RUN/best")
    assert "--dataset_class" not in args and args[args.index("--eval_checkpoint") + 1] == "results/RUN/best"
    args = script_args("test.sh", {**echo_python, "DATASET": "openkp"}, "results/RUN/best")
    assert args[args.index("--dataset_class") + 1] == "openkp"


def test_the_heads_table_merges_multi_valued_flags_and_drops_head_options_where_a_head_has_none(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from run_all_heads import effective_settings, head_settings

    settings = effective_settings(["--model_class", "bert2joint", "--train_splits", "train", "dev", "--no_eval",
                                   "--rank_loss", "softmax", "--chunk_loss_weight", "0.3", "--max_train_epochs", "4",
                                   "--max_train_epochs", "1"])
    assert settings == ["--train_splits", "train", "dev", "--no_eval", "--rank_loss", "softmax",
                        "--chunk_loss_weight", "0.3", "--max_train_epochs", "1"]
    assert effective_settings(["--train_splits", "train", "dev", "--train_splits", "train"]) == ["--train_splits",
                                                                                                  "train"]
    assert head_settings(settings, "bert2joint") == settings
    assert head_settings(settings, "bert2rank") == ["--train_splits", "train", "dev", "--no_eval", "--rank_loss",
                                                    "softmax", "--max_train_epochs", "1"]
    for head in ("bert2span", "bert2tag", "bert2chunk"):
        assert head_settings(settings, head) == ["--train_splits", "train", "dev", "--no_eval",
                                                 "--max_train_epochs", "1"]


def test_the_demo_settings_train_on_train_and_dev_with_the_softmax_rank_loss_and_keep_the_average(
        setup, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from demo import TRAIN_SETTINGS

    # the tiny encoder, windows and step budget of the test flags override the demo's
    argv = [*TRAIN_SETTINGS, *train_argv(setup, "demo", "--max_train_epochs", "0.25", output_dir=tmp_path)]
    assert run_command("train", argv) == 0
    log = (tmp_path / "demo" / "train.log").read_text()
    assert "training documents (train + dev): 36 usable" in log
    assert "moving average of the weights (--ema_decay 0.99)" in log
    assert json.loads((tmp_path / "demo" / "best" / "kpe_config.json").read_text())["rank_loss"] == "softmax"
    best, last = (load_file(str(tmp_path / "demo" / name / "model.safetensors")) for name in ("best", "last"))
    assert not all(torch.equal(best[name], last[name]) for name in best)  # best/ is the average, last/ trained
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["eval"]["num_docs"] == 12
