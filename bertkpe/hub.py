"""Checkpoints by Hub id as well as by folder, and publishing them with their model card.

Wherever a checkpoint is read (`KeyphraseExtractor.from_pretrained`, `bertkpe extract
--checkpoint`, `scripts/test.py --eval_checkpoint`, `scripts/train.py --init_checkpoint`)
a local folder comes first; otherwise the name is a Hub model id (`owner/name`, at
`revision`), fetched through `huggingface_hub` into its cache as `transformers` does, so
`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE=1` (a filled cache, no network)
apply unchanged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bertkpe.checkpoints import TRAINING_STATE_NAME, resolve_checkpoint
from bertkpe.files import previous_folder
from bertkpe.model_card import CARD_NAME, EVAL_RESULTS_NAME, model_card, read_json

# What a published model leaves out: the optimizer state (twice the weights) is only for --resume.
NOT_PUBLISHED = [TRAINING_STATE_NAME]


def is_hub_id(name: str) -> bool:
    """Whether `name` can name a Hub repository (`owner/name` or `name`), as the Hub checks it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def checkpoint_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The folder of a checkpoint: a local one (or the copy an interrupted save left), else
    the snapshot of Hub model `name_or_path` at `revision` (default: main) in the cache."""
    path = Path(name_or_path)
    if path.is_dir() or previous_folder(path) is not None:
        if revision is not None:
            raise ValueError(f"{name_or_path} is a local folder: a revision ({revision}) applies to Hub ids only")
        return resolve_checkpoint(path)
    name = str(name_or_path)
    if not is_hub_id(name):
        raise FileNotFoundError(f"no checkpoint folder at {name} (and it is not a Hub model id, owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, \
        RevisionNotFoundError

    at = f" at revision {revision}" if revision else ""
    try:
        folder = Path(snapshot_download(name, revision=revision, ignore_patterns=NOT_PUBLISHED))
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{name}: the Hub model has no revision {revision}") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"no checkpoint folder at {name}, nor a Hub model {name} (or it is private "
                                f"and no token was given: HF_TOKEN or `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"no checkpoint folder at {name}, and Hub model {name}{at} is not in the "
                                f"Hugging Face cache ({cache_location()}) while the Hub cannot be reached "
                                f"(HF_HUB_OFFLINE or no network)") from None
    except HfHubHTTPError as error:
        raise FileNotFoundError(f"{name}: the Hub answered {error}") from None
    if not (folder / "kpe_config.json").is_file():
        raise FileNotFoundError(f"Hub model {name}{at} is not a bertkpe checkpoint (no kpe_config.json)")
    return folder


def cache_location() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def published_files(folder: Path) -> list[Path]:
    """The files of a checkpoint folder a model repository gets (its card is made anew)."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name != CARD_NAME
                  and path.name not in NOT_PUBLISHED)


def push_to_hub(checkpoint: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                scores: dict[str, Any] | None = None, commit_message: str | None = None) -> str:
    """Publish a checkpoint folder as Hub model `repo_id` (created if missing) in one commit,
    with a model card titled and used by that id; the folder itself is left as it is.
    `scores` (a test run's metrics.json: per split) are published beside those the folder
    records. The URL of the commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = resolve_checkpoint(checkpoint)
    if not (folder / "kpe_config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a bertkpe checkpoint folder (no kpe_config.json)")
    if not is_hub_id(repo_id) or "/" not in repo_id:
        raise ValueError(f"{repo_id!r} is not a Hub model id (owner/name)")
    results = {**read_json(folder / EVAL_RESULTS_NAME), **(scores or {})}
    operations = [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
                  for path in published_files(folder) if path.name != EVAL_RESULTS_NAME]
    card = model_card(folder, repo_id, published=True, results=results)
    operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card.encode("utf-8")))
    if results:
        operations.append(CommitOperationAdd(path_in_repo=EVAL_RESULTS_NAME,
                                             path_or_fileobj=(json.dumps(results, indent=2) + "\n").encode("utf-8")))
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.create_commit(repo_id, operations=operations,
                               commit_message=commit_message or f"Upload {folder.name}/ with bertkpe")
    return str(commit.commit_url)
