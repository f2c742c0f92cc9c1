"""The training step on its own: a step's gradient whatever the packing and the number of
processes, fp16 steps the gradient scaler skips, and the device synchronisations a step
makes (none but at logging steps)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from helpers import FIXTURES, MODEL_CLASSES, ROOT, SUBPROCESS_ENV, featurize, kp20k_records, tiny_model, train_argv

pytestmark = pytest.mark.usefixtures("one_thread")


def mixed_documents():
    """Eight real abstracts cut to one to seven windows of 24 sub-tokens."""
    records = kp20k_records(FIXTURES / "kp20k" / "kp20k_testing.json", 8)
    for record, words in zip(records, (8, 200, 15, 60, 30, 11, 90, 45)):
        record["doc_words"] = record["doc_words"][:words]
    features = featurize(records, max_token=24, max_doc_tokens=120, window_overlap=6)
    assert sorted({doc.num_windows for doc in features}) == [1, 2, 3, 7]
    assert all(len(doc.gold_spans) for doc in features)
    return features


def step_gradients(model, micro_batches, runtime) -> dict[str, torch.Tensor]:
    from bertkpe.training import forward_backward

    model.zero_grad(set_to_none=True)
    forward_backward(model, micro_batches, torch.amp.GradScaler("cpu", enabled=False), runtime)
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}


def same_gradients(first: dict, second: dict) -> bool:
    """Equal to float tolerance: 1e-4 relative, and 1e-5 of the largest gradient absolute
    (some gradients are zero but for rounding, such as an attention key's bias)."""
    scale = max(value.abs().max() for value in first.values())
    return first.keys() == second.keys() and all(
        torch.allclose(first[name], second[name], rtol=1e-4, atol=1e-5 * scale) for name in first)


TWO_RANKS = """
import json, os, sys
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from helpers import MODEL_CLASSES, tiny_model
from test_training_step import mixed_documents, step_gradients
from bertkpe.data.batching import collate
from bertkpe.runtime import setup_runtime
torch.set_num_threads(1)
runtime = setup_runtime(no_cuda=True)
documents = mixed_documents()[runtime.rank * 4:(runtime.rank + 1) * 4]
batches = [collate(documents[:1]), collate(documents[1:])]  # 1 + 3 documents on each rank
for model_class in MODEL_CLASSES:
    model = tiny_model(model_class, dropout=0.0).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    gradients = step_gradients(ddp, batches, runtime)
    if runtime.rank == 0:
        torch.save({{name.removeprefix("module."): value for name, value in gradients.items()}},
                   os.path.join({out!r}, model_class + ".pt"))
dist.destroy_process_group()
"""


def test_a_steps_gradient_is_the_mean_over_its_items_whatever_the_packing(tmp_path):
    """One micro-batch of 8 documents, 8 micro-batches of one, and 2 gloo ranks of 1 + 3: the
    same gradient for every head (dropout off, so the three are the same computation)."""
    from bertkpe.data.batching import collate
    from bertkpe.runtime import Runtime

    documents = mixed_documents()
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS.format(tests=str(ROOT / "tests"), out=str(tmp_path)))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script)], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runtime = Runtime(device=torch.device("cpu"))
    for model_class in MODEL_CLASSES:
        model = tiny_model(model_class, dropout=0.0).train()
        together = step_gradients(model, [collate(documents)], runtime)
        one_by_one = step_gradients(model, [collate([doc]) for doc in documents], runtime)
        assert same_gradients(together, one_by_one), model_class
        assert same_gradients(together, torch.load(tmp_path / f"{model_class}.pt")), model_class
        # what a mean over each micro-batch gave, packed 1 + 7: the document alone weighed as
        # much as the seven others together
        model.zero_grad(set_to_none=True)
        for micro_batch in (documents[:1], documents[1:]):
            (model(collate(micro_batch), compute_loss=True).loss / 2).backward()
        per_micro_batch = {name: param.grad.clone() for name, param in model.named_parameters()
                           if param.grad is not None}
        assert not same_gradients(together, per_micro_batch), model_class


def test_a_step_the_fp16_scaler_skips_moves_neither_the_schedule_nor_the_average():
    from transformers import get_linear_schedule_with_warmup
    from torch.optim.swa_utils import AveragedModel

    from bertkpe.checkpoints import Training, TrainState
    from bertkpe.data.batching import collate
    from bertkpe.runtime import Runtime
    from bertkpe.training import WarmedUpAverage, forward_backward, optimizer_step

    model = tiny_model("bert2tag", dropout=0.0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    training = Training(optimizer, get_linear_schedule_with_warmup(optimizer, 0, 10),
                        torch.amp.GradScaler("cpu", enabled=True),
                        AveragedModel(model, multi_avg_fn=WarmedUpAverage(0.9)), TrainState())
    runtime = Runtime(device=torch.device("cpu"))
    batch = collate(mixed_documents()[:2])

    def step(poison: bool) -> None:
        forward_backward(model, [batch], training.scaler, runtime)
        if poison:
            next(model.parameters()).grad[0, 0] = float("inf")
        optimizer_step(model, training, 1.0)

    step(poison=False)
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    averaged = {name: value.clone() for name, value in training.averaged.module.state_dict().items()}
    scale, rate = training.scaler.get_scale(), training.scheduler.get_last_lr()
    step(poison=True)
    assert training.scaler.get_scale() == scale / 2  # the scaler saw it and skipped the step
    assert training.scheduler.last_epoch == 1 and training.scheduler.get_last_lr() == rate
    assert int(training.averaged.n_averaged) == 1 and training.averaged.multi_avg_fn.updates == 1
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in weights.items())
    assert all(torch.equal(value, training.averaged.module.state_dict()[name]) for name, value in averaged.items())
    step(poison=False)
    assert training.scheduler.last_epoch == 2 and int(training.averaged.n_averaged) == 2
    assert training.averaged.multi_avg_fn.updates == 2
    assert not all(torch.equal(value, model.state_dict()[name]) for name, value in weights.items())


# --------------------------------------------------------------------------- synchronisations

class SyncCounter:
    """Counts the calls that make the host wait for the device (on a GPU): reading a tensor's
    value (item, tolist, bool, int, float, numpy, cpu), nonzero and unique (their size
    depends on values), and indexing with a boolean mask; each with the code that made it.
    Calls inside torch and transformers are theirs (AdamW reads its step counts, which it
    keeps on the CPU; the moving average checks its count, see the README)."""

    METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "numpy", "cpu", "nonzero", "unique")

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.active = False
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self.wrap(getattr(torch.Tensor, name)))
        for name in ("nonzero", "unique", "masked_select"):
            monkeypatch.setattr(torch, name, self.wrap(getattr(torch, name)))
        getitem = torch.Tensor.__getitem__

        def masked_getitem(tensor, index):
            if self.active and any(isinstance(part, torch.Tensor) and part.dtype == torch.bool
                                   for part in (index if isinstance(index, tuple) else (index,))):
                self.record("boolean index")
            return getitem(tensor, index)

        monkeypatch.setattr(torch.Tensor, "__getitem__", masked_getitem)

    def wrap(self, function):
        def counted(*args, **kwargs):
            if self.active:
                self.record(getattr(function, "__name__", "call"))
            return function(*args, **kwargs)
        return counted

    def record(self, what: str) -> None:
        frame = sys._getframe(2)  # the code that called the tensor method or torch function
        self.calls.append(f"{what} in {frame.f_code.co_filename}:{frame.f_lineno}")

    def counting(self, function):
        def counted(*args, **kwargs):
            self.active = True
            try:
                return function(*args, **kwargs)
            finally:
                self.active = False
        return counted

    def ours(self) -> list[str]:
        return [call for call in self.calls if f" in {ROOT / 'bertkpe'}" in call]


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_a_step_makes_no_device_synchronisation(setup, tmp_path, monkeypatch, model_class):
    """Counted inside every step's forward/backward and optimizer step of a run: none of
    bertkpe's. A logging step reads everything in one transfer."""
    from bertkpe import training
    from bertkpe.cli import run_command

    def argv(name: str, display_iter: int) -> list[str]:
        return train_argv(setup, name, "--max_train_steps", "5", "--gradient_accumulation_steps", "2", "--no_eval",
                          "--no-test_after_training", model_class=model_class, output_dir=tmp_path) + \
            ["--display_iter", str(display_iter), "--max_token", "32", "--max_doc_tokens", "200",
             "--window_overlap", "8"]

    counter = SyncCounter(monkeypatch)
    monkeypatch.setattr(training, "forward_backward", counter.counting(training.forward_backward))
    monkeypatch.setattr(training, "optimizer_step", counter.counting(training.optimizer_step))
    assert run_command("train", argv("steps", 100)) == 0
    assert counter.ours() == [], counter.ours()[:10]
    counter.calls.clear()
    monkeypatch.setattr(training.StepLog, "flush", counter.counting(training.StepLog.flush))
    assert run_command("train", argv("logged", 2)) == 0
    assert [call.split()[0] for call in counter.ours()] == ["tolist"] * 3, counter.ours()  # steps 2, 4 and 5
    log = (tmp_path / "logged" / "train.log").read_text()
    assert [line.split(" loss ")[0].split("INFO ")[1] for line in log.splitlines() if " loss " in line] == \
        ["step 2/5 epoch 0", "step 4/5 epoch 0", "step 5/5 epoch 0"]


def test_the_logged_loss_is_the_mean_step_loss(setup, tmp_path):
    """Logged every 2 steps: the mean of the two steps' losses, each the step's mean over its items."""
    from bertkpe.cli import run_command
    from test_training import tensorboard_scalars

    argv = train_argv(setup, "logged", "--max_train_steps", "4", "--no_eval", "--no-test_after_training",
                      model_class="bert2tag", output_dir=tmp_path) + ["--display_iter", "2"]
    assert run_command("train", argv) == 0
    losses = [float(line.split(" loss ")[1].split()[0]) for line in
              (tmp_path / "logged" / "train.log").read_text().splitlines() if " loss " in line]
    per_step = [value for _, value in tensorboard_scalars(tmp_path / "logged" / "tensorboard")["train/loss"]]
    assert len(per_step) == 4 and losses == pytest.approx([sum(per_step[:2]) / 2, sum(per_step[2:]) / 2], rel=1e-3)
    assert json.loads((tmp_path / "logged" / "options.json").read_text())["display_iter"] == 2
