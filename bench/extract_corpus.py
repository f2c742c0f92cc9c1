"""`bertkpe extract` over a corpus file: documents/s with one process and under torchrun.

Checkpoint: an untrained bert2joint head over the default encoder (speed does not depend
on training), saved with the kp20k options. Input: the first --docs documents of
kp20k/kp20k_testing.json (Inspec test abstracts), text = title + ". " + abstract, as
JSON lines. Each round runs the command once per process count, the order reversed
every other round. Two figures per run: the rate the command prints (documents over
the time from the first document read to the last record written) and documents over
the whole command's wall time (start-up and model load included). One process runs
with torch's default threads and on one thread, as each torchrun process does; outputs
are compared byte for byte with the one-thread output (float sums, and so the last
bits of a score, depend on the number of threads).

    python bench/extract_corpus.py [--docs 500] [--nproc 1 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def write_corpus(datasets: Path, workdir: Path, count: int) -> Path:
    path = workdir / f"inspec_test_{count}.jsonl"
    with open(datasets / "kp20k" / "kp20k_testing.json", encoding="utf-8") as source, \
            open(path, "w", encoding="utf-8") as target:
        for index, line in zip(range(count), source):
            row = json.loads(line)
            target.write(json.dumps({"id": index, "text": f"{row['title']}. {row['abstract']}"}) + "\n")
    return path


def command(nproc: int, checkpoint: Path, corpus: Path, output: Path, device: str) -> list[str]:
    extract = ["extract", "--checkpoint", str(checkpoint), "--input", str(corpus), "--format", "jsonl",
               "--output", str(output), "--overwrite", "--device", device]
    if nproc == 1:
        return [sys.executable, "-m", "bertkpe", *extract]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "bertkpe", *extract]


def configurations(nprocs: list[int]) -> list[tuple[str, int, int | None]]:
    """(label, processes, OMP threads): one process also on one thread, which is what
    each torchrun process gets, so that its output can be compared byte for byte."""
    rows = []
    for nproc in nprocs:
        if nproc == 1:
            rows += [("1 process", 1, None), ("1 process, 1 thread", 1, 1)]
        else:
            rows.append((f"torchrun, {nproc} processes of 1 thread", nproc, None))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = common.untrained_checkpoint(workdir, "kp20k", "porter")
    corpus = write_corpus(Path(args.datasets), workdir, args.docs)
    runs = configurations(args.nproc)
    rates: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    walls: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    outputs: dict[str, bytes] = {}
    for round_index in range(repeats):
        for label, nproc, threads in runs if round_index % 2 == 0 else reversed(runs):
            output = workdir / f"extract_corpus_{nproc}_{threads}.jsonl"
            env = {**os.environ, "TQDM_DISABLE": "1"}
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
            start = time.perf_counter()
            done = subprocess.run(command(nproc, checkpoint, corpus, output, args.device), cwd=str(common.REPO),
                                  env=env, capture_output=True, text=True, check=True)
            walls[label].append(time.perf_counter() - start)
            rates[label].append(float(re.search(r"\(([\d.]+) docs/s\)", done.stderr).group(1)))
            if outputs.setdefault(label, output.read_bytes()) != output.read_bytes():
                outputs[label] = b"differs between runs"
    info = common.machine_info()
    print(common.machine_line(info))
    print(f"{args.docs} documents, median of {repeats} runs\n")
    print("| run | extraction docs/s (median) | spread | whole command s (median) | docs/s over the whole command |")
    print("|---|---|---|---|---|")
    rows = []
    for label, nproc, threads in runs:
        wall = common.median(walls[label])
        rows.append({"run": label, "nproc": nproc, "threads": threads, "docs_per_s": common.median(rates[label]),
                     "rates": rates[label], "wall_s": wall, "walls": walls[label]})
        print(f"| {label} | {common.median(rates[label]):.1f} | {common.spread(rates[label])} | {wall:.1f} | "
              f"{args.docs / wall:.1f} |")
    one_thread = outputs.get("1 process, 1 thread")
    identical = {label: data == one_thread for label, data in outputs.items() if one_thread is not None}
    print("\noutput byte-identical to the 1-process, 1-thread output: "
          + ", ".join(f"{label}: {same}" for label, same in identical.items()))
    for nproc in args.nproc:
        print("    " + " ".join(["python"] + command(nproc, checkpoint, corpus, Path("OUT.jsonl"), args.device)[1:]))
    result = {"machine": info, "docs": args.docs, "rows": rows, "identical": identical}
    common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
