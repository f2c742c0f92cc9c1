"""Run every bertkpe benchmark and print one markdown report.

    python bench/run_all.py            # full (about 1.5 hours on 2 CPU cores)
    python bench/run_all.py --quick    # short version (one timed run each, smaller inputs)
    python bench/run_all.py --device cuda --dtype bf16

Each section runs in its own process (bench/features.py, overhead.py, memory.py,
extract.py); raw results go to <workdir>/results/*.json. Before each section the
script waits (up to --max-wait s) until the 1-minute load average is below
--max-load, and records the load it started at: on a shared machine, numbers taken
under load are not honest. Nothing is written into the repository.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    waited = 0.0
    while os.getloadavg()[0] >= max_load and waited < max_wait:
        time.sleep(30)
        waited += 30
    return os.getloadavg()[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--only", nargs="+", default=None,
                        help="sections to run: features, overhead, overhead-base, memory, extract, train-step "
                             "(overhead-HEAD / overhead-base-HEAD for one head)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait until load1 is below this")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for it per section")
    args = parser.parse_args(argv)

    shared = ["--device", args.device, "--dtype", args.dtype, "--datasets", args.datasets, "--workdir", args.workdir]
    if args.quick:
        shared.append("--quick")
    if args.repeats:
        shared += ["--repeats", str(args.repeats)]
    if args.threads:
        shared += ["--threads", str(args.threads)]
    results_dir = Path(args.workdir) / "results"
    base = ["--encoder", "base", "--batch-size", "1" if args.quick else "8"]
    if not args.repeats:
        base += ["--repeats", "1" if args.quick else "4"]
    heads = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
    sections = {
        "features": ["features.py"],
        # one process per head (each with its own bare-encoder baseline, interleaved):
        # shorter processes, and a busy shared machine hits each comparison alike
        **{f"overhead-{head}": ["overhead.py", "--encoder", "default", "--heads", head] for head in heads},
        # inference steps are short and noisy here: many rounds, all heads in one process
        "overhead-inference": ["overhead.py", "--encoder", "default", "--skip-training",
                               "--repeats", "2" if args.quick else "30"],
        **{f"overhead-base-{head}": ["overhead.py", *base, "--heads", head] for head in heads},
        "memory": ["memory.py"] + (["--lengths", "64", "128", "256", "--batch-size", "2"] if args.quick else []),
        "extract": ["extract.py"],
        "train-step": ["train_step.py"] + (["--batches", "2", "--repeats", "1"] if args.quick else []),
    }
    info = common.machine_info()
    print("# bertkpe benchmarks" + (" (quick)" if args.quick else ""), "")
    print(common.machine_line(info), "")
    status = 0
    for name, (script, *extra) in sections.items():
        group = name.rsplit("-", 1)[0] if name.startswith("overhead-") else name  # overhead, overhead-base
        if args.only and name not in args.only and group not in args.only:
            continue
        load = wait_for_quiet(args.max_load, args.max_wait)
        command = [sys.executable, str(HERE / script), *extra, *shared, "--json", str(results_dir / f"{name}.json")]
        print(f"<!-- {name}: started at load average {load:.2f}: "
              f"{' '.join(['python', 'bench/' + script, *extra, *shared])} -->", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if done.returncode != 0:
            status = 1
            print(f"**{name} failed** (exit {done.returncode}):\n```\n{done.stderr[-3000:]}\n```\n")
            continue
        print(done.stdout.strip())
        print(f"\n_({name}: {time.perf_counter() - start:.0f} s; load average at the end "
              f"{os.getloadavg()[0]:.2f})_\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
