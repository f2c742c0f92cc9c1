"""Training, evaluation and checkpoints end to end, on the CPU.

A tiny random BERT (one layer, hidden 32) over the default tokenizer, and real data:
the KP20K- and OpenKP-layout files of tests/fixtures run through `bertkpe preprocess`,
then cut to 24 train / 12 dev / 12 eval documents (the `setup` fixture of conftest.py). Runs go through `run_command("train", ...)` in
process, or through `scripts/` in a subprocess where a real process boundary matters
(torchrun, SIGKILL).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkpe.cli import run_command
from helpers import MODEL_CLASSES, ROOT, SUBPROCESS_ENV, featurize, make_record, read_jsonl, tiny_model, train_argv

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- helpers

def training_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=True)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def same_weights(first: Path, second: Path, atol: float = 0.0) -> bool:
    a, b = weights(first), weights(second)
    return a.keys() == b.keys() and all(torch.allclose(a[name], b[name], rtol=0.0, atol=atol) for name in a)


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of tensorboardX event files, read as raw TFRecords."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def urls(path: Path) -> list[str]:
    return [str(row["url"]) for row in read_jsonl(path)]


def logged_losses(log: Path) -> list[float]:
    return [float(line.split(" loss ")[1].split()[0]) for line in log.read_text().splitlines() if " loss " in line]


def check_predictions(path: Path, source: Path, top_k: int) -> None:
    rows = read_jsonl(path)
    assert [row["url"] for row in rows] == urls(source)  # one line per document, in source order
    for row in rows:
        assert set(row) == {"url", "KeyPhrases", "Scores"}
        assert len(row["KeyPhrases"]) == len(row["Scores"]) <= top_k
        assert all(isinstance(phrase, list) and phrase and all(isinstance(w, str) for w in phrase)
                   for phrase in row["KeyPhrases"])
        assert row["Scores"] == sorted(row["Scores"], reverse=True)
        assert all(math.isfinite(score) for score in row["Scores"])


def check_run_folder(run: Path, setup, dataset: str = "kp20k") -> None:
    assert json.loads((run / "options.json").read_text())["run_name"] in (None, run.name)
    assert "training" in (run / "train.log").read_text()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    for name in ("best", "last"):
        for file in ("config.json", "model.safetensors", "kpe_config.json", "tokenizer.json", "tokenizer_config.json"):
            assert (run / name / file).is_file(), f"{name}/{file}"
    assert (run / "last" / "training_state.pt").is_file()
    kpe = json.loads((run / "best" / "kpe_config.json").read_text())
    assert kpe["dataset_class"] == dataset and kpe["max_token"] == 96
    metrics = json.loads((run / "metrics.json").read_text())
    splits = ("dev", "eval") if dataset == "kp20k" else ("dev",)
    assert sorted(metrics) == sorted(splits)
    for split in splits:
        for key in ("F1@1", "F1@3", "F1@5", "P@5", "R@5"):
            assert 0.0 <= metrics[split][key] <= 1.0
    top_k = 10 if dataset == "kp20k" else 5
    for split in ("dev", "eval"):
        check_predictions(run / f"predictions.{split}.jsonl", setup["data"] / dataset / f"{dataset}.{split}.json",
                          top_k)


def budget_of(run: Path) -> tuple[int, int]:
    """(optimizer steps in TrainState, scheduler steps) of the run's last/ checkpoint."""
    state = training_state(run / "last")
    return state["train_state"]["step"], state["scheduler"]["last_epoch"]


# ---------------------------------------------------------------- 1. every head, single process

@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_every_head_trains_and_writes_its_run_folder(setup, model_class):
    run = setup["runs"] / f"head_{model_class}"
    assert run_command("train", train_argv(setup, run.name, "--max_train_steps", "2",
                                           model_class=model_class)) == 0
    check_run_folder(run, setup)
    assert budget_of(run) == (2, 2)
    assert json.loads((run / "best" / "kpe_config.json").read_text())["model_class"] == model_class
    assert [tag for tag, _ in tensorboard_scalars(run / "tensorboard").items() if tag.startswith("train/")]


def test_exact_step_budget_with_uneven_accumulation(setup, monkeypatch):
    """24 documents in micro-batches of 4 make 6 micro-batches an epoch; accumulating 4
    makes groups of 4 and 2. 5 steps = 2 epochs and 1 step: 4+2 + 4+2 + 4 micro-batches."""
    from bertkpe.models.base import KeyphraseModel

    calls = {"optimizer": 0, "loss": 0}
    optimizer_step, forward = torch.optim.AdamW.step, KeyphraseModel.forward

    def counting_step(self, *args, **kwargs):
        calls["optimizer"] += 1
        return optimizer_step(self, *args, **kwargs)

    def counting_forward(self, batch, compute_loss=False):
        calls["loss"] += int(compute_loss)
        return forward(self, batch, compute_loss)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    monkeypatch.setattr(KeyphraseModel, "forward", counting_forward)
    run = setup["runs"] / "uneven_accumulation"
    argv = train_argv(setup, run.name, "--max_train_steps", "5", "--gradient_accumulation_steps", "4",
                      "--no-test_after_training", model_class="bert2tag")
    assert run_command("train", argv) == 0
    assert calls == {"optimizer": 5, "loss": 4 + 2 + 4 + 2 + 4}
    state = training_state(run / "last")
    assert state["train_state"]["step"] == 5 and state["train_state"]["epoch"] == 2
    assert state["scheduler"]["last_epoch"] == 5
    assert state["scheduler"]["_last_lr"] == [0.0] * len(state["scheduler"]["_last_lr"])  # linear decay ran out
    loss_steps = [step for step, _ in tensorboard_scalars(run / "tensorboard")["train/loss"]]
    assert loss_steps == [1, 2, 3, 4, 5]
    assert [entry["tag"] for entry in read_jsonl(run / "eval_history.jsonl")] == ["epoch_1", "epoch_2", "final"]


# ---------------------------------------------------------------- 2. torchrun, two CPU processes

def test_torchrun_two_processes_gloo(setup, tmp_path):
    """`scripts/train.py` under torchrun (gloo). Rank 1 reaches the run folder's name a
    second after rank 0, so both must agree on rank 0's time-stamped name."""
    wrapper = tmp_path / "delayed_train.py"
    wrapper.write_text(textwrap.dedent(f"""
        import os, runpy, time
        from bertkpe import training
        prepare_run_dir = training.prepare_run_dir
        def late_prepare_run_dir(*args, **kwargs):
            if os.environ["RANK"] == "1":
                time.sleep(1.2)
            return prepare_run_dir(*args, **kwargs)
        training.prepare_run_dir = late_prepare_run_dir
        runpy.run_path({str(ROOT / "scripts" / "train.py")!r}, run_name="__main__")
    """))
    output = tmp_path / "runs"
    argv = train_argv(setup, "unused", "--max_train_steps", "3", "--gradient_accumulation_steps", "2",
                      "--eval_every", "2", output_dir=output)
    argv = argv[:argv.index("--run_name")] + argv[argv.index("--run_name") + 2:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(wrapper), *argv]
    result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    runs = list(output.iterdir())
    assert len(runs) == 1, runs  # only rank 0 writes, under one name
    run = runs[0]
    assert run.name.startswith("kp20k_bert2joint_")
    check_run_folder(run, setup)
    assert len(list((run / "tensorboard").iterdir())) == 1
    assert not list(tmp_path.glob("results*"))
    # 24 documents / 4 per micro-batch / 2 processes = 3 micro-batches an epoch: groups of 2 and 1.
    assert budget_of(run) == (3, 3)
    assert len(training_state(run / "last")["rng"]) == 2
    log = (run / "train.log").read_text()
    assert "2 process(es)" in log
    dev_urls = urls(setup["data"] / "kp20k" / "kp20k.dev.json")
    assert urls(run / "predictions.dev.jsonl") == dev_urls and len(set(dev_urls)) == len(dev_urls)
    history = read_jsonl(run / "eval_history.jsonl")
    # step 2 ends epoch 1: evaluated once, not again as the epoch's end
    assert [(entry["tag"], entry["step"]) for entry in history] == [("step_2", 2), ("final", 3)]
    assert all(entry["num_docs"] == len(dev_urls) for entry in history)
    # the run records its world size; resuming it in one process is refused, naming both sizes
    assert training_state(run / "last")["train_state"]["world_size"] == 2
    with pytest.raises(SystemExit, match=r"the run trained under 2 process\(es\) and this one has 1; resume it "
                                         r"under 2 \(torchrun --nproc_per_node 2\)"):
        run_command("train", ["--resume", str(run), "--max_train_steps", "4"])
    assert budget_of(run) == (3, 3)


def test_torchrun_test_shards_the_split_and_merges_it_in_order(setup, evaluated_run, tmp_path, monkeypatch):
    """Decoding chunks of 5 windows (5 documents of one window): rank 0 decodes the eval split's
    chunks 0 and 2, rank 1 chunk 1; the merged predictions and scores are those of one
    process, byte for byte."""
    from bertkpe import evaluation

    wrapper = tmp_path / "small_chunks_test.py"
    wrapper.write_text(textwrap.dedent(f"""
        import json, os, runpy, sys
        from bertkpe import evaluation
        evaluation.DECODE_CHUNK = 5
        decode_chunk = evaluation.decode_chunk
        def logged_decode_chunk(model, documents, *args):
            print(f"rank {{os.environ['RANK']}} decodes {{json.dumps([doc.url for doc in documents])}}", file=sys.stderr)
            return decode_chunk(model, documents, *args)
        evaluation.decode_chunk = logged_decode_chunk
        runpy.run_path({str(ROOT / "scripts" / "test.py")!r}, run_name="__main__")
    """))
    flags = ["--preprocess_folder", str(setup["data"]), "--cached_features_dir", str(setup["cache"]),
             "--eval_checkpoint", str(evaluated_run / "best"), "--output_dir", str(tmp_path), "--no_cuda",
             "--per_gpu_test_batch_size", "2", "--splits", "eval", "--max_doc_tokens", "96"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(wrapper), *flags, "--run_name", "two"]
    result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    eval_urls = urls(setup["data"] / "kp20k" / "kp20k.eval.json")
    decoded = {rank: [url for line in re.findall(rf"rank {rank} decodes (\[.*\])", result.stderr)
                      for url in json.loads(line)] for rank in (0, 1)}
    assert decoded == {0: eval_urls[:5] + eval_urls[10:], 1: eval_urls[5:10]}
    monkeypatch.setattr(evaluation, "DECODE_CHUNK", 5)
    assert run_command("test", [*flags, "--run_name", "one"]) == 0
    for name in ("predictions.eval.jsonl", "metrics.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert urls(tmp_path / "one" / "predictions.eval.jsonl") == eval_urls


def test_torchrun_a_non_finite_loss_on_one_rank_stops_both(setup, tmp_path):
    """Rank 1's loss turns NaN at its second micro-batch: both ranks stop there with the
    same error, instead of rank 0 waiting for rank 1 in the gradient all-reduce."""
    wrapper = tmp_path / "nan_on_rank_1.py"
    wrapper.write_text(textwrap.dedent(f"""
        import os, runpy
        from bertkpe.models.tag import Bert2Tag
        head, calls = Bert2Tag.head, []
        def nan_head(self, words, batch, compute_loss):
            output = head(self, words, batch, compute_loss)
            if compute_loss and os.environ["RANK"] == "1":
                calls.append(1)
                if len(calls) == 2:
                    output.loss_terms = dict((name, term._replace(total=term.total * float("nan")))
                                             for name, term in output.loss_terms.items())
            return output
        Bert2Tag.head = nan_head
        runpy.run_path({str(ROOT / "scripts" / "train.py")!r}, run_name="__main__")
    """))
    argv = train_argv(setup, "nan_ddp", "--max_train_steps", "3", model_class="bert2tag", output_dir=tmp_path / "runs")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--monitor-interval", "5", str(wrapper), *argv]
    result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert re.search(r"loss is not finite on rank\(s\) \[1\]: first at step 2, micro-batch 1, on this process's "
                     r"documents \[[0-9, ]+\]; training stopped at step 2, before anything after step 1 was saved",
                     result.stderr), result.stderr[-4000:]
    assert "loss is not finite on rank(s) [1] between steps 2 and 2; on this process it stayed finite" in result.stderr
    assert not (tmp_path / "runs" / "nan_ddp" / "best").exists()


# ---------------------------------------------------------------- 3. mixed precision on the CPU

def test_bf16_autocast_on_cpu(setup):
    run = setup["runs"] / "bf16"
    assert run_command("train", train_argv(setup, run.name, "--max_train_steps", "2", "--bf16",
                                           "--no-test_after_training", model_class="bert2joint")) == 0
    losses = logged_losses(run / "train.log")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert budget_of(run) == (2, 2)
    assert all(tensor.dtype == torch.float32 for tensor in weights(run / "best").values())


def test_fp16_without_cuda_is_refused_before_anything_runs(setup, tmp_path):
    """A flag that cannot do what it says is refused, not turned into float32 with a warning."""
    with pytest.raises(SystemExit, match=r"--fp16 needs CUDA, which this process does not have: use --bf16"):
        run_command("train", train_argv(setup, "fp16", "--max_train_steps", "1", "--fp16", model_class="bert2tag",
                                        output_dir=tmp_path))
    assert not (tmp_path / "fp16").exists()


# ---------------------------------------------------------------- 4. SIGKILL and --resume

def test_killed_run_resumes_to_the_same_weights(setup, tmp_path):
    steps = 12
    common = ["--max_train_steps", str(steps), "--save_every", "2", "--gradient_accumulation_steps", "2",
              "--no-test_after_training", "--max_token", "64"]
    # A: uninterrupted (in process).
    first = tmp_path / "a"
    assert run_command("train", train_argv(setup, "run", *common, model_class="bert2chunk", output_dir=first)) == 0
    # B: the same run in a subprocess, slowed after each optimizer step so that it can be
    # caught mid-way, killed with SIGKILL once last/ holds step >= 4, then resumed.
    wrapper = tmp_path / "slow_train.py"
    wrapper.write_text(textwrap.dedent(f"""
        import runpy, time
        from bertkpe import training
        optimizer_step = training.optimizer_step
        def slow_optimizer_step(*args):
            grad_norm = optimizer_step(*args)
            time.sleep(0.4)
            return grad_norm
        training.optimizer_step = slow_optimizer_step
        runpy.run_path({str(ROOT / "scripts" / "train.py")!r}, run_name="__main__")
    """))
    second, console = tmp_path / "b", tmp_path / "b.console"
    with open(console, "wb") as output:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen([sys.executable, str(wrapper),
                                    *train_argv(setup, "run", *common, model_class="bert2chunk", output_dir=second)],
                                   cwd=tmp_path, env=SUBPROCESS_ENV, stdout=output, stderr=subprocess.STDOUT)
    last = second / "run" / "last"
    deadline, killed_at = time.monotonic() + 180, None
    try:
        while killed_at is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                step = training_state(last)["train_state"]["step"]
            except (OSError, RuntimeError, EOFError):  # not written yet, or being swapped
                continue
            if step >= 4:
                process.send_signal(signal.SIGKILL)
                killed_at = step
    finally:
        if process.poll() is None and killed_at is None:
            process.kill()
        process.wait(timeout=60)
    assert killed_at is not None and process.returncode == -signal.SIGKILL, console.read_text()[-3000:]
    assert killed_at < steps
    assert run_command("train", ["--dataset_class", "kp20k", "--resume", str(second / "run")]) == 0
    resumed = (second / "run" / "train.log").read_text().split("resumed from ")[1].split("\n")[0]
    assert int(resumed.split(" at step ")[1].split()[0]) >= 4
    assert budget_of(second / "run") == budget_of(first / "run") == (steps, steps)
    assert same_weights(first / "run" / "last", second / "run" / "last", atol=1e-6)
    assert same_weights(first / "run" / "best", second / "run" / "best", atol=1e-6)
    best = [json.loads((run / "run" / "best_dev_metrics.json").read_text()) for run in (first, second)]
    assert best[0] == best[1]


def test_last_is_written_by_time_as_well(setup, tmp_path, monkeypatch):
    """The clock is looked at every 10 steps: with --save_every_minutes past at step 10, last/
    is written there as well as at the end of each 6-step epoch; with the default 30 minutes,
    only at the epochs' ends."""
    from bertkpe import training

    saved_at = []
    save_last = training.Keeper.save_last

    def recording_save_last(self):
        saved_at.append(self.training.state.step)
        return save_last(self)

    monkeypatch.setattr(training.Keeper, "save_last", recording_save_last)
    common = ["--max_train_steps", "12", "--no_eval", "--no-test_after_training", "--max_token", "48",
              "--max_doc_tokens", "48"]
    assert run_command("train", train_argv(setup, "by_time", *common, "--save_every_minutes", "1e-6",
                                           model_class="bert2tag", output_dir=tmp_path)) == 0
    assert saved_at == [6, 10, 12]
    saved_at.clear()
    assert run_command("train", train_argv(setup, "default", *common, model_class="bert2tag", output_dir=tmp_path)) == 0
    assert saved_at == [6, 12]
    assert json.loads((tmp_path / "default" / "options.json").read_text())["save_every_minutes"] == 30


def test_resume_keeps_saved_options_and_takes_a_new_budget(setup, tmp_path):
    run = tmp_path / "run"
    base = ["--no-test_after_training", "--no_eval", "--max_token", "48", "--max_doc_tokens", "48", "--bf16",
            "--attention_dropout", "0"]
    assert run_command("train", train_argv(setup, "run", "--max_train_steps", "2", *base, model_class="bert2tag",
                                           output_dir=tmp_path)) == 0
    assert budget_of(run) == (2, 2)
    # 6 steps an epoch: half an epoch is 3 steps; --bf16 is not repeated but kept
    assert run_command("train", ["--resume", str(run / "last"), "--max_train_epochs", "0.5"]) == 0
    assert budget_of(run) == (3, 3)
    resumed_log = (run / "train.log").read_text().split("resumed from")[1]
    assert "3 optimizer steps" in resumed_log and "autocast torch.bfloat16" in resumed_log
    assert json.loads((run / "last" / "config.json").read_text())["attention_probs_dropout_prob"] == 0


def test_a_run_saved_before_train_windows_attention_dropout_and_rank_loss_resumes_as_it_trained(setup, tmp_path):
    run = tmp_path / "old"
    assert run_command("train", train_argv(setup, "old", "--max_train_steps", "2", "--no-test_after_training",
                                           "--no_eval", output_dir=tmp_path)) == 0
    options = json.loads((run / "options.json").read_text())
    assert options["train_windows"] == 4 and options["attention_dropout"] is None and options["rank_loss"] == "margin"
    for name in ("train_windows", "attention_dropout", "rank_loss"):
        del options[name]
    (run / "options.json").write_text(json.dumps(options))
    assert run_command("train", ["--resume", str(run), "--max_train_steps", "3"]) == 0
    assert budget_of(run) == (3, 3)
    assert json.loads((run / "last" / "config.json").read_text())["attention_probs_dropout_prob"] == 0.1
    assert json.loads((run / "last" / "kpe_config.json").read_text())["rank_loss"] == "margin"


def test_softmax_rank_loss_trains_and_is_saved_with_the_head(setup, tmp_path):
    assert run_command("train", train_argv(setup, "run", "--max_train_steps", "2", "--no-test_after_training",
                                           "--rank_loss", "softmax", output_dir=tmp_path)) == 0
    for name in ("best", "last"):
        assert json.loads((tmp_path / "run" / name / "kpe_config.json").read_text())["rank_loss"] == "softmax"
    assert all(math.isfinite(loss) for loss in logged_losses(tmp_path / "run" / "train.log"))
    assert run_command("train", ["--resume", str(tmp_path / "run"), "--max_train_steps", "3"]) == 0
    assert json.loads((tmp_path / "run" / "last" / "kpe_config.json").read_text())["rank_loss"] == "softmax"


def test_softmax_rank_loss_is_refused_for_heads_without_a_rank_loss(setup, tmp_path):
    argv = train_argv(setup, "run", "--max_train_steps", "1", "--rank_loss", "softmax", model_class="bert2tag",
                      output_dir=tmp_path)
    with pytest.raises(SystemExit, match="--rank_loss applies to bert2rank and bert2joint, not bert2tag"):
        run_command("train", argv)
    assert not (tmp_path / "run").exists()


def trained_weights_after_each_step(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Records the trained (not averaged) weights after every optimizer step of in-process runs."""
    from bertkpe import training

    recorded: list[dict[str, torch.Tensor]] = []
    optimizer_step = training.optimizer_step

    def recording_step(model, *args):
        grad_norm = optimizer_step(model, *args)
        recorded.append({name: tensor.detach().clone() for name, tensor in model.state_dict().items()})
        return grad_norm

    monkeypatch.setattr(training, "optimizer_step", recording_step)
    return recorded


def test_ema_decay_keeps_the_moving_average_and_resumes_the_trained_weights(setup, tmp_path, monkeypatch):
    trained = trained_weights_after_each_step(monkeypatch)
    argv = train_argv(setup, "run", "--max_train_steps", "3", "--ema_decay", "0.5", "--no_eval",
                      "--no-test_after_training", output_dir=tmp_path)
    assert run_command("train", argv) == 0
    assert len(trained) == 3
    average = trained[0]  # the first step's weights start the average
    for updates, step in enumerate(trained[1:], start=1):
        decay = min(0.5, (1 + updates) / (10 + updates))  # warmed up: 2/11, then 3/12
        average = {name: decay * average[name] + (1 - decay) * step[name] if step[name].is_floating_point()
                   else step[name] for name in step}
    best, last = weights(tmp_path / "run" / "best"), weights(tmp_path / "run" / "last")
    encoder_weight = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained[1][encoder_weight], trained[2][encoder_weight])
    for name in best:
        assert torch.allclose(best[name], average[name], rtol=1e-6, atol=1e-7), name
        assert torch.equal(last[name], trained[2][name]), name  # last/ resumes the trained weights
    assert "moving average of the weights (--ema_decay 0.5)" in (tmp_path / "run" / "train.log").read_text()
    assert int(training_state(tmp_path / "run" / "last")["averaged"]["n_averaged"]) == 3


def test_ema_decay_resumed_run_ends_where_an_uninterrupted_one_does(setup, tmp_path, monkeypatch):
    from bertkpe import training

    # without dev evaluation best/ is the average at the end
    common = ["--max_train_steps", "4", "--ema_decay", "0.7", "--save_every", "1", "--no-test_after_training",
              "--no_eval", "--learning_rate", "1e-3", "--warmup_proportion", "0"]
    assert run_command("train", train_argv(setup, "run", *common, output_dir=tmp_path / "a")) == 0
    optimizer_step = training.optimizer_step

    def crash_at_the_third_step(model, parts, max_grad_norm):
        if parts.state.step == 2:
            raise KeyboardInterrupt
        return optimizer_step(model, parts, max_grad_norm)

    monkeypatch.setattr(training, "optimizer_step", crash_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        run_command("train", train_argv(setup, "run", *common, output_dir=tmp_path / "b"))
    assert budget_of(tmp_path / "b" / "run")[0] == 2
    monkeypatch.setattr(training, "optimizer_step", optimizer_step)
    assert run_command("train", ["--resume", str(tmp_path / "b" / "run")]) == 0
    for name in ("best", "last"):
        assert same_weights(tmp_path / "a" / "run" / name, tmp_path / "b" / "run" / name, atol=1e-6), name
    assert not same_weights(tmp_path / "b" / "run" / "best", tmp_path / "b" / "run" / "last", atol=1e-4)


@pytest.mark.parametrize("decay", ["1", "-0.1"])
def test_ema_decay_outside_0_to_1_is_refused(setup, tmp_path, decay):
    argv = train_argv(setup, "run", "--max_train_steps", "1", "--ema_decay", decay, output_dir=tmp_path)
    with pytest.raises(SystemExit, match=rf"--ema_decay must be at least 0 and less than 1 \(0: no average\), "
                                         rf"got {float(decay)}"):
        run_command("train", argv)
    assert not (tmp_path / "run").exists()


def test_chunk_loss_weight_trains_bert2joint_and_is_refused_for_other_heads(setup, tmp_path):
    assert run_command("train", train_argv(setup, "run", "--max_train_steps", "2", "--no-test_after_training",
                                           "--chunk_loss_weight", "0.3", output_dir=tmp_path)) == 0
    for name in ("best", "last"):
        assert json.loads((tmp_path / "run" / name / "kpe_config.json").read_text())["chunk_loss_weight"] == 0.3
    for head in ("bert2rank", "bert2tag"):
        argv = train_argv(setup, head, "--max_train_steps", "1", "--chunk_loss_weight", "0.3", model_class=head,
                          output_dir=tmp_path)
        with pytest.raises(SystemExit, match=f"--chunk_loss_weight applies to bert2joint, not {head}"):
            run_command("train", argv)
    with pytest.raises(SystemExit, match="--chunk_loss_weight must be at least 0, got -0.5"):
        run_command("train", train_argv(setup, "negative", "--max_train_steps", "1", "--chunk_loss_weight", "-0.5",
                                        output_dir=tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_train_splits_train_and_dev_fit_one_model_on_both(setup, tmp_path):
    # 24 train and 12 dev documents in micro-batches of 4: an epoch of train is 6 steps, of both 9
    argv = train_argv(setup, "run", "--max_train_epochs", "1", "--train_splits", "train", "dev", "--no_eval",
                      model_class="bert2tag", output_dir=tmp_path)
    assert run_command("train", argv) == 0
    assert budget_of(tmp_path / "run") == (9, 9)
    assert "training documents (train + dev): 36 usable" in (tmp_path / "run" / "train.log").read_text()
    assert json.loads((tmp_path / "run" / "options.json").read_text())["train_splits"] == ["train", "dev"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics) == ["eval"]  # dev was trained on: no score, no predictions
    assert not (tmp_path / "run" / "predictions.dev.jsonl").exists()
    check_predictions(tmp_path / "run" / "predictions.eval.jsonl", setup["data"] / "kp20k" / "kp20k.eval.json", 10)


def test_train_splits_matched_with_different_stemmers_are_refused(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup["data"] / "kp20k", data / "kp20k")
    dev = data / "kp20k" / "kp20k.dev.json"
    dev.write_text("".join(json.dumps({**row, "stemmer": "none"}) + "\n" for row in read_jsonl(dev)))
    argv = train_argv(setup, "run", "--max_train_steps", "1", "--train_splits", "train", "dev", "--no_eval",
                      "--preprocess_folder", str(data), model_class="bert2tag", output_dir=tmp_path)
    with pytest.raises(SystemExit, match=r"the splits train and dev of kp20k were matched with different stemmers "
                                         r"\(none, porter\): preprocess them together"):
        run_command("train", argv)


def test_train_splits_with_dev_are_refused_while_dev_is_evaluated(setup, tmp_path):
    argv = train_argv(setup, "run", "--max_train_steps", "1", "--train_splits", "train", "dev",
                      model_class="bert2tag", output_dir=tmp_path)
    with pytest.raises(SystemExit, match="trains on the dev split, so dev evaluation would score training "
                                         "documents: add --no_eval"):
        run_command("train", argv)
    assert not (tmp_path / "run").exists()


def test_a_run_name_in_use_is_refused_not_appended_to(setup, tmp_path):
    argv = train_argv(setup, "run", "--max_train_steps", "1", "--no-test_after_training", "--no_eval",
                      "--max_token", "48", "--max_doc_tokens", "48", model_class="bert2tag", output_dir=tmp_path)
    assert run_command("train", argv) == 0
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "run").rglob("*")}
    without_class = argv[:argv.index("--dataset_class")] + argv[argv.index("--dataset_class") + 2:]
    with pytest.raises(SystemExit, match=r"--dataset_class is required \(unless continuing a run with --resume\)"):
        run_command("train", without_class)
    with pytest.raises(SystemExit, match=r"already holds a run: continue it with --resume .*run"):
        run_command("train", argv)
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "run").rglob("*")} == before


# ---------------------------------------------------------------- 5. and 6. best checkpoint, test command

@pytest.fixture(scope="module")
def evaluated_run(setup):
    """Evaluated every step, with a copy of every evaluated checkpoint, at a learning rate
    high enough for the dev scores to move."""
    run = setup["runs"] / "every_step"
    argv = train_argv(setup, run.name, "--max_train_steps", "4", "--eval_every", "1", "--save_checkpoint",
                      "--learning_rate", "3e-3", "--head_learning_rate", "3e-2", "--warmup_proportion", "0",
                      model_class="bert2joint")
    assert run_command("train", argv) == 0
    return run


def test_best_checkpoint_is_the_best_dev_evaluation(evaluated_run):
    run = evaluated_run
    history = read_jsonl(run / "eval_history.jsonl")
    assert [entry["tag"] for entry in history] == ["step_1", "step_2", "step_3", "final"]
    assert [entry["step"] for entry in history] == [1, 2, 3, 4]
    best_score = max(entry["F1@5"] for entry in history)
    best = next(entry for entry in history if entry["F1@5"] == best_score)  # the first of equals
    best_metrics = json.loads((run / "best_dev_metrics.json").read_text())
    assert best_metrics["step"] == best["step"]
    assert best_metrics == {key: value for key, value in best.items() if key not in ("epoch", "tag")}
    assert same_weights(run / "best", run / best["tag"])
    for entry in history:
        if entry["F1@5"] != best_score:
            assert not same_weights(run / "best", run / entry["tag"])
    state = training_state(run / "last")["train_state"]
    assert (state["best_step"], state["best_score"]) == (best["step"], best_score)
    # metrics.json carries the dev scores of the evaluation that chose it (test.py re-decodes: see below)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dev"] == {key: value for key, value in best_metrics.items() if key != "step"}
    scalars = tensorboard_scalars(run / "tensorboard")
    assert [step for step, _ in scalars["dev/F1_5"]] == [1, 2, 3, 4]  # tensorboardX writes "@" as "_"
    assert [value for _, value in scalars["dev/F1_5"]] == pytest.approx([entry["F1@5"] for entry in history])


def test_best_checkpoint_follows_the_dataset_metric(setup, monkeypatch):
    """Scripted dev scores: F1@5 (the kp20k metric) peaks at step 2 and ties there at step
    4; F1@3 peaks at step 3. The best checkpoint is step 2's."""
    from bertkpe import training

    script = iter([(0.1, 0.1), (0.3, 0.1), (0.2, 0.9), (0.3, 0.1)])
    evaluate_split = training.evaluate_split

    def scripted(model, documents, data, split, *args):
        scores = evaluate_split(model, documents, data, split, *args)
        if split == "dev" and model.training:  # evaluations during training, not the final test
            scores["F1@5"], scores["F1@3"] = next(script)
        return scores

    monkeypatch.setattr(training, "evaluate_split", scripted)
    run = setup["runs"] / "scripted_best"
    argv = train_argv(setup, run.name, "--max_train_steps", "4", "--eval_every", "1", "--save_checkpoint",
                      "--learning_rate", "1e-3", "--no-test_after_training", model_class="bert2tag")
    assert run_command("train", argv) == 0
    assert [entry["F1@5"] for entry in read_jsonl(run / "eval_history.jsonl")] == [0.1, 0.3, 0.2, 0.3]
    best = json.loads((run / "best_dev_metrics.json").read_text())
    assert (best["step"], best["F1@5"], best["F1@3"]) == (2, 0.3, 0.1)
    assert same_weights(run / "best", run / "step_2")
    assert not same_weights(run / "best", run / "final") and not same_weights(run / "best", run / "step_3")


def test_test_script_reproduces_dev_metrics(setup, evaluated_run, tmp_path):
    run = evaluated_run
    command = [sys.executable, str(ROOT / "scripts" / "test.py"), "--eval_checkpoint", str(run / "best"),
               "--dataset_class", "kp20k", "--preprocess_folder", str(setup["data"]),
               "--cached_features_dir", str(setup["cache"]), "--feature_workers", "1", "--no_cuda",
               "--output_dir", str(tmp_path), "--run_name", "test", "--max_doc_tokens", "96"]  # as trained
    result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    best_metrics = json.loads((run / "best_dev_metrics.json").read_text())
    assert metrics["dev"] == {key: value for key, value in best_metrics.items() if key != "step"}
    assert metrics["eval"] == json.loads((run / "metrics.json").read_text())["eval"]
    for split in ("dev", "eval"):
        check_predictions(out / f"predictions.{split}.jsonl", setup["data"] / "kp20k" / f"kp20k.{split}.json", 10)
        # default test batch size (32) differs from training's (8): same phrases in the same order;
        # scores agree to float32 rounding (BLAS kernels depend on the padded batch shape)
        tested, trained = read_jsonl(out / f"predictions.{split}.jsonl"), read_jsonl(run / f"predictions.{split}.jsonl")
        phrases = [[(row["url"], row["KeyPhrases"]) for row in rows] for rows in (tested, trained)]
        assert phrases[0] == phrases[1]
        for tested_row, trained_row in zip(tested, trained):
            assert tested_row["Scores"] == pytest.approx(trained_row["Scores"], rel=1e-5, abs=1e-6)
    assert (out / "test.log").is_file()


def test_openkp_eval_has_predictions_only(setup, tmp_path):
    run = setup["runs"] / "openkp"
    assert run_command("train", train_argv(setup, run.name, "--max_train_steps", "1", dataset="openkp",
                                           model_class="bert2span")) == 0
    check_run_folder(run, setup, dataset="openkp")
    assert "F1@3" in json.loads((run / "best_dev_metrics.json").read_text())
    argv = ["--eval_checkpoint", str(run / "best"), "--dataset_class", "openkp",
            "--preprocess_folder", str(setup["data"]), "--cached_features_dir", str(setup["cache"]),
            "--feature_workers", "1", "--no_cuda", "--output_dir", str(tmp_path), "--run_name", "test",
            "--per_gpu_test_batch_size", "8", "--max_doc_tokens", "96"]  # read as in training
    assert run_command("test", argv) == 0
    out = tmp_path / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["dev"]
    assert metrics["dev"] == json.loads((run / "metrics.json").read_text())["dev"]
    for split in ("dev", "eval"):
        check_predictions(out / f"predictions.{split}.jsonl", setup["data"] / "openkp" / f"openkp.{split}.json", 5)
    assert "eval: no reference file" in (out / "test.log").read_text()


# ---------------------------------------------------------------- 7. failures are loud, short documents decode

def test_nan_loss_raises(setup, monkeypatch):
    from bertkpe.models.tag import Bert2Tag

    head = Bert2Tag.head

    def nan_head(self, words, batch, compute_loss):
        output = head(self, words, batch, compute_loss)
        if compute_loss:
            output.loss_terms = {name: term._replace(total=term.total * float("nan"))
                                 for name, term in output.loss_terms.items()}
        return output

    monkeypatch.setattr(Bert2Tag, "head", nan_head)
    with pytest.raises(FloatingPointError, match=r"loss is not finite: first at step 1, micro-batch 0, on this "
                                                 r"process's documents \[\d+(, \d+)*\]; training stopped at step 1"):
        run_command("train", train_argv(setup, "nan", "--max_train_steps", "2", model_class="bert2tag"))
    assert not (setup["runs"] / "nan" / "best").exists()
    # read at logging steps (every 3) and before a save (every 2): caught at step 2, before its save
    with pytest.raises(FloatingPointError, match=r"first at step 1, micro-batch 0, .*training stopped at step 2, "
                                                 r"before anything after step 0 was saved"):
        run_command("train", train_argv(setup, "nan_later", "--max_train_steps", "5", "--save_every", "2",
                                        model_class="bert2tag") + ["--display_iter", "3"])
    assert not (setup["runs"] / "nan_later" / "last").exists()


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_short_documents_decode_to_what_they_have(model_class):
    from bertkpe.decoding import RankedPhrases
    from bertkpe.evaluation import decode_documents
    from bertkpe.runtime import Runtime

    records = [make_record(["Graphs"], [["graphs"]], url="one"),
               make_record(["Sparse", "graphs"], url="two"),
               make_record(["sparse", "Sparse", "."], url="repeat"),
               make_record([".", ";"], url="punctuation"),
               make_record([], url="empty"),
               make_record("a long enough document about sparse graphs".split(), url="long")]
    documents = featurize(records, max_token=32)
    model = tiny_model(model_class, layers=1)
    ranked = list(decode_documents(model, documents, Runtime(device=torch.device("cpu")), batch_size=4, top_k=5))
    assert all(isinstance(item, RankedPhrases) for item in ranked)
    assert [item.url for item in ranked] == ["one", "two", "repeat", "punctuation", "empty", "long"]
    phrases = {item.url: item.phrases for item in ranked}
    assert phrases["one"] == [["Graphs"]]
    assert sorted(map(tuple, phrases["two"])) == [("Sparse",), ("Sparse", "graphs"), ("graphs",)]
    assert sorted(map(tuple, phrases["repeat"])) == [("sparse",), ("sparse", "Sparse")]
    assert phrases["punctuation"] == phrases["empty"] == []
    assert len(phrases["long"]) == 5
    assert model.training  # decoding restores the mode it found


def test_training_with_tiny_dev_documents(setup):
    run = setup["runs"] / "short"
    assert run_command("train", train_argv(setup, run.name, "--max_train_steps", "1", "--dataset_name", "short",
                                           model_class="bert2span")) == 0
    rows = {row["url"]: row for row in read_jsonl(run / "predictions.dev.jsonl")}
    assert list(rows) == urls(setup["data"] / "short" / "short.dev.json")
    assert rows["one-word"]["KeyPhrases"] == [["Graphs"]]
    assert sorted(map(tuple, rows["two-words"]["KeyPhrases"])) == [("Sparse",), ("Sparse", "graphs"), ("graphs",)]
    assert rows["punctuation"]["KeyPhrases"] == rows["empty"]["KeyPhrases"] == []
    assert json.loads((run / "metrics.json").read_text())["dev"]["num_docs"] == 8


# ---------------------------------------------------------------- 8. atomic checkpoints

def small_checkpoint(path: Path, seed: int):
    from bertkpe.checkpoints import save_checkpoint
    from helpers import default_tokenizer

    model = tiny_model("bert2tag", seed=seed, layers=1, hidden=16)
    save_checkpoint(path, model, default_tokenizer(), {"max_token": 32}, {"train_state": {"step": seed}})
    return model


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from bertkpe import checkpoints
    from bertkpe.models import base, load_model
    from helpers import default_tokenizer

    directory = tmp_path / "last"
    small_checkpoint(directory, seed=1)
    before = weights(directory)
    newer = tiny_model("bert2tag", seed=2, layers=1, hidden=16)
    staged = []

    def failing_save_file(tensors, filename, metadata=None):
        staged.append(Path(filename).parent)
        assert Path(filename).parent.is_dir()  # the staging folder exists and is being filled
        raise OSError("disk full")

    monkeypatch.setattr(base, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(directory, newer, default_tokenizer(), {"max_token": 32}, {"train_state": {}})
    assert staged and staged[0] != directory
    assert checkpoints.resolve_checkpoint(directory) == directory
    assert weights(directory).keys() == before.keys()
    assert all(torch.equal(weights(directory)[name], before[name]) for name in before)
    assert checkpoints.load_training_state(directory)["train_state"] == {"step": 1}
    load_model(directory)  # loadable as is
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]  # no staging folder left behind


def test_a_save_removes_staging_folders_a_killed_save_left(tmp_path):
    from bertkpe import checkpoints

    stale = tmp_path / ".last.tmp-k1ll3d"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    other = tmp_path / ".best.tmp-k1ll3d"  # another checkpoint's staging folder is not this save's business
    other.mkdir()
    small_checkpoint(tmp_path / "last", seed=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".best.tmp-k1ll3d", "last"]
    assert checkpoints.load_training_state(tmp_path / "last")["train_state"] == {"step": 1}


def test_interrupted_swap_keeps_a_loadable_checkpoint(tmp_path, monkeypatch):
    """A save killed between its two renames leaves only `last.old`; the next save must
    not delete it before the new copy is in place."""
    from bertkpe import checkpoints
    from bertkpe.models import load_model

    directory = tmp_path / "last"
    small_checkpoint(directory, seed=1)
    directory.rename(tmp_path / "last.old")  # as left by a kill between the renames
    assert checkpoints.resolve_checkpoint(directory) == tmp_path / "last.old"
    replace = os.replace

    def failing_replace(source, target):
        if Path(target) == directory:
            raise OSError("killed")
        return replace(source, target)

    monkeypatch.setattr(checkpoints.os, "replace", failing_replace)
    with pytest.raises(OSError, match="killed"):
        small_checkpoint(directory, seed=2)
    monkeypatch.undo()
    resolved = checkpoints.resolve_checkpoint(directory)
    assert checkpoints.load_training_state(resolved)["train_state"] == {"step": 1}
    load_model(resolved)
    small_checkpoint(directory, seed=3)
    assert checkpoints.resolve_checkpoint(directory) == directory
    assert checkpoints.load_training_state(directory)["train_state"] == {"step": 3}
    assert not (tmp_path / "last.old").exists()
