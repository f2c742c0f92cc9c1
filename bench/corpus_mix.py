"""Training on two corpora at once at full size: peak memory and start-up against one.

    python bench/scale.py --corpus kp20k --size 530000 --stages make preprocess store
    python bench/scale.py --corpus kp20k --size 10000 --stages make preprocess store
    python bench/corpus_mix.py --big 530000 --small 10000 --repeats 2

Reuses the preprocessed corpora and feature stores `bench/scale.py` left under
<workdir>/scale/ (store keys hash the file's bytes, not its name, so they are linked
under the names a two-corpus run reads). Each run trains bert2joint for 50 steps from the
default encoder (micro-batch 8, `--attention_dropout 0`, no evaluation), alternating:
the big corpus alone (`--dataset_class kp20k`), and the big and small corpora together
(`--train_datasets kp20k:big kp20k:small --sampling_temperature 2`, so that an epoch
plans repeats of the small corpus and a part of the big one). Reported: the process's
peak RSS (kernel high-water mark), the time until the loop starts and s a step; medians.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import common
from scale import environment, measured, script

TRAIN = ["--model_class", "bert2joint", "--max_train_steps", "50", "--per_gpu_train_batch_size", "8",
         "--gradient_accumulation_steps", "1", "--no_eval", "--no-test_after_training", "--display_iter", "10",
         "--attention_dropout", "0"]
FILES = ("train", "dev", "eval", "dev_candidate", "eval_candidate")


def link_corpus(source: Path, cache: Path, name: str, layout: Path, links: Path) -> None:
    """`layout/NAME/NAME.*.json` and `links/NAME.SPLIT.KEY` pointing at a scale corpus and its stores."""
    (layout / name).mkdir(parents=True, exist_ok=True)
    for part in FILES:
        target = layout / name / f"{name}.{part}.json"
        if not target.exists():
            target.symlink_to(source / f"kp20k.{part}.json")
    for store in cache.iterdir():
        if store.is_dir():
            link = links / store.name.replace("kp20k.", f"{name}.", 1)
            if not link.exists():
                link.symlink_to(store)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=530_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", default=str(common.DEFAULT_WORKDIR))
    args = parser.parse_args(argv)
    scale = Path(args.workdir) / "scale"
    root = Path(args.workdir) / "corpus_mix"
    layout, links, runs = root / "prepro", root / "cache", root / "runs"
    links.mkdir(parents=True, exist_ok=True)
    for name, size in (("big", args.big), ("small", args.small)):
        corpus = scale / f"kp20k-{size}"
        link_corpus(corpus / "prepro" / "kp20k", corpus / "cache", name, layout, links)
    big = scale / f"kp20k-{args.big}"
    setups = {
        "big alone": ["--dataset_class", "kp20k", "--preprocess_folder", str(big / "prepro"),
                      "--cached_features_dir", str(big / "cache")],
        "big + small, T = 2": ["--train_datasets", "kp20k:big", "kp20k:small", "--sampling_temperature", "2",
                               "--preprocess_folder", str(layout), "--cached_features_dir", str(links)],
    }
    results: dict[str, list[dict]] = {name: [] for name in setups}
    for repeat in range(args.repeats):
        for name, data in setups.items():
            run_name = f"{name.split()[0]}_{len(data)}_{repeat}"
            result = measured(script("train.py", 1, *data, *TRAIN, "--output_dir", str(runs), "--run_name", run_name),
                              root / f"{run_name}.log", environment(2), marker="training bert2joint on")
            log = (runs / run_name / "train.log").read_text()
            steps = [float(value) for value in re.findall(r"\(([0-9.]+) s/step\)", log)]
            result["seconds_per_step"] = statistics.median(steps) if steps else None
            result["epoch"] = re.search(r"corpora \(sampling.*", log).group(0) if "corpora (" in log else ""
            results[name].append(result)
            print(f"{name} #{repeat + 1}: peak RSS {result['peak_rss_mb']:.0f} MB, start-up "
                  f"{result['marker_s']:.1f} s, {result['seconds_per_step']} s a step {result['epoch']}", flush=True)
    baseline = statistics.median(result["peak_rss_mb"] for result in results["big alone"])
    print("\n| runs | peak RSS (MB), each | median | ratio | start-up (s), median | s a step, median |")
    print("|---|---|---|---|---|---|")
    for name, runs_ in results.items():
        peaks = [result["peak_rss_mb"] for result in runs_]
        print(f"| {name} | {', '.join(f'{peak:.0f}' for peak in peaks)} | {statistics.median(peaks):.0f} | "
              f"{statistics.median(peaks) / baseline:.3f} | "
              f"{statistics.median(result['marker_s'] for result in runs_):.1f} | "
              f"{statistics.median(result['seconds_per_step'] for result in runs_):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
