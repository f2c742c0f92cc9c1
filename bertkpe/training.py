"""Training a head: `train(options)` reads top to bottom as a run goes.

The data are the feature stores of the training splits (built first by one process if
missing), read by a DataLoader whose batch sampler forms this rank's micro-batches of
similar length (collated in worker processes, pinned, on CUDA). A step takes
`gradient_accumulation_steps` micro-batches and adds their gradients so that every item
of the step weighs the same whatever the packing and the number of processes: each loss
term is summed over its items and divided by their count over the whole step, summed
over the ranks on the device. It clips once and steps once; a step the fp16 gradient
scaler skips moves neither the schedule nor the moving average. The loss, the gradient
norm and whether the loss stayed finite stay on the device until a logging step (or a
checkpoint) reads them all at once: a step asks the device nothing.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bertkpe import checkpoints
from bertkpe.checkpoints import Training, TrainState, resolve_checkpoint, rng_state, save_checkpoint
from bertkpe.data.batching import COUNT_UNITS, Batch
from bertkpe.data.features import FeatureOptions
from bertkpe.data.matching import get_normalizer, language_code
from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.data.sampling import TrainingCollator, TrainingDocuments, WindowBatchSampler
from bertkpe.data.store import FeatureStore
from bertkpe.data.tokenizers import check_max_token_of, load_tokenizer
from bertkpe.dataset_classes import REFERENCE_BATCH, dataset_class
from bertkpe.decoding import phrase_pooling
from bertkpe.evaluation import Decoding, evaluate_split, format_split_scores, mean_over_corpora, split_store
from bertkpe.files import write_json
from bertkpe.hub import checkpoint_folder
from bertkpe.models import KeyphraseModel, build_model, load_model, load_weights, model_type, read_kpe_config
from bertkpe.options import MODEL_CLASS_NAMES, TrainOptions, as_dict, resolve_encoder, upgrade_train_options
from bertkpe.runtime import Runtime, seed_everything, set_precision, setup_logging

logger = logging.getLogger("bertkpe")

SAVE_CLOCK_STEPS = 10  # optimizer steps between two looks at the clock for --save_every_minutes


def train(options: TrainOptions, given: set[str], runtime: Runtime) -> Path:
    """Train (or, with `options.resume`, continue) a run; its folder."""
    options, run_dir, resume_from = prepare_run_dir(options, given, runtime)
    setup_logging(run_dir / "train.log", runtime.is_main)
    set_precision(runtime, options.fp16, options.bf16)
    if runtime.is_main and resume_from is None:
        write_json(run_dir / "options.json", as_dict(options))
    logger.info("run folder %s", run_dir)
    encoder = encoder_source(options)
    tokenizer = load_tokenizer(encoder)
    data = TrainingData.load(options, runtime, tokenizer, encoder)
    steps_per_epoch = math.ceil(data.micro_batches_per_epoch() / options.gradient_accumulation_steps)
    seed_everything(options.seed)
    model = initial_model(options, encoder).to(runtime.device)
    training, total_steps, budget = build_training(model, options, steps_per_epoch, runtime)
    if resume_from is not None:
        checkpoints.restore_last(resume_from, model, training, runtime.rank, runtime.world_size)
        if training.averaged is not None:
            training.averaged.multi_avg_fn.updates = int(training.averaged.n_averaged)  # type: ignore[union-attr]
        logger.info("resumed from %s at step %d (epoch %d, micro-batch %d)", resume_from, training.state.step,
                    training.state.epoch, training.state.batch_in_epoch)
    ddp_model = DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda"
                                        else None) if runtime.distributed else model
    log = StepLog(run_dir, options, runtime, training.state.step, total_steps)
    keeper = Keeper(run_dir, options, runtime, tokenizer, model, training, data, log)
    logger.info("training %s on %d documents: %d optimizer steps (%d per epoch; budget: %s), effective batch %d "
                "= micro-batch %d x accumulation %d x %d process(es), %s", options.model_class, len(data.documents),
                total_steps, steps_per_epoch, budget, effective_batch(options, runtime.world_size),
                options.per_gpu_train_batch_size, options.gradient_accumulation_steps, runtime.world_size,
                f"autocast {runtime.amp_dtype}" if runtime.amp_dtype else "float32")
    state = training.state
    ddp_model.train()
    steps = data.steps(state.epoch, state.batch_in_epoch, options.gradient_accumulation_steps)
    for epoch, position, micro_batches in itertools.islice(steps, max(total_steps - state.step, 0)):
        if epoch != state.epoch:  # the step before ended an epoch: taken now, so a budget ending there skips it
            state.epoch, state.batch_in_epoch = epoch, 0
            keeper.at_epoch_end()
        loss, finite = forward_backward(ddp_model, micro_batches, training.scaler, runtime)
        grad_norm = optimizer_step(model, training, options.max_grad_norm)
        state.step += 1
        state.batch_in_epoch = position
        log.record(state, loss, grad_norm, training.scheduler.get_last_lr()[0], finite, micro_batches, position)
        if state.step < total_steps:
            keeper.after_step()
    keeper.at_training_end()
    log.close()
    if options.test_after_training:
        keeper.test_best()
    return run_dir


# ----------------------------------------------------------------------------- the step

def forward_backward(ddp_model: nn.Module, micro_batches: list[Batch], scaler: torch.amp.GradScaler,
                     runtime: Runtime) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Add one step's gradients: each micro-batch's loss terms over the step's item counts,
    summed over the ranks, times the number of ranks (DDP averages the ranks' gradients),
    so that the step's gradient is the mean over all its items. DDP all-reduces at the last
    micro-batch only. Returns this rank's share of the step's loss and whether each
    micro-batch's loss was finite, on the device."""
    batches = [batch.to(runtime.device) for batch in micro_batches]
    totals = torch.stack([batch.counts for batch in batches]).sum(0)
    if runtime.distributed:
        dist.all_reduce(totals)
    counts = dict(zip(COUNT_UNITS, totals.clamp(min=1)))
    loss = torch.zeros((), device=runtime.device)
    finite = []
    for index, batch in enumerate(batches):
        sync = ddp_model.no_sync() if runtime.distributed and index < len(batches) - 1 else contextlib.nullcontext()
        with sync:
            with runtime.autocast():
                output = ddp_model(batch, compute_loss=True)
            micro_loss = output.loss_over(counts, scale=runtime.world_size)
            scaler.scale(micro_loss).backward()
        loss += micro_loss.detach().float()
        finite.append(torch.isfinite(micro_loss.detach()))
    return loss, finite


def optimizer_step(model: KeyphraseModel, training: Training, max_grad_norm: float) -> torch.Tensor:
    """Unscale, clip once, step; the gradient norm before clipping (on the device). A step the
    fp16 gradient scaler skips (gradients not finite) moves neither the learning-rate
    schedule nor the moving average; telling it costs fp16 runs one read of the scale."""
    scaler = training.scaler
    scaler.unscale_(training.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(training.optimizer)
    scaler.update()
    training.optimizer.zero_grad(set_to_none=True)
    if scale is None or scaler.get_scale() >= scale:
        training.scheduler.step()
        if training.averaged is not None:
            training.averaged.update_parameters(model)
            training.averaged.multi_avg_fn.updates += 1  # type: ignore[union-attr]
    return grad_norm


class WarmedUpAverage:
    """The moving average's update at min(decay, (1 + n) / (10 + n)) after n updates: early
    on the average follows the weights closely, so a run not much longer than the average's
    horizon does not end holding its first steps' weights (TensorFlow's and timm's warm-up).
    n is counted here, on the host, so that the decay needs nothing from the device."""

    def __init__(self, decay: float):
        self.decay = decay
        self.updates = 0  # the average's n_averaged

    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        get_ema_multi_avg_fn(decay)(averaged, current, num_averaged)


# ----------------------------------------------------------------------------- data

@dataclass
class TrainingData:
    """The training documents, this rank's loader over them, and each corpus's dev store."""

    documents: TrainingDocuments
    sampler: WindowBatchSampler
    loader: DataLoader
    devs: list[tuple[PreprocessedData, FeatureStore]]
    features: FeatureOptions
    stemmer: str
    trained_on: list[dict[str, Any]]  # each training store's fingerprint, for the model card
    corpora: list[dict[str, Any]]  # each corpus: class, name, stemmer, language, documents, share of an epoch

    @classmethod
    def load(cls, options: TrainOptions, runtime: Runtime, tokenizer, encoder: str) -> "TrainingData":
        """Map the feature stores (each built first by one process if missing, the others
        waiting for it) and decide from their columns what trains."""
        features = FeatureOptions(tokenizer=encoder, max_token=options.max_token,
                                  max_phrase_words=options.max_phrase_words, max_doc_tokens=options.max_doc_tokens,
                                  window_overlap=options.window_overlap)
        corpora, splits = options.corpora, options.train_splits
        stemmer, matching = model_stemmer(corpora, splits, options.stemmer)

        def store(data: PreprocessedData, split: str) -> FeatureStore:
            return split_store(data, split, tokenizer, features, options.cached_features_dir, options.feature_workers)

        stores = [(number, store(data, split)) for number, data in enumerate(corpora) for split in splits]
        documents = TrainingDocuments([found for _, found in stores], options.model_class,
                                      [number for number, _ in stores])
        devs = [] if options.no_eval else [(data, store(data, "dev")) for data in corpora]
        logger.info("training documents (%s): %d usable, %d skipped (no present keyphrase, or no negative phrase, "
                    "left in the first %d sub-tokens)", " + ".join(splits), len(documents), documents.skipped,
                    features.doc_tokens)
        if not len(documents):
            raise SystemExit("error: no usable training document")
        sizes = documents.corpus_sizes()
        quotas = documents.corpus_quotas(options.sampling_temperature)
        described = [{"dataset_class": data.dataset_class, "dataset_name": data.name, "stemmer": matching[number][0],
                      "language": matching[number][1], "text_kind": data.text_kind(), "documents": int(sizes[number]),
                      "documents_per_epoch": int(quotas[number])} for number, data in enumerate(corpora)]
        if len(corpora) > 1:
            logger.info("corpora (sampling temperature %g; documents usable -> read an epoch): %s",
                        options.sampling_temperature,
                        ", ".join(f"{entry['dataset_name']} {entry['documents']} -> {entry['documents_per_epoch']}"
                                  for entry in described))
        sampler = WindowBatchSampler(documents, options.per_gpu_train_batch_size, options.seed, options.train_windows,
                                     runtime.rank, runtime.world_size, options.sampling_temperature)
        workers = options.num_workers if options.num_workers is not None else 2 * (runtime.device.type == "cuda")
        # its own generator: starting to iterate draws worker seeds from it, which must not move
        # the global one (dropout), or a resumed run would not continue as the killed one did
        loader = DataLoader(documents, batch_sampler=sampler, collate_fn=TrainingCollator(tokenizer.pad_token_id or 0),
                            num_workers=workers, pin_memory=runtime.device.type == "cuda",
                            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(options.seed))
        return cls(documents, sampler, loader, devs, features, stemmer,
                   [found.fingerprint() for _, found in stores], described)

    @property
    def text_kind(self) -> str | None:
        """The kind of text of every training corpus, where they share one (the kind a
        checkpoint ranks by default); None for corpora of several kinds or unknown ones."""
        kinds = {corpus["text_kind"] for corpus in self.corpora}
        return kinds.pop() if len(kinds) == 1 else None

    def micro_batches_per_epoch(self) -> int:
        """This rank's micro-batches of an epoch: they hold windows, so their number depends
        on the documents' lengths."""
        self.sampler.set_epoch(0)
        return len(self.sampler)

    def steps(self, epoch: int, position: int, accumulation: int) -> Iterator[tuple[int, int, list[Batch]]]:
        """(epoch, position after the step, micro-batches) of every optimizer step from
        micro-batch `position` of `epoch` on, without end: each epoch's micro-batches in
        groups of `accumulation` counted from its start, the last taking what is left."""
        while True:
            self.sampler.set_epoch(epoch, position)
            end = position + len(self.sampler)
            group: list[Batch] = []
            for batch in self.loader:
                group.append(batch)
                position += 1
                if position % accumulation == 0 or position == end:
                    yield epoch, position, group
                    group = []
            epoch, position = epoch + 1, 0


def model_stemmer(corpora: list[PreprocessedData], splits: list[str], chosen: str | None
                  ) -> tuple[str, list[tuple[str, str | None]]]:
    """The stemmer the trained model merges phrases with, and each corpus's (stemmer,
    language). Each corpus trains on what its own stemmer matched; the model needs one,
    so corpora matched with different stemmers, or written in different languages, are
    refused unless `chosen` (--stemmer) names it."""
    matching = []
    for data in corpora:
        stemmers = {data.stemmer(split) for split in splits}
        if len(stemmers) > 1:
            raise SystemExit(f"error: the splits {' and '.join(splits)} of {data.name} were matched with different "
                             f"stemmers ({', '.join(sorted(stemmers))}): preprocess them together")
        language = data.language() or dataset_class(data.dataset_class).language
        matching.append((stemmers.pop(), language))
    stemmers = {stemmer for stemmer, _ in matching}
    languages = {language_code(language) for _, language in matching if language}
    if chosen is not None:
        try:
            get_normalizer(chosen)
        except ValueError as error:
            raise SystemExit(f"error: --stemmer {chosen}: {error}") from None
        return chosen, matching
    if len(stemmers) > 1 or len(languages) > 1:
        listed = ", ".join(f"{data.name} ({stemmer}, language {language or 'unknown'})"
                           for data, (stemmer, language) in zip(corpora, matching))
        raise SystemExit(f"error: the training corpora cannot share one model's phrase merging: {listed}. "
                         f"Choose the stemmer the model merges phrases with (--stemmer NAME), or train on "
                         f"corpora of one language and stemmer")
    return stemmers.pop(), matching


# ----------------------------------------------------------------------------- logging

class StepLog:
    """Each step's loss, gradient norm and learning rate, kept (on the device) until a
    logging step reads them all at once: every --display_iter steps, at the last step, and
    before anything is saved. There the loss is averaged over the ranks, logged and written
    to tensorboard, and a loss that was not finite on any rank stops every rank, naming the
    first step and micro-batch where it was not and their documents."""

    def __init__(self, run_dir: Path, options: TrainOptions, runtime: Runtime, step: int, total_steps: int):
        self.options, self.runtime, self.total_steps = options, runtime, total_steps
        self.pending: list[tuple[int, int, torch.Tensor, torch.Tensor, float, list[torch.Tensor], list[tuple]]] = []
        self.logged_step, self.started = step, time.perf_counter()
        self.progress = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not runtime.is_main)
        self.writer = None
        if runtime.is_main and options.use_viso:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)

    def record(self, state: TrainState, loss: torch.Tensor, grad_norm: torch.Tensor, learning_rate: float,
               finite: list[torch.Tensor], micro_batches: list[Batch], position: int) -> None:
        first = position - len(micro_batches)
        where = [(first + index, batch.indices) for index, batch in enumerate(micro_batches)]
        self.pending.append((state.step, state.epoch, loss, grad_norm, learning_rate, finite, where))
        self.progress.update(1)
        if state.step % self.options.display_iter == 0 or state.step == self.total_steps:
            self.flush()

    def flush(self) -> None:
        """Read what the steps since the last flush left on the device (one transfer, and one
        all-reduce under torchrun); every rank calls it at the same steps."""
        if not self.pending:
            return
        runtime = self.runtime
        losses = torch.stack([loss for _, _, loss, _, _, _, _ in self.pending])
        flags = torch.stack([flag for *_, finite, _ in self.pending for flag in finite])
        bad_ranks = torch.zeros(runtime.world_size, device=losses.device)
        bad_ranks[runtime.rank] = (~flags).any().float()
        shared = torch.cat([losses.float(), bad_ranks])
        if runtime.distributed:
            dist.all_reduce(shared)
        shared[:len(losses)] /= runtime.world_size
        values = torch.cat([shared, torch.stack([norm.float() for _, _, _, norm, _, _, _ in self.pending]),
                            flags.float()]).tolist()
        count = len(self.pending)
        step_losses, failed = values[:count], [rank for rank, value in enumerate(values[count:count + runtime.world_size])
                                                if value]
        grad_norms, finite = values[count + runtime.world_size:2 * count + runtime.world_size], \
            values[2 * count + runtime.world_size:]
        pending, self.pending = self.pending, []
        if failed:
            raise FloatingPointError(self.failure(pending, failed, finite))
        step, epoch = pending[-1][0], pending[-1][1]
        seconds_per_step = (time.perf_counter() - self.started) / max(step - self.logged_step, 1)
        mean_loss = sum(step_losses) / count
        logger.info("step %d/%d epoch %d loss %.4f lr %.3g (%.2f s/step)", step, self.total_steps, epoch, mean_loss,
                    pending[-1][4], seconds_per_step)
        self.progress.set_postfix(loss=f"{mean_loss:.4f}", epoch=epoch)
        if self.writer is not None:
            for (step_, _, _, _, learning_rate, _, _), loss, grad_norm in zip(pending, step_losses, grad_norms):
                self.writer.add_scalar("train/loss", loss, step_)
                self.writer.add_scalar("train/learning_rate", learning_rate, step_)
                self.writer.add_scalar("train/grad_norm", grad_norm, step_)
        self.logged_step, self.started = step, time.perf_counter()

    def failure(self, pending: list, failed: list[int], finite: list[float]) -> str:
        where = f" on rank(s) {failed}" if self.runtime.distributed else ""
        flags = iter(finite)
        for step, _, _, _, _, micro_finite, micro_batches in pending:
            for (position, indices), _ in zip(micro_batches, micro_finite):
                if not next(flags):
                    return (f"loss is not finite{where}: first at step {step}, micro-batch {position}, on this "
                            f"process's documents {indices}; training stopped at step {pending[-1][0]}, before "
                            f"anything after step {pending[0][0] - 1} was saved")
        return (f"loss is not finite{where} between steps {pending[0][0]} and {pending[-1][0]}; on this process it "
                f"stayed finite; training stopped before anything after step {pending[0][0] - 1} was saved")

    def close(self) -> None:
        self.flush()
        self.progress.close()
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------- evaluations and checkpoints

class Keeper:
    """What training leaves on disk, and when. A dev evaluation of every training corpus
    (which keeps the best checkpoint as `best/` and rewrites `last/`) every `--eval_every`
    steps and at each epoch's end (unless --no-eval_each_epoch), once where the two meet;
    otherwise `last/` every `--save_every` steps and once `--save_every_minutes` have
    passed since it was last written. The last step is
    evaluated once, as the final evaluation; without dev data its weights are `best/`.
    With `--ema_decay` the weights evaluated and kept are the moving average."""

    def __init__(self, run_dir: Path, options: TrainOptions, runtime: Runtime, tokenizer, model: KeyphraseModel,
                 training: Training, data: TrainingData, log: StepLog):
        self.run_dir, self.options, self.runtime, self.tokenizer = run_dir, options, runtime, tokenizer
        self.model, self.training, self.data, self.log = model, training, data, log
        self.last_saved = time.monotonic()
        self.decoding = Decoding(options.per_gpu_test_batch_size, options.return_num)
        if training.averaged is not None:
            logger.info("dev evaluations, best/ and epoch checkpoints hold the moving average of the weights "
                        "(--ema_decay %g)", options.ema_decay)

    @property
    def kept_model(self) -> KeyphraseModel:
        """The weights evaluated and saved as best/ and epoch_N/: with --ema_decay their moving
        average, which `last/` holds beside the trained weights to resume from."""
        return self.model if self.training.averaged is None else self.training.averaged.module

    def checkpoint_options(self) -> dict[str, Any]:
        options = self.options
        return {"max_token": options.max_token, "dataset_class": options.dataset_class,
                "dataset_name": options.data.name, "stemmer": self.data.stemmer, "text_kind": self.data.text_kind,
                "pretrain_model_type": options.pretrain_model_type,
                "training": {"step": self.training.state.step, "data": self.data.trained_on,
                             "corpora": self.data.corpora, "options": as_dict(options)}}

    def save_last(self) -> None:
        """The resumable checkpoint, with every rank's RNG state; only after the steps it
        holds were checked to have finite losses."""
        self.log.flush()
        self.last_saved = time.monotonic()
        rng = [rng_state()]
        if self.runtime.distributed:
            rng = [None] * self.runtime.world_size
            dist.all_gather_object(rng, rng_state())
        if self.runtime.is_main:
            checkpoints.save_last(self.run_dir / "last", self.model, self.tokenizer, self.checkpoint_options(),
                                  self.training, rng)

    def predictions_path(self, split: str, data: PreprocessedData, latest: bool = False) -> Path:
        """predictions.SPLIT.jsonl, or predictions.SPLIT.CORPUS.jsonl for each of several corpora."""
        corpus = f".{data.name}" if len(self.data.corpora) > 1 else ""
        return self.run_dir / f"predictions.{split}{corpus}{'.latest' if latest else ''}.jsonl"

    def split_scores(self, model: KeyphraseModel, split: str, latest: bool = False) -> dict[str, Any] | None:
        """One split of every training corpus, decoded and scored (on rank 0; None elsewhere or
        without references): a corpus's own scores, or several corpora's with their mean."""
        options, runtime = self.options, self.runtime
        dev_stores = {data.name: store for data, store in self.data.devs}
        per_corpus: dict[str, dict[str, Any]] = {}
        for data in options.corpora:
            documents = dev_stores.get(data.name) if split == "dev" else None
            if documents is None:
                documents = split_store(data, split, self.tokenizer, self.data.features, options.cached_features_dir,
                                        options.feature_workers)
            decoding = replace(self.decoding, pooling=phrase_pooling(options.phrase_pooling, data.text_kind()))
            scores = evaluate_split(model, documents, data, split, runtime, decoding,
                                    self.tokenizer.pad_token_id or 0, self.predictions_path(split, data, latest),
                                    options.present_only)
            if scores is not None:
                per_corpus[data.name] = scores
        if not per_corpus:
            return None
        if len(options.corpora) == 1:
            return per_corpus[options.corpora[0].name]
        best_metrics = {data.name: dataset_class(data.dataset_class).best_metric for data in options.corpora}
        return mean_over_corpora(per_corpus, best_metrics)

    def selection_score(self, scores: dict[str, Any]) -> float:
        """What picks the best checkpoint: the dataset class's metric, or for several corpora the
        mean of each corpus's own."""
        if "corpora" in scores:
            return float(scores["selection"])
        return float(scores[dataset_class(self.options.dataset_class).best_metric])

    def evaluate(self, tag: str) -> None:
        """Dev scores; the best checkpoint by the dataset's metric is kept as `best/`."""
        runtime, state = self.runtime, self.training.state
        self.log.flush()
        scores = self.split_scores(self.kept_model, "dev", latest=True) if self.data.devs else None
        if runtime.is_main and scores is not None:
            logger.info("dev at step %d (%s):\n%s", state.step, tag, format_split_scores(scores))
            if self.log.writer is not None:
                for corpus, corpus_scores in [("", scores), *((f"{name}/", value) for name, value
                                                             in scores.get("corpora", {}).items())]:
                    for name, value in corpus_scores.items():
                        if "@" in name:
                            self.log.writer.add_scalar(f"dev/{corpus}{name.replace('@', '_')}", value, state.step)
            with open(self.run_dir / "eval_history.jsonl", "a") as history:
                history.write(json.dumps({"step": state.step, "epoch": state.epoch, "tag": tag, **scores}) + "\n")
            selected = self.selection_score(scores)
            if selected > state.best_score:
                state.best_score, state.best_step = selected, state.step
                save_checkpoint(self.run_dir / "best", self.kept_model, self.tokenizer, self.checkpoint_options(),
                                scores={"dev": scores})
                write_json(self.run_dir / "best_dev_metrics.json", {"step": state.step, **scores})
                for data in self.options.corpora:
                    self.predictions_path("dev", data, latest=True).replace(self.predictions_path("dev", data))
                logger.info("new best %s = %.4f at step %d", scores.get("selection_metric") or
                            dataset_class(self.options.dataset_class).best_metric, selected, state.step)
            if self.options.save_checkpoint:
                save_checkpoint(self.run_dir / tag, self.kept_model, self.tokenizer, self.checkpoint_options())
        if runtime.is_main:
            for data in self.options.corpora:
                self.predictions_path("dev", data, latest=True).unlink(missing_ok=True)
        state.best_score, state.best_step = runtime.from_main(state.best_score, state.best_step)
        self.save_last()

    def evaluated_now(self) -> bool:
        return bool(self.options.eval_every) and self.training.state.step % self.options.eval_every == 0

    def after_step(self) -> None:
        step = self.training.state.step
        if self.evaluated_now():
            self.evaluate(f"step_{step}")
        elif self.options.save_every and step % self.options.save_every == 0 or self.save_is_due():
            self.save_last()

    def save_is_due(self) -> bool:
        """Whether `--save_every_minutes` have passed since `last/` was written, on any rank.
        Asked every SAVE_CLOCK_STEPS steps, so that all ranks ask (a collective) at the same
        steps without a synchronisation at every step."""
        minutes = self.options.save_every_minutes
        if not minutes or self.training.state.step % SAVE_CLOCK_STEPS:
            return False
        return bool(self.runtime.ranks_where(time.monotonic() - self.last_saved >= 60 * minutes))

    def at_epoch_end(self) -> None:
        if self.evaluated_now():
            return
        if self.options.eval_each_epoch:
            self.evaluate(f"epoch_{self.training.state.epoch}")
        else:
            self.save_last()

    def at_training_end(self) -> None:
        self.evaluate("final")
        if self.options.no_eval and self.runtime.is_main:
            save_checkpoint(self.run_dir / "best", self.kept_model, self.tokenizer, self.checkpoint_options())

    def best_dev_metrics(self) -> dict[str, Any] | None:
        """Dev scores of `best/` as recorded when it was saved, if its predictions were kept
        too (every rank gets rank 0's answer, so all take the same path)."""
        metrics = None
        path = self.run_dir / "best_dev_metrics.json"
        kept = all(self.predictions_path("dev", data).is_file() for data in self.options.corpora)
        if self.runtime.is_main and path.is_file() and kept:
            recorded = json.loads(path.read_text())
            if recorded.pop("step") == self.training.state.best_step:
                metrics = recorded
        return self.runtime.from_main(metrics)[0]

    def test_best(self) -> dict[str, Any]:
        """Decode dev and eval with the best checkpoint; write metrics.json and predictions.
        A split the run trained on is left out: its scores would be training scores."""
        options, runtime = self.options, self.runtime
        runtime.barrier()
        best = load_model(resolve_checkpoint(self.run_dir / "best"), runtime.device)
        metrics: dict[str, Any] = {}
        best_dev = self.best_dev_metrics()
        if best_dev is not None:  # the best checkpoint's dev scores and predictions, from its evaluation
            metrics["dev"] = best_dev
            logger.info("best checkpoint on dev: evaluated at step %d, its predictions written then",
                        self.training.state.best_step)
        held_out = [split for split in ("dev", "eval") if split not in options.train_splits]
        for split in ("eval",) if best_dev is not None else held_out:
            scores = self.split_scores(best, split)
            if runtime.is_main and scores is not None:
                metrics[split] = scores
                logger.info("best checkpoint on %s:\n%s", split, format_split_scores(scores))
        if runtime.is_main:
            write_json(self.run_dir / "metrics.json", metrics)
            checkpoints.record_scores(self.run_dir / "best", metrics)
        return metrics


# ----------------------------------------------------------------------------- the run's set-up

def build_training(model: KeyphraseModel, options: TrainOptions, steps_per_epoch: int, runtime: Runtime
                   ) -> tuple[Training, int, str]:
    """Optimizer, schedule, gradient scaler and moving average; the step budget and its source."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(parameter_groups(model, options.learning_rate,
                                                   options.head_learning_rate or options.learning_rate,
                                                   options.weight_decay))
    total_steps, budget = total_train_steps(options, steps_per_epoch, runtime.world_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup_proportion * total_steps), total_steps)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    averaged = AveragedModel(model, multi_avg_fn=WarmedUpAverage(options.ema_decay)) if options.ema_decay else None
    return Training(optimizer, scheduler, scaler, averaged, TrainState(world_size=runtime.world_size)), total_steps, \
        budget


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


def effective_batch(options: TrainOptions, world_size: int) -> int:
    """Documents per optimizer step: micro-batch x accumulation x processes."""
    return options.per_gpu_train_batch_size * options.gradient_accumulation_steps * world_size


def total_train_steps(options: TrainOptions, steps_per_epoch: int, world_size: int = 1) -> tuple[int, str]:
    """The step budget and where it comes from. The paper's budgets were set for 64
    documents a step; another effective batch is given as many steps as see the same
    number of documents, so that a budget means the same training whatever the batch."""
    if options.max_train_steps is not None:
        return options.max_train_steps, "--max_train_steps"
    if options.max_train_epochs is not None:
        return max(1, math.ceil(options.max_train_epochs * steps_per_epoch)), \
            f"--max_train_epochs {options.max_train_epochs}"
    reference = dataset_class(options.dataset_class).reference_train_steps
    if reference is None:
        return 10 * steps_per_epoch, "10 epochs (no published budget for this dataset class)"
    batch = effective_batch(options, world_size)
    steps = max(1, round(reference * REFERENCE_BATCH / batch))
    return steps, (f"the paper's {reference} steps at {REFERENCE_BATCH} documents a step, scaled to "
                   f"{batch} documents a step")


# Options a resumed run may take anew: the budget, logging, evaluation and saving cadence,
# where caches live, and how this process runs. Any other change would silently not happen.
RESUMABLE_OPTIONS = frozenset({
    "max_train_steps", "max_train_epochs", "display_iter", "eval_every", "eval_each_epoch", "save_every",
    "save_every_minutes", "save_checkpoint", "use_viso", "test_after_training", "per_gpu_test_batch_size", "return_num",
    "cached_features_dir", "feature_workers", "num_workers", "no_cuda", "local_rank", "resume", "run_mode",
    "output_dir",
})


def prepare_run_dir(options: TrainOptions, given: set[str], runtime: Runtime
                    ) -> tuple[TrainOptions, Path, Path | None]:
    """The run's options, its folder, and the checkpoint to resume from. Everything that can
    be refused is refused here, before a run folder exists. A resumed run keeps its saved
    options: it may change only RESUMABLE_OPTIONS, and a change to any other is refused."""
    if options.resume is None:
        if options.train_datasets and given & {"dataset_class", "dataset_name"}:
            raise SystemExit("bertkpe train: --train_datasets names every corpus (CLASS:NAME where its class is not "
                             "recorded): leave out --dataset_class and --dataset_name")
        if options.dataset_class is None and not options.train_datasets:
            raise SystemExit("bertkpe train: --dataset_class is required (unless continuing a run with --resume)")
        if options.init_checkpoint:
            options = replace(options, pretrain_model_type=initial_encoder(options, given))
        check_options(options, runtime)
        data_name = "+".join(data.name for data in options.corpora)
        name = options.run_name or f"{data_name}_{options.model_class}_{time.strftime('%Y%m%d-%H%M%S')}"
        # ranks reach this in different seconds, when rank 0 may already have written the
        # folder: all take rank 0's name and rank 0's finding
        name, taken = runtime.from_main(name, (Path(options.output_dir) / name / "options.json").is_file())
        run_dir = Path(options.output_dir) / name
        if taken:
            raise SystemExit(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                             f"or choose another --run_name")
        if runtime.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        return replace(options, run_name=name), run_dir, None
    resume = Path(options.resume)
    checkpoint = resolve_checkpoint(resume / "last" if (resume / "options.json").is_file() else resume)
    run_dir = checkpoint.parent
    saved = json.loads((run_dir / "options.json").read_text())
    changed = sorted(name for name in given - RESUMABLE_OPTIONS
                     if name in saved and getattr(options, name) != saved[name])
    if changed:
        listed = ", ".join(f"--{name} {getattr(options, name)!r} (the run has {saved[name]!r})"
                           for name in changed)
        may_change = ", ".join(f"--{name}" for name in sorted(RESUMABLE_OPTIONS - {"resume", "run_mode"}))
        raise SystemExit(f"--resume {options.resume}: a resumed run keeps its options; these differ: {listed}. "
                         f"Start a new run to change them; a resumed run may change only {may_change}")
    updates = {name: getattr(options, name) for name in given & RESUMABLE_OPTIONS}
    if {"max_train_steps", "max_train_epochs"} & given:
        # a new budget replaces both saved ones: a saved step count would override new epochs
        updates.setdefault("max_train_steps", None)
        updates.setdefault("max_train_epochs", None)
    restored = replace(upgrade_train_options(saved), **{**updates, "resume": str(checkpoint)})
    check_options(restored, runtime)
    return restored, run_dir, checkpoint


def check_options(options: TrainOptions, runtime: Runtime) -> None:
    """What can be refused before any work: the options among themselves, the window size
    against the encoder, mixed precision against the device, the head's own options."""
    options.resolve()
    try:
        check_max_token_of(options.max_token, encoder_source(options))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if options.fp16 and runtime.device.type != "cuda":
        raise SystemExit("error: --fp16 needs CUDA, which this process does not have: use --bf16 for mixed "
                         "precision on the CPU")
    head_options(options)


def encoder_source(options: TrainOptions) -> str:
    """The folder or Hub id the encoder and tokenizer come from: the pretrained encoder, or
    the trained checkpoint training starts from."""
    if options.init_checkpoint:
        try:
            return str(checkpoint_folder(options.init_checkpoint, options.revision))
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"error: --init_checkpoint {options.init_checkpoint}: {error}") from None
    if options.revision is not None:
        raise SystemExit("error: --revision applies to the --init_checkpoint Hub id (give the encoder's revision "
                         "as part of a local folder instead)")
    return resolve_encoder(options.pretrain_model_type, options.pretrain_model_path)


def initial_encoder(options: TrainOptions, given: set[str]) -> str:
    """The encoder name a run from --init_checkpoint records (the checkpoint's), after
    refusing flags that contradict the checkpoint's head."""
    kpe = read_kpe_config(encoder_source(options))
    contradictions = [f"--{flag} {getattr(options, flag)} (the checkpoint has {kpe[flag]})"
                      for flag in ("model_class", "max_phrase_words", "pretrain_model_type")
                      if (flag in given or flag == "model_class") and str(getattr(options, flag)) != str(kpe[flag])]
    if contradictions:
        raise SystemExit(f"error: --init_checkpoint {options.init_checkpoint}: " + "; ".join(contradictions))
    return str(kpe.get("pretrain_model_type") or options.pretrain_model_type)


def initial_model(options: TrainOptions, encoder: str) -> KeyphraseModel:
    """A new head over the pretrained encoder, or, from --init_checkpoint, the trained model
    (its head and encoder weights) with this run's dropout."""
    head = head_options(options)
    if not options.init_checkpoint:
        return build_model(options.model_class, encoder, options.max_phrase_words, options.attention_dropout,
                           options.hidden_dropout, **head)
    from transformers import AutoConfig

    model = build_model(options.model_class, AutoConfig.from_pretrained(encoder), options.max_phrase_words,
                        options.attention_dropout, options.hidden_dropout, **head)
    load_weights(model, encoder)
    return model


# Training flags that are options of some heads, with the paper's value: the only one a
# head without the option accepts.
HEAD_FLAGS: dict[str, Any] = {"rank_loss": "margin", "chunk_loss_weight": 1.0}


def head_options(options: TrainOptions) -> dict[str, Any]:
    """Training flags that are options of the head (saved in its kpe_config.json)."""
    chosen = {}
    for name, paper_value in HEAD_FLAGS.items():
        value = getattr(options, name)
        if name in model_type(options.model_class).head_options:
            chosen[name] = value
        elif value != paper_value:
            heads = " and ".join(head for head in MODEL_CLASS_NAMES if name in model_type(head).head_options)
            raise SystemExit(f"error: --{name} applies to {heads}, not {options.model_class}")
    if not chosen.get("chunk_loss_weight", 1.0) >= 0:
        raise SystemExit(f"error: --chunk_loss_weight must be at least 0, got {chosen['chunk_loss_weight']}")
    return chosen
