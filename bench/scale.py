"""Full-size corpora: time, peak memory per process and disk of every stage, from a
preprocessed corpus to a trained model's test, at the sizes our users train on.

Corpora are made from the shared files (nothing is downloaded):
- kp20k: SIZE training abstracts, the shared KP20K-layout Inspec training file cycled, each
  copy's sentences rotated by its copy number; 500 validation abstracts; 20,000 test
  abstracts, the testing file cycled the same way.
- openkp: SIZE training pages of about 900 words, cut from the shared news (KPCrowd) and
  paper (SemEval2010, SemEval2017) text, a page's KeyPhrases its sources' keys found in
  it; 20,000 Dev pages made the same way from other offsets, 500 EvalPublic pages.

Stages, each a separate process tree measured from outside (wall time; peak RSS of every
process of the tree, from the kernel's high-water mark VmHWM, polled every 0.2 s):
make (write the corpus), preprocess, store (`bertkpe featurize`: the training split, then
the others), train (50 optimizer steps of bert2joint on the default encoder, micro-batch 8,
`--attention_dropout 0` as `make demo` trains, one process and torchrun x2; start-up is the
time until the loop starts), test (the 20,000-document test split with the trained model,
one process and torchrun x2, whose predictions are compared).

    python bench/scale.py --corpus kp20k --size 10000
    python bench/scale.py --corpus openkp --size 134000 --stages make preprocess store
    python bench/scale.py --report          # every result under <workdir>/scale/ as tables
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STAGES = ("make", "preprocess", "store", "train", "test")
TEST_DOCUMENTS = 20_000
DEV_DOCUMENTS = 500
PAGE_WORDS = 900
TRAIN_STEPS = 50
PAGE_SOURCES = ("500N-KPCrowd-v1.1", "SemEval2010", "SemEval2017")
DATASET_FILES = {"kp20k": ("kp20k_training.json", "kp20k_validation.json", "kp20k_testing.json"),
                 "openkp": ("OpenKPTrain.jsonl", "OpenKPDev.jsonl", "OpenKPEvalPublic.jsonl")}
TEST_SPLIT = {"kp20k": "eval", "openkp": "dev"}  # the split of 20,000 documents with references


# ----------------------------------------------------------------------------- corpora

def rotated(sentences: list[str], by: int) -> list[str]:
    by %= max(len(sentences), 1)
    return sentences[by:] + sentences[:by]


def kp20k_rows(source: Path, count: int) -> Iterator[dict[str, str]]:
    """`count` rows of a KP20K-layout file cycled; copy c has its abstract's sentences rotated by c."""
    rows = common.read_jsonl(source)
    for index in range(count):
        copy, row = divmod(index, len(rows))
        row = rows[row]
        sentences = re.split(r"(?<=\.) ", row["abstract"])
        yield {**row, "abstract": " ".join(rotated(sentences, copy))}


def liaad_documents(datasets: Path) -> list[tuple[list[str], list[list[str]]]]:
    """(words, keyphrases as lower-cased word lists) of the English news and paper corpora."""
    documents = []
    for name in PAGE_SOURCES:
        with zipfile.ZipFile(datasets / "liaad" / f"{name}.zip") as archive:
            names = set(archive.namelist())
            for text_name in sorted(item for item in names if "/docsutf8/" in item and item.endswith(".txt")):
                key_name = text_name.replace("/docsutf8/", "/keys/")[:-4] + ".key"
                words = re.findall(r"\w+", archive.read(text_name).decode("utf-8", "replace"))
                keys = archive.read(key_name).decode("utf-8", "replace").splitlines() if key_name in names else []
                phrases = [re.findall(r"\w+", key.lower()) for key in keys]
                documents.append((words, [phrase for phrase in phrases if phrase]))
    return documents


def openkp_rows(documents: list[tuple[list[str], list[list[str]]]], count: int, seed: int,
                with_keyphrases: bool = True) -> Iterator[dict[str, Any]]:
    """Pages of PAGE_WORDS words: a run of one document's words, continued with the next
    documents' where it is shorter; KeyPhrases are their keys that occur in the page."""
    rng = random.Random(seed)
    for index in range(count):
        first = rng.randrange(len(documents))
        words: list[str] = []
        keys: list[list[str]] = []
        number = first
        while len(words) < PAGE_WORDS:
            doc_words, doc_keys = documents[number % len(documents)]
            start = rng.randrange(max(len(doc_words) - PAGE_WORDS, 0) + 1) if not words else 0
            words.extend(doc_words[start:start + PAGE_WORDS - len(words)])
            keys.extend(doc_keys)
            number += 1
        row: dict[str, Any] = {"url": f"page-{seed}-{index}", "text": " ".join(words), "VDOM": "[]"}
        if with_keyphrases:
            text = " " + " ".join(words).lower() + " "
            present = [key for key in dict.fromkeys(map(tuple, keys)) if f" {' '.join(key)} " in text]
            row["KeyPhrases"] = [list(key) for key in present[:10]]
        yield row


def write_rows(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def make_corpus(corpus: str, size: int, datasets: Path, folder: Path, test_size: int) -> dict[str, int]:
    train, dev, test = DATASET_FILES[corpus]
    target = folder / corpus
    if corpus == "kp20k":
        shared = datasets / "kp20k"
        return {"train": write_rows(target / train, kp20k_rows(shared / train, size)),
                "dev": write_rows(target / dev, kp20k_rows(shared / dev, DEV_DOCUMENTS)),
                "eval": write_rows(target / test, kp20k_rows(shared / test, test_size))}
    documents = liaad_documents(datasets)
    return {"train": write_rows(target / train, openkp_rows(documents, size, seed=1)),
            "dev": write_rows(target / dev, openkp_rows(documents, test_size, seed=2)),
            "eval": write_rows(target / test, openkp_rows(documents, DEV_DOCUMENTS, seed=3, with_keyphrases=False))}


# ----------------------------------------------------------------------------- measuring a process tree

def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def high_water_mb(pid: int) -> tuple[float, str] | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            status = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return (int(found.group(1)) / 1024, command) if found else None


def measured(command: list[str], log: Path, env: dict[str, str], marker: str | None = None) -> dict[str, Any]:
    """Run `command` to its end; wall time, each process's peak RSS, and when `marker` was logged."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=common.REPO)
    peaks: dict[int, tuple[float, str]] = {}
    marker_s = None
    while process.poll() is None:
        for pid in process_tree(process.pid):
            found = high_water_mb(pid)
            if found is not None and found[0] >= peaks.get(pid, (0.0, ""))[0]:
                peaks[pid] = found
        if marker and marker_s is None and marker in log.read_text(errors="replace"):
            marker_s = time.monotonic() - started
        time.sleep(0.2)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): see {log}\n"
                         f"{log.read_text(errors='replace')[-3000:]}")
    workers = [mb for mb, name in peaks.values() if "torch.distributed.run" not in name]
    commit = subprocess.run(["git", "-C", str(common.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"seconds": wall, "peak_rss_mb": max(workers, default=0.0), "processes": len(peaks),
              "peaks_mb": sorted((round(mb, 1) for mb, _ in peaks.values()), reverse=True)[:8], "commit": commit}
    if marker:
        result["marker_s"] = marker_s
    return result


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# ----------------------------------------------------------------------------- stages

def environment(threads: int) -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(common.REPO)}


def bertkpe(*argv: str) -> list[str]:
    return [sys.executable, "-m", "bertkpe.cli", *argv]


def script(name: str, processes: int, *argv: str) -> list[str]:
    path = str(common.REPO / "scripts" / name)
    if processes == 1:
        return [sys.executable, path, *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            path, *argv]


def run_stages(args) -> dict[str, Any]:
    root = Path(args.workdir) / "scale" / f"{args.corpus}-{args.size}"
    corpus, prepro, cache, runs = root / "corpus", root / "prepro", root / "cache", root / "runs"
    result_path = root / "result.json"
    results: dict[str, Any] = json.loads(result_path.read_text()) if result_path.is_file() else {}
    results.update({"corpus": args.corpus, "size": args.size, "machine": common.machine_info()})
    stages = results.setdefault("stages", {})
    data = ["--dataset_class", args.corpus, "--preprocess_folder", str(prepro), "--cached_features_dir", str(cache)]

    def save() -> None:
        result_path.write_text(json.dumps(results, indent=2) + "\n")

    if "make" in args.stages:
        shutil.rmtree(corpus, ignore_errors=True)
        started = time.monotonic()
        counts = make_corpus(args.corpus, args.size, Path(args.datasets), corpus, args.test_documents)
        stages["make"] = {"seconds": time.monotonic() - started, "documents": counts,
                          "source_bytes": folder_bytes(corpus)}
        save()
    if "preprocess" in args.stages:
        shutil.rmtree(prepro, ignore_errors=True)
        stages["preprocess"] = measured(bertkpe("preprocess", "--dataset_class", args.corpus, "--source_dataset_dir",
                                                str(corpus), "--output_path", str(prepro)),
                                        root / "logs" / "preprocess.log", environment(2))
        stages["preprocess"]["bytes"] = folder_bytes(prepro)
        save()
    if "store" in args.stages:
        shutil.rmtree(cache, ignore_errors=True)
        for splits in (["train"], ["dev", "eval"]):
            name = "store_" + "_".join(splits)
            stages[name] = measured(bertkpe("featurize", *data, "--splits", *splits),
                                    root / "logs" / f"{name}.log", environment(1))
            save()
        for store in cache.iterdir():
            if store.is_dir():
                meta = json.loads((store / "meta.json").read_text())
                split = store.name.split(".")[1]
                stages[f"store_{split}_bytes"] = {"bytes": folder_bytes(store), "documents": meta["documents"],
                                                  "bytes_per_document": folder_bytes(store) / meta["documents"]}
        save()
    for processes in args.procs:
        run_name = f"train_{processes}"
        if "train" in args.stages:
            shutil.rmtree(runs / run_name, ignore_errors=True)
            stages[run_name] = measured(
                script("train.py", processes, *data, "--model_class", "bert2joint", "--output_dir", str(runs),
                       "--run_name", run_name, "--max_train_steps", str(TRAIN_STEPS), "--per_gpu_train_batch_size",
                       "8", "--gradient_accumulation_steps", "1", "--no_eval", "--no-test_after_training",
                       "--display_iter", "10", *args.train_flags),
                root / "logs" / f"{run_name}.log", environment(2 // processes), marker="training bert2joint on")
            steps = [float(value) for value in re.findall(r"\(([0-9.]+) s/step\)",
                                                         (runs / run_name / "train.log").read_text())]
            stages[run_name]["seconds_per_step"] = sorted(steps)[len(steps) // 2] if steps else None
            save()
        if "test" in args.stages:
            test_name = f"test_{processes}"
            shutil.rmtree(runs / test_name, ignore_errors=True)
            test_data = data if not args.test_subset else \
                data[:2] + ["--preprocess_folder", str(test_subset(prepro, args.corpus, args.test_subset))] + data[4:]
            stages[test_name] = measured(
                script("test.py", processes, *test_data, "--eval_checkpoint", str(runs / "train_1" / "best"),
                       "--output_dir", str(runs), "--run_name", test_name, "--splits", TEST_SPLIT[args.corpus]),
                root / "logs" / f"{test_name}.log", environment(2 // processes))
            metrics = json.loads((runs / test_name / "metrics.json").read_text())
            split = metrics.get(TEST_SPLIT[args.corpus], {})
            stages[test_name].update({"documents": split.get("num_docs"), "F1@5": split.get("F1@5")})
            stages[test_name]["documents_per_s"] = (split.get("num_docs") or 0) / stages[test_name]["seconds"]
            save()
    if "test" in args.stages and len(args.procs) > 1:
        results["test_outputs"] = compare_predictions(
            [runs / f"test_{processes}" / f"predictions.{TEST_SPLIT[args.corpus]}.jsonl" for processes in args.procs])
        save()
    return results


def test_subset(prepro: Path, corpus: str, documents: int) -> Path:
    """A preprocessed folder whose test split is the first `documents` of the corpus's."""
    split = TEST_SPLIT[corpus]
    folder = prepro.with_name(f"prepro_first_{documents}")
    for name in (f"{corpus}.{split}.json", f"{corpus}.{split}_candidate.json"):
        (folder / corpus).mkdir(parents=True, exist_ok=True)
        with open(prepro / corpus / name, encoding="utf-8") as source, \
                open(folder / corpus / name, "w", encoding="utf-8") as target:
            target.writelines(line for _, line in zip(range(documents), source))
    return folder


def compare_predictions(paths: list[Path]) -> dict[str, Any]:
    """Whether test runs under different process counts predicted the same phrases, in the
    same order, for the same documents; their scores differ in the last bits where the
    processes ran on different numbers of threads."""
    first, *others = [common.read_jsonl(path) for path in paths]
    same = all([row["url"] for row in other] == [row["url"] for row in first] and
               all(a["KeyPhrases"] == b["KeyPhrases"] for a, b in zip(first, other)) for other in others)
    difference = max((abs(x - y) for other in others for a, b in zip(first, other)
                      for x, y in zip(a["Scores"], b["Scores"])), default=0.0)
    return {"same_phrases": same, "max_score_difference": difference, "documents": len(first)}


# ----------------------------------------------------------------------------- report

def gb(mb: float) -> str:
    """A peak RSS (read in KiB from the kernel) in MiB or GiB."""
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def report(workdir: Path) -> str:
    results = [json.loads(path.read_text()) for path in sorted((workdir / "scale").glob("*/result.json"))]
    results.sort(key=lambda item: (item["corpus"] != "kp20k", item["size"]))
    lines = ["| corpus | stage | processes | wall | peak RSS per process | notes |", "|---|---|---|---|---|---|"]
    for item in results:
        name = f"{item['corpus']} {item['size']:,}"
        stages = item["stages"]
        make = stages.get("make", {})
        if make:
            lines.append(f"| {name} | source files | | | | {make['source_bytes'] / 1e9:.2f} GB, "
                         f"{make['documents']['train']:,} / {make['documents']['dev']:,} / "
                         f"{make['documents']['eval']:,} documents |")
        if "preprocess" in stages:
            stage = stages["preprocess"]
            lines.append(f"| {name} | preprocess | 1 | {stage['seconds']:.0f} s | {gb(stage['peak_rss_mb'])} | "
                         f"output {stage['bytes'] / 1e9:.2f} GB |")
        for split in ("train", "dev_eval"):
            stage = stages.get(f"store_{split}")
            if stage:
                sizes = [stages.get(f"store_{part}_bytes") for part in split.split("_")]
                notes = ", ".join(f"{part} {size['bytes'] / 1e6:,.0f} MB ({size['bytes_per_document'] / 1e3:.1f} KB "
                                  f"a document)" for part, size in zip(split.split("_"), sizes) if size)
                lines.append(f"| {name} | store: {split.replace('_', ' + ')} | 1 + {stage['processes'] - 1} workers | "
                             f"{stage['seconds']:.0f} s | {gb(stage['peak_rss_mb'])} | {notes} |")
        for kind, processes in (("train", 1), ("train", 2), ("test", 1), ("test", 2)):
            stage = stages.get(f"{kind}_{processes}")
            if not stage:
                continue
            notes = (f"start-up {stage['marker_s']:.1f} s, {stage['seconds_per_step']:.2f} s a step" if kind == "train"
                     else f"{stage['documents']:,} documents, {stage['documents_per_s']:.1f} a second, "
                          f"F1@5 {stage['F1@5']:.4f}")
            what = f"{TRAIN_STEPS} training steps" if kind == "train" else "test"
            lines.append(f"| {name} | {what} | {processes} | {stage['seconds']:.0f} s | {gb(stage['peak_rss_mb'])} | "
                         f"{notes} |")
        if "test_outputs" in item:
            outputs = item["test_outputs"]
            lines.append(f"| {name} | test predictions, 1 and 2 processes | | | | "
                         f"{'same phrases' if outputs['same_phrases'] else '**phrases differ**'} for "
                         f"{outputs['documents']:,} documents, scores within {outputs['max_score_difference']:.1e} |")
    kp20k = {item["size"]: item["stages"] for item in results if item["corpus"] == "kp20k"}
    if len(kp20k) > 1:
        low, high = min(kp20k), max(kp20k)
        if "store_train" in kp20k[low] and "store_train" in kp20k[high]:
            exponent = math.log(kp20k[high]["store_train"]["seconds"] / kp20k[low]["store_train"]["seconds"]) / \
                math.log(high / low)
            lines.append("")
            lines.append(f"Store build time exponent from {low:,} to {high:,} training abstracts: {exponent:.2f}.")
        for stage in ("train_1", "train_2", "test_1", "test_2"):
            if stage in kp20k[low] and stage in kp20k[high]:
                ratio = kp20k[high][stage]["peak_rss_mb"] / kp20k[low][stage]["peak_rss_mb"]
                lines.append(f"Peak RSS of {stage.replace('_', ' x')} at {high:,} over {low:,}: {ratio:.2f}x.")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=sorted(DATASET_FILES), default="kp20k")
    parser.add_argument("--size", type=int, default=10_000, help="training documents")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--test_documents", type=int, default=TEST_DOCUMENTS, help="documents of the test split")
    parser.add_argument("--test_subset", type=int, default=None,
                        help="test on the first N documents of the test split only (a long-page corpus's 20,000 "
                             "take hours on a CPU)")
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2], help="process counts of train and test")
    parser.add_argument("--train_flags", nargs=argparse.REMAINDER, default=["--attention_dropout", "0"],
                        help="flags added to the training command (last on the line)")
    parser.add_argument("--datasets", default=str(common.DEFAULT_DATASETS))
    parser.add_argument("--workdir", default=str(common.DEFAULT_WORKDIR))
    parser.add_argument("--report", action="store_true", help="print the tables of every result so far")
    args = parser.parse_args(argv)
    if not args.report:
        run_stages(args)
    print(report(Path(args.workdir)))


if __name__ == "__main__":
    main()
