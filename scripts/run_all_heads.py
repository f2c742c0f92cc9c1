"""Train and test all five heads with one budget and one set of settings, and write
the results table (rank, method, F1/P/R@1,3,5 on the test split) into README.md.

    python scripts/run_all_heads.py                        # Inspec, KP20K layout (the demo's data)
    python scripts/run_all_heads.py --corpus wikinews      # LIAAD WikiNews (French), multidata class
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

from demo import TRAIN_SETTINGS

from bertkpe.cli import run_command
from bertkpe.data.default_data import ensure_default_data
from bertkpe.models import model_type
from bertkpe.training import HEAD_FLAGS

HEADS = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
HEAD_NAMES = {"bert2span": "Bert2Span", "bert2tag": "Bert2Tag", "bert2chunk": "Bert2Chunk",
              "bert2rank": "Bert2Rank", "bert2joint": "Bert2Joint (JointKPE)"}


def effective_settings(flags: list[str]) -> list[str]:
    """Later flags override earlier ones (as argparse would); a flag takes every value up to
    the next flag (`--train_splits train dev`); --model_class is per head."""
    merged: dict[str, list[str]] = {}
    index = 0
    while index < len(flags):
        flag, end = flags[index], index + 1
        while end < len(flags) and not flags[end].startswith("--"):
            end += 1
        merged.pop(flag, None)
        merged[flag] = flags[index + 1:end]
        index = end
    merged.pop("--model_class", None)
    return [token for flag, value in merged.items() for token in (flag, *value)]


def head_settings(settings: list[str], head: str) -> list[str]:
    """The settings less the head options (--rank_loss, --chunk_loss_weight) that the head
    does not have; each takes one value."""
    kept = list(settings)
    for name in HEAD_FLAGS:
        flag = f"--{name}"
        if flag in kept and name not in model_type(head).head_options:
            index = kept.index(flag)
            del kept[index:index + 2]
    return kept


def preprocess(corpus: str, shared: Path, folder: str) -> tuple[str, str]:
    """Preprocess the corpus; returns (dataset_class, dataset_name)."""
    if corpus == "inspec":
        source, _ = ensure_default_data(Path("data/dataset"), shared)
        status = run_command("preprocess", ["--dataset_class", "kp20k", "--source_dataset_dir", str(source),
                                            "--output_path", folder])
        dataset = ("kp20k", "kp20k")
    else:
        status = run_command("preprocess", ["--dataset_class", "multidata", "--dataset_name", corpus,
                                            "--source_dataset_dir", str(shared / "liaad" / "WikiNews.zip"),
                                            "--output_path", folder])
        dataset = ("multidata", corpus)
    if status:
        raise SystemExit(status)
    return dataset


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    ks = (1, 3, 5)
    header = "| rank | method | " + " | ".join(f"F1@{k} | P@{k} | R@{k}" for k in ks) + " |"
    lines = [header, "|" + "---|" * (2 + 3 * len(ks))]
    ranked = sorted(rows, key=lambda row: -row[1]["F1@5"])
    for rank, (head, scores) in enumerate(ranked, start=1):
        cells = " | ".join(f"{scores[f'F1@{k}']:.3f} | {scores[f'P@{k}']:.3f} | {scores[f'R@{k}']:.3f}" for k in ks)
        lines.append(f"| {rank} | {HEAD_NAMES[head]} | {cells} |")
    return "\n".join(lines)


def write_section(readme: Path, name: str, body: str) -> None:
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {start} ... {end} section")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("inspec", "wikinews"), default="inspec")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--shared_datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--preprocess_folder", default="data/prepro_dataset")
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args, extra = parser.parse_known_args()
    dataset_class, dataset_name = preprocess(args.corpus, args.shared_datasets, args.preprocess_folder)
    settings = effective_settings(TRAIN_SETTINGS + extra)
    rows = []
    for head in args.heads:
        run_name = f"table_{dataset_name}_{head}"
        run_dir = Path(args.output_dir) / run_name
        status = 0
        if (run_dir / "metrics.json").is_file():
            print(f"{head}: {run_dir} is complete, kept")
        elif (run_dir / "last").is_dir():  # an interrupted run: continue it where it stopped
            status = run_command("train", ["--resume", str(run_dir)])
        else:
            if run_dir.exists():  # stopped before its first checkpoint: nothing worth keeping
                shutil.rmtree(run_dir)
            status = run_command("train", ["--dataset_class", dataset_class, "--dataset_name", dataset_name,
                                           "--preprocess_folder", args.preprocess_folder,
                                           "--output_dir", args.output_dir, "--run_name", run_name,
                                           "--model_class", head, *head_settings(settings, head)])
        if not (run_dir / "metrics.json").is_file():
            return status or 1
        rows.append((head, json.loads((run_dir / "metrics.json").read_text())["eval"]))
    command = "python scripts/run_all_heads.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    body = "\n".join([table(rows), "", f"Produced by `{command.strip()}` with `{' '.join(settings)}`."])
    print(body)
    write_section(args.readme, args.corpus, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
