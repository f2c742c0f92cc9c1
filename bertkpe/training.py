"""The training loop and the `bertkpe train` command.

One readable loop: length-grouped micro-batches, gradient accumulation, autocast,
one clip and one optimizer step per accumulation group, exactly `max_train_steps`
steps, dev evaluation at each epoch end (and every `--eval_every` steps), the best
checkpoint kept by the dataset's metric, and a resumable `last/` checkpoint. With
`--ema_decay` the weights evaluated and kept are a moving average of the trained ones.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from bertkpe import config
from bertkpe.checkpoints import load_training_state, resolve_checkpoint, rng_state, save_checkpoint, set_rng_state
from bertkpe.data.batching import collate
from bertkpe.data.features import FeatureOptions
from bertkpe.data.sampling import Item, TrainingDocuments, WindowBatchSampler
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.dataset_classes import REFERENCE_BATCH, dataset_class
from bertkpe.evaluation import evaluate_split, format_split_scores, split_store, write_json
from bertkpe.models import KeyphraseModel, build_model, load_model, model_type
from bertkpe.models.base import load_weights
from bertkpe.runtime import Runtime, seed_everything, set_precision, setup_logging, setup_runtime, teardown_runtime

logger = logging.getLogger("bertkpe")

SAVE_CLOCK_STEPS = 10  # optimizer steps between two looks at the clock for --save_every_minutes


@dataclass
class TrainState:
    """Where training is; saved with `last/` so a resumed run continues exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    best_score: float = -1.0
    best_step: int = -1
    world_size: int = 1  # processes the run trains under: a resumed run must keep it


@dataclass(frozen=True)
class ScheduledStep:
    """One optimizer step's micro-batches (lists of document indices), the epoch they come
    from and the position of the first in it. `group_size` divides each loss: it is the
    size of the whole accumulation group, also where a resumed run starts inside one."""

    epoch: int
    first_position: int
    micro_batches: list[list[Item]]
    group_size: int

    @property
    def end_position(self) -> int:
        """Micro-batches of the epoch consumed once this step is done."""
        return self.first_position + len(self.micro_batches)


def step_schedule(epoch_micro_batches: Callable[[int], list[list[Item]]], accumulation: int, epoch: int,
                  position: int) -> Iterator[ScheduledStep]:
    """The optimizer steps, without end, from micro-batch `position` of `epoch` on: each
    epoch's micro-batches in groups of `accumulation`, the last group of an epoch taking
    what is left. The one place micro-batches are formed, with `epoch_micro_batches`, and
    only when an epoch's first step is asked for."""
    while True:
        micro_batches = epoch_micro_batches(epoch)
        for group_start in range(0, len(micro_batches), accumulation):
            group_end = min(group_start + accumulation, len(micro_batches))
            if group_end <= position:
                continue  # taken before the run was resumed
            first = max(group_start, position)
            yield ScheduledStep(epoch, first, micro_batches[first:group_end], group_end - group_start)
        epoch, position = epoch + 1, 0


def parameter_groups(model: KeyphraseModel, learning_rate: float, head_learning_rate: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights; the head may
    have its own learning rate. The first group is the encoder's (its rate is logged)."""
    no_decay = {id(param) for module in model.modules()
                if isinstance(module, (nn.LayerNorm, nn.Embedding)) or "norm" in type(module).__name__.lower()
                for param in module.parameters(recurse=False)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (name.endswith("bias") or id(param) in no_decay)
        groups.setdefault((name.startswith("encoder."), decay), []).append(param)
    return [{"params": params, "lr": learning_rate if is_encoder else head_learning_rate,
             "weight_decay": weight_decay if decay else 0.0}
            for (is_encoder, decay), params in sorted(groups.items(), reverse=True)]  # encoder groups first


def effective_batch(args: argparse.Namespace, world_size: int) -> int:
    """Documents per optimizer step: micro-batch x accumulation x processes."""
    return args.per_gpu_train_batch_size * args.gradient_accumulation_steps * world_size


def total_train_steps(args: argparse.Namespace, steps_per_epoch: int, world_size: int = 1) -> tuple[int, str]:
    """The step budget and where it comes from. The paper's budgets were set for 64
    documents a step; another effective batch is given as many steps as see the same
    number of documents, so that a budget means the same training whatever the batch."""
    if args.max_train_steps is not None:
        return args.max_train_steps, "--max_train_steps"
    if args.max_train_epochs is not None:
        return max(1, math.ceil(args.max_train_epochs * steps_per_epoch)), f"--max_train_epochs {args.max_train_epochs}"
    reference = dataset_class(args.dataset_class).reference_train_steps
    if reference is None:
        return 10 * steps_per_epoch, "10 epochs (no published budget for this dataset class)"
    batch = effective_batch(args, world_size)
    steps = max(1, round(reference * REFERENCE_BATCH / batch))
    return steps, (f"the paper's {reference} steps at {REFERENCE_BATCH} documents a step, scaled to "
                   f"{batch} documents a step")


# Options a resumed run may take anew: the budget, logging and evaluation cadence, where
# caches live, and how this process runs. Any other change would silently not happen.
RESUMABLE_OPTIONS = frozenset({
    "max_train_steps", "max_train_epochs", "display_iter", "eval_every", "save_every", "save_every_minutes",
    "save_checkpoint",
    "use_viso", "test_after_training", "per_gpu_test_batch_size", "return_num", "cached_features_dir",
    "feature_workers", "no_cuda", "local_rank", "resume", "run_mode", "output_dir",
})


def prepare_run_dir(args: argparse.Namespace, runtime: Runtime) -> tuple[argparse.Namespace, Path, Path | None]:
    """The run folder, and the checkpoint to resume from. A resumed run keeps its saved
    options: it may change only RESUMABLE_OPTIONS, and a change to any other is refused."""
    if args.resume is None:
        if args.dataset_class is None:
            raise SystemExit("bertkpe train: --dataset_class is required (unless continuing a run with --resume)")
        name = args.run_name or f"{config.dataset_name(args)}_{args.model_class}_{time.strftime('%Y%m%d-%H%M%S')}"
        # ranks reach this in different seconds, when rank 0 may already have written the
        # folder: all take rank 0's name and rank 0's finding
        name, taken = runtime.from_main(name, (Path(args.output_dir) / name / "options.json").is_file())
        args.run_name = name
        run_dir = Path(args.output_dir) / name
        if taken:
            raise SystemExit(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                             f"or choose another --run_name")
        return args, run_dir, None
    resume = Path(args.resume)
    checkpoint = resolve_checkpoint(resume / "last" if (resume / "options.json").is_file() else resume)
    run_dir = checkpoint.parent
    saved = json.loads((run_dir / "options.json").read_text())
    given = set(getattr(args, "given_options", ()))
    changed = sorted(name for name in given - RESUMABLE_OPTIONS
                     if name in saved and getattr(args, name) != saved[name])
    if changed:
        listed = ", ".join(f"--{name} {getattr(args, name)!r} (the run has {saved[name]!r})" for name in changed)
        may_change = ", ".join(f"--{name}" for name in sorted(RESUMABLE_OPTIONS - {"resume", "run_mode"}))
        raise SystemExit(f"--resume {args.resume}: a resumed run keeps its options; these differ: {listed}. "
                         f"Start a new run to change them; a resumed run may change only {may_change}")
    updates = {name: getattr(args, name) for name in given & RESUMABLE_OPTIONS}
    if {"max_train_steps", "max_train_epochs"} & given:
        # a new budget replaces both saved ones: a saved step count would override new epochs
        updates.setdefault("max_train_steps", None)
        updates.setdefault("max_train_epochs", None)
    restored = argparse.Namespace(**{**saved, **updates, "resume": str(checkpoint)})
    return restored, run_dir, checkpoint


# Training flags that are options of some heads, with the paper's value: the value of runs
# saved before the flag existed, and the only one a head without the option accepts.
HEAD_FLAGS: dict[str, Any] = {"rank_loss": "margin", "chunk_loss_weight": 1.0}


def head_options(args: argparse.Namespace) -> dict[str, Any]:
    """Training flags that are options of the head (saved in its kpe_config.json)."""
    options = {}
    for name, paper_value in HEAD_FLAGS.items():
        value = getattr(args, name, paper_value)
        if name in model_type(args.model_class).head_options:
            options[name] = value
        elif value != paper_value:
            heads = " and ".join(head for head in config.MODEL_CLASS_NAMES if name in model_type(head).head_options)
            raise SystemExit(f"error: --{name} applies to {heads}, not {args.model_class}")
    if not options.get("chunk_loss_weight", 1.0) >= 0:
        raise SystemExit(f"error: --chunk_loss_weight must be at least 0, got {options['chunk_loss_weight']}")
    return options


def warmed_up_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """The moving average's update, at min(decay, (1 + n) / (10 + n)) after n updates: early
    on the average follows the weights closely, so a run not much longer than the average's
    horizon does not end holding its first steps' weights (TensorFlow's and timm's warm-up)."""
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        updates = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + updates) / (10 + updates)))(averaged, current, num_averaged)
    return update


def encoder_of(args: argparse.Namespace) -> str:
    return config.resolve_encoder(args.pretrain_model_type, getattr(args, "pretrain_model_path", None))


class Trainer:
    def __init__(self, args: argparse.Namespace, runtime: Runtime, run_dir: Path, resume_from: Path | None):
        self.args, self.runtime, self.run_dir = args, runtime, run_dir
        self.encoder_name = encoder_of(args)
        self.tokenizer = load_tokenizer(self.encoder_name)
        self.pad_token_id = self.tokenizer.pad_token_id or 0
        self.feature_options = FeatureOptions(tokenizer=self.encoder_name, max_token=args.max_token,
                                              max_phrase_words=args.max_phrase_words,
                                              max_doc_tokens=args.max_doc_tokens, window_overlap=args.window_overlap)
        self.load_data()
        seed_everything(args.seed)
        self.model = build_model(args.model_class, self.encoder_name, args.max_phrase_words,
                                 attention_dropout=getattr(args, "attention_dropout", None),
                                 **head_options(args)).to(runtime.device)
        # runs saved before --ema_decay existed evaluated the trained weights themselves
        ema_decay = getattr(args, "ema_decay", 0.0)
        self.averaged = AveragedModel(self.model, multi_avg_fn=warmed_up_ema(ema_decay)) if ema_decay else None
        head_lr = args.head_learning_rate or args.learning_rate
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, args.learning_rate, head_lr,
                                                            args.weight_decay))
        # micro-batches hold windows, so their number depends on the documents' lengths
        self.steps_per_epoch = math.ceil(len(self.sampler.micro_batches(0)) / args.gradient_accumulation_steps)
        self.total_steps, self.budget_source = total_train_steps(args, self.steps_per_epoch, runtime.world_size)
        from transformers import get_linear_schedule_with_warmup
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(args.warmup_proportion * self.total_steps), self.total_steps)
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
        self.state = TrainState(world_size=runtime.world_size)
        if resume_from is not None:
            self.restore(resume_from)
        self.last_saved = time.monotonic()
        self.ddp_model: nn.Module = self.model
        if runtime.distributed:
            device_ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.writer = None
        if runtime.is_main and args.use_viso:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=self.state.step or None)

    def load_data(self) -> None:
        """Map the feature stores (each built first by one process if missing, the others
        waiting for it) and decide from their columns what trains."""
        args, runtime = self.args, self.runtime
        splits = args.train_splits
        stores = [split_store(args, split, self.tokenizer, self.feature_options) for split in splits]
        self.train_docs = TrainingDocuments(stores, args.model_class)
        self.dev_store = None if args.no_eval else split_store(args, "dev", self.tokenizer, self.feature_options)
        logger.info("training documents (%s): %d usable, %d skipped (no present keyphrase, or no negative phrase, "
                    "left in the first %d sub-tokens)", " + ".join(splits), len(self.train_docs),
                    self.train_docs.skipped, self.feature_options.doc_tokens)
        if not len(self.train_docs):
            raise SystemExit("error: no usable training document")
        stemmers = {config.data_stemmer(config.split_file(args, split)) for split in splits}
        if len(stemmers) > 1:
            raise SystemExit(f"error: the splits {' and '.join(splits)} were matched with different stemmers "
                             f"({', '.join(sorted(stemmers))}): preprocess them together")
        self.stemmer = stemmers.pop()
        # runs saved before --train_windows existed trained all windows
        self.sampler = WindowBatchSampler(self.train_docs, args.per_gpu_train_batch_size, args.seed,
                                          getattr(args, "train_windows", 0), runtime.rank, runtime.world_size)

    def checkpoint_options(self) -> dict[str, Any]:
        args = self.args
        return {"max_token": args.max_token, "dataset_class": args.dataset_class,
                "dataset_name": config.dataset_name(args), "stemmer": self.stemmer,
                "pretrain_model_type": args.pretrain_model_type}

    def restore(self, checkpoint: Path) -> None:
        load_weights(self.model, checkpoint)
        saved = load_training_state(checkpoint)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(saved["averaged"])
        # runs saved before the world size was recorded saved one RNG state per process
        trained_under = saved["train_state"].get("world_size", len(saved["rng"]))
        if trained_under != self.runtime.world_size:
            raise SystemExit(f"error: --resume {checkpoint}: the run trained under {trained_under} process(es) and "
                             f"this one has {self.runtime.world_size}; resume it under {trained_under} (torchrun "
                             f"--nproc_per_node {trained_under}), as the data shards, the batch of a step and "
                             f"each process's random state depend on it")
        self.state = TrainState(**{**saved["train_state"], "world_size": trained_under})
        set_rng_state(saved["rng"][self.runtime.rank])
        logger.info("resumed from %s at step %d (epoch %d, micro-batch %d)", checkpoint, self.state.step,
                    self.state.epoch, self.state.batch_in_epoch)

    def save_last(self) -> None:
        """The resumable checkpoint; every rank's RNG state goes into it."""
        self.last_saved = time.monotonic()
        rng = [rng_state()]
        if self.runtime.distributed:
            gathered: list[Any] = [None] * self.runtime.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not self.runtime.is_main:
            return
        training_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                          "scaler": self.scaler.state_dict(), "train_state": asdict(self.state), "rng": rng}
        if self.averaged is not None:
            training_state["averaged"] = self.averaged.state_dict()
        save_checkpoint(self.run_dir / "last", self.model, self.tokenizer, self.checkpoint_options(),
                        training_state)

    @property
    def kept_model(self) -> KeyphraseModel:
        """The weights that are evaluated and saved as best/ and epoch_N/: with --ema_decay their
        moving average, which `last/` holds beside the trained weights to resume from."""
        return self.model if self.averaged is None else self.averaged.module

    def evaluate(self, tag: str) -> None:
        """Dev scores; the best checkpoint by the dataset's metric is kept as `best/`."""
        args, runtime = self.args, self.runtime
        scores = None
        latest = self.run_dir / "predictions.dev.latest.jsonl"
        if not args.no_eval:
            scores = evaluate_split(self.kept_model, self.dev_store, args, "dev", runtime, self.pad_token_id, latest)
        if runtime.is_main and scores is not None:
            metric = dataset_class(args.dataset_class).best_metric
            logger.info("dev at step %d (%s):\n%s", self.state.step, tag,
                        format_split_scores(scores))
            if self.writer is not None:
                for name, value in scores.items():
                    if "@" in name:
                        self.writer.add_scalar(f"dev/{name.replace('@', '_')}", value, self.state.step)
            with open(self.run_dir / "eval_history.jsonl", "a") as history:
                history.write(json.dumps({"step": self.state.step, "epoch": self.state.epoch, "tag": tag,
                                          **scores}) + "\n")
            if scores[metric] > self.state.best_score:
                self.state.best_score, self.state.best_step = scores[metric], self.state.step
                save_checkpoint(self.run_dir / "best", self.kept_model, self.tokenizer, self.checkpoint_options())
                write_json(self.run_dir / "best_dev_metrics.json", {"step": self.state.step, **scores})
                latest.replace(self.run_dir / "predictions.dev.jsonl")
                logger.info("new best %s = %.4f at step %d", metric, scores[metric], self.state.step)
            if args.save_checkpoint:
                save_checkpoint(self.run_dir / tag, self.kept_model, self.tokenizer, self.checkpoint_options())
        if runtime.is_main:
            latest.unlink(missing_ok=True)
        self.state.best_score, self.state.best_step = runtime.from_main(self.state.best_score, self.state.best_step)
        self.save_last()

    def optimizer_step(self) -> float:
        """Unscale, clip once, step; returns the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return float(grad_norm)

    def evaluate_or_save(self, moment: Literal["step", "epoch_end", "training_end"]) -> None:
        """What a moment of training leaves on disk. A dev evaluation (which keeps the best
        checkpoint and rewrites `last/`) every `--eval_every` steps and at each epoch's end,
        once where the two meet; otherwise `last/` every `--save_every` steps and once
        `--save_every_minutes` have passed since it was last written. The last step is
        evaluated once, as the final evaluation; without dev data its weights are `best/`."""
        args, state = self.args, self.state
        evaluated_at_step = bool(args.eval_every) and state.step % args.eval_every == 0
        if moment == "training_end":
            self.evaluate("final")
            if args.no_eval and self.runtime.is_main:
                save_checkpoint(self.run_dir / "best", self.kept_model, self.tokenizer, self.checkpoint_options())
        elif moment == "epoch_end":
            if not evaluated_at_step:
                self.evaluate(f"epoch_{state.epoch}")
        elif state.step < self.total_steps:
            if evaluated_at_step:
                self.evaluate(f"step_{state.step}")
            elif args.save_every and state.step % args.save_every == 0 or self.save_is_due():
                self.save_last()

    def save_is_due(self) -> bool:
        """Whether `--save_every_minutes` have passed since `last/` was written, on any rank.
        Asked every SAVE_CLOCK_STEPS steps, so that all ranks ask (a collective) at the same
        steps without a synchronisation at every step."""
        minutes = getattr(self.args, "save_every_minutes", 0)  # runs saved before the flag saved by steps only
        if not minutes or self.state.step % SAVE_CLOCK_STEPS:
            return False
        return bool(self.runtime.ranks_where(time.monotonic() - self.last_saved >= 60 * minutes))

    def forward_backward(self, items: list[Item], position: int, group_size: int, last_of_step: bool) -> float:
        """One micro-batch's loss, and its gradients added to the step's. DDP all-reduces at
        the step's last micro-batch only; a loss that is not finite on any rank stops every
        rank before that all-reduce, where the others would wait for it."""
        runtime = self.runtime
        batch = collate([self.train_docs.document(item) for item in items], [item[0] for item in items],
                        self.pad_token_id).to(runtime.device)
        sync = contextlib.nullcontext()
        if runtime.distributed and not last_of_step:
            sync = self.ddp_model.no_sync()
        with sync:
            with runtime.autocast():
                loss = self.ddp_model(batch, compute_loss=True).loss
            loss_value = float(loss.detach())  # the one device sync of the micro-batch
            failed = runtime.ranks_where(not math.isfinite(loss_value))
            if failed:
                where = f" on rank(s) {failed}" if runtime.distributed else ""
                raise FloatingPointError(f"loss is not finite{where} at step {self.state.step}, micro-batch {position}"
                                         f"; this process: loss {loss_value} on documents {batch.indices}")
            self.scaler.scale(loss / group_size).backward()
        return loss_value

    def train(self) -> None:
        """The step budget, one scheduled step at a time. An epoch's end is taken when the
        next epoch's first step comes: a run resumed from a `last/` saved at an epoch's last
        step still ends that epoch, and a budget that ends with an epoch goes straight to the
        final evaluation."""
        args, runtime, state = self.args, self.runtime, self.state
        logger.info("training %s on %d documents: %d optimizer steps (%d per epoch; budget: %s), effective batch %d "
                    "= micro-batch %d x accumulation %d x %d process(es), %s", args.model_class, len(self.train_docs),
                    self.total_steps, self.steps_per_epoch, self.budget_source,
                    effective_batch(args, runtime.world_size), args.per_gpu_train_batch_size,
                    args.gradient_accumulation_steps, runtime.world_size,
                    f"autocast {runtime.amp_dtype}" if runtime.amp_dtype else "float32")
        if self.averaged is not None:
            logger.info("dev evaluations, best/ and epoch checkpoints hold the moving average of the weights "
                        "(--ema_decay %g)", args.ema_decay)
        self.ddp_model.train()
        progress = tqdm(total=self.total_steps, initial=state.step, desc="train", unit="step",
                        disable=not runtime.is_main)
        running_loss, running_count, started, logged_step = 0.0, 0, time.perf_counter(), state.step
        schedule = step_schedule(self.sampler.micro_batches, args.gradient_accumulation_steps, state.epoch,
                                 state.batch_in_epoch)
        for scheduled in itertools.islice(schedule, max(self.total_steps - state.step, 0)):
            if scheduled.epoch != state.epoch:  # the step before ended an epoch
                state.epoch, state.batch_in_epoch = scheduled.epoch, 0
                self.evaluate_or_save("epoch_end")
            for position, items in enumerate(scheduled.micro_batches, scheduled.first_position):
                loss_value = self.forward_backward(items, position, scheduled.group_size,
                                                   last_of_step=position == scheduled.end_position - 1)
                running_loss += loss_value
                running_count += 1
            grad_norm = self.optimizer_step()
            state.step += 1
            state.batch_in_epoch = scheduled.end_position
            progress.update(1)
            progress.set_postfix(loss=f"{running_loss / running_count:.4f}", epoch=state.epoch)
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss_value, state.step)
                self.writer.add_scalar("train/learning_rate", self.scheduler.get_last_lr()[0], state.step)
                self.writer.add_scalar("train/grad_norm", grad_norm, state.step)
            if state.step % args.display_iter == 0 or state.step == self.total_steps:
                seconds_per_step = (time.perf_counter() - started) / max(state.step - logged_step, 1)
                logger.info("step %d/%d epoch %d loss %.4f lr %.3g (%.2f s/step)", state.step, self.total_steps,
                            state.epoch, running_loss / running_count, self.scheduler.get_last_lr()[0],
                            seconds_per_step)
                running_loss, running_count, started, logged_step = 0.0, 0, time.perf_counter(), state.step
            self.evaluate_or_save("step")
        progress.close()
        self.evaluate_or_save("training_end")
        if self.writer is not None:
            self.writer.close()

    def best_dev_metrics(self) -> dict[str, Any] | None:
        """Dev scores of `best/` as recorded when it was saved, if its predictions were kept
        too (every rank gets rank 0's answer, so all take the same path)."""
        metrics = None
        path = self.run_dir / "best_dev_metrics.json"
        if self.runtime.is_main and path.is_file() and (self.run_dir / "predictions.dev.jsonl").is_file():
            recorded = json.loads(path.read_text())
            if recorded.pop("step") == self.state.best_step:
                metrics = recorded
        return self.runtime.from_main(metrics)[0]

    def test_best(self) -> dict[str, Any]:
        """Decode dev and eval with the best checkpoint; write metrics.json and predictions.
        A split the run trained on is left out: its scores would be training scores."""
        args, runtime = self.args, self.runtime
        runtime.barrier()
        best = load_model(resolve_checkpoint(self.run_dir / "best"), runtime.device)
        metrics: dict[str, Any] = {}
        best_dev = self.best_dev_metrics()
        if best_dev is not None:  # the best checkpoint's dev scores and predictions, from its evaluation
            metrics["dev"] = best_dev
            logger.info("best checkpoint on dev: evaluated at step %d, predictions.dev.jsonl written then",
                        self.state.best_step)
        held_out = [split for split in ("dev", "eval") if split not in args.train_splits]
        for split in ("eval",) if best_dev is not None else held_out:
            documents = self.dev_store if split == "dev" and self.dev_store is not None else \
                split_store(args, split, self.tokenizer, self.feature_options)
            scores = evaluate_split(best, documents, args, split, runtime, self.pad_token_id,
                                    self.run_dir / f"predictions.{split}.jsonl")
            if not runtime.is_main:
                continue
            if scores is not None:
                metrics[split] = scores
                logger.info("best checkpoint on %s (%d documents):\n%s", split, len(documents),
                            format_split_scores(scores))
        if runtime.is_main:
            write_json(self.run_dir / "metrics.json", metrics)
        return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    runtime = setup_runtime(args.no_cuda)
    try:
        args, run_dir, resume_from = prepare_run_dir(args, runtime)
        config.check_max_token_flag(args.max_token, encoder_of(args))  # before a run folder exists
        config.resolve_document_flags(args)
        config.resolve_train_splits(args)
        config.check_ema_decay(getattr(args, "ema_decay", 0.0))
        head_options(args)
        setup_logging(run_dir / "train.log", runtime.is_main)
        set_precision(runtime, args.fp16, args.bf16)
        if runtime.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume_from is None:
                write_json(run_dir / "options.json", {k: v for k, v in vars(args).items() if k != "given_options"})
            logger.info("run folder %s", run_dir)
        trainer = Trainer(args, runtime, run_dir, resume_from)
        trainer.train()
        if args.test_after_training:
            trainer.test_best()
        return 0
    finally:
        teardown_runtime(runtime)
