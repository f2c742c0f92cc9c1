"""`bertkpe push CHECKPOINT owner/name`: publish a checkpoint folder on the Hugging Face Hub
with its model card (HF_TOKEN or `hf auth login` for the token; HF_ENDPOINT for another Hub)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bertkpe.hub import push_to_hub


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder (a run's best/, last/ or epoch_N/)")
    parser.add_argument("repo_id", help="Hub model id to publish to, owner/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--scores", default=None, metavar="METRICS_JSON",
                        help="a test run's metrics.json (scripts/test.py): its scores go into the model card")
    parser.add_argument("--commit_message", default=None, help="message of the upload's commit")


def run(args: argparse.Namespace, given: set[str]) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        scores = json.loads(Path(args.scores).read_text()) if args.scores else None
        url = push_to_hub(args.checkpoint, args.repo_id, private=args.private, scores=scores,
                          commit_message=args.commit_message)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except HfHubHTTPError as error:
        print(f"error: {args.repo_id}: the Hub refused the upload ({error})", file=sys.stderr)
        return 1
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")
    return 0
