"""Shared helpers for the bertkpe benchmarks (bench/*.py).

Every benchmark writes only under a temporary work directory (default
$TMPDIR/bertkpe_bench, or --workdir), never into the repository.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
try:  # the installed package (or a copy put first on PYTHONPATH, to measure a candidate change)
    import bertkpe  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

DEFAULT_DATASETS = Path(os.environ.get("BERTKPE_DATASETS", REPO.parent / "shared" / "datasets"))
DEFAULT_WORKDIR = Path(os.environ.get("BERTKPE_BENCH_DIR", Path(tempfile.gettempdir()) / "bertkpe_bench"))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer repetitions / smaller inputs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                        help="autocast dtype for model code (fp16 needs CUDA)")
    parser.add_argument("--datasets", default=str(DEFAULT_DATASETS), help="folder with kp20k/ and openkp/")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="scratch folder (outside the repo)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per figure (median)")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def apply_threads(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def default_encoder() -> str:
    from bertkpe.options import resolve_encoder

    return resolve_encoder("default")


# ----------------------------------------------------------------------------- timing


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device, dtype: str):
    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return torch.autocast(device_type=torch.device(device).type, dtype=amp)


def time_once(fn: Callable[[], Any], device="cpu") -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


CPU_SAMPLES: dict[str, list[float]] = {}  # process CPU seconds of the last interleaved() runs


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, device="cpu"
                ) -> dict[str, list[float]]:
    """Time several functions round-robin, the order reversed every other round
    (A B C C B A A B C ...), so that machine load drifting over a round hits every
    candidate alike, first and last included. Returns the timed wall-clock samples of each
    (warm-ups dropped); the process CPU time of the same runs is left in CPU_SAMPLES (less
    sensitive to other processes on a shared machine, though it counts OpenMP spin-waiting)."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    CPU_SAMPLES.clear()
    names = list(fns)
    for round_index in range(warmup + repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            fn = fns[name]
            cpu_start = time.process_time()
            elapsed = time_once(fn, device)
            cpu = time.process_time() - cpu_start
            if round_index >= warmup:
                samples[name].append(elapsed)
                CPU_SAMPLES.setdefault(name, []).append(cpu)
    return samples


def median(values) -> float:
    return float(statistics.median(values))


def paired_ratio(samples, baseline) -> float:
    """Median of the per-round ratios sample / baseline: each round's pair ran close in
    time, a robustness check on the ratio of the medians."""
    return median([value / base for value, base in zip(samples, baseline)])


def spread(values) -> str:
    """min-max of the samples, for the report."""
    return f"{min(values):.3g}-{max(values):.3g}"


# ----------------------------------------------------------------------------- machine


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    model = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "load_avg": [round(x, 2) for x in load_average()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def machine_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['cuda']}" if info.get("cuda") else ""
    return (f"CPU {info['cpu']} ({info['cores']} cores){gpu}; torch {info['torch']}, "
            f"transformers {info['transformers']}, torch threads {info['threads']}; "
            f"load average {info['load_avg'][0]:.2f}/{info['load_avg'][1]:.2f}/{info['load_avg'][2]:.2f}")


# ----------------------------------------------------------------------------- data


def untrained_checkpoint(workdir: str | Path, dataset_class: str, stemmer: str) -> Path:
    """A seeded, untrained bert2joint head over the default encoder, saved once under
    workdir: extraction speed does not depend on training."""
    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.models import build_model

    directory = Path(workdir) / f"ckpt_bert2joint_{dataset_class}"
    if not (directory / "kpe_config.json").is_file():
        import torch

        torch.manual_seed(0)
        encoder = default_encoder()
        build_model("bert2joint", encoder).save_pretrained(
            directory, load_tokenizer(encoder), extra={"dataset_class": dataset_class, "stemmer": stemmer,
                                                       "max_token": 510})
    return directory


def preprocessed(workdir: str | Path, datasets: str | Path, dataset_class: str) -> Path:
    """The folder `bertkpe preprocess` writes for a dataset class, made once under workdir."""
    output = Path(workdir) / "prepro"
    folder = output / dataset_class
    if not (folder / f"{dataset_class}.train.json").is_file():
        output.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "bertkpe.cli", "preprocess", "--dataset_class", dataset_class,
                        "--source_dataset_dir", str(datasets), "--output_path", str(output)],
                       check=True, cwd=str(REPO), stdout=subprocess.DEVNULL)
    return folder


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def write_json(path: str | None, value: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(value, indent=2, default=str) + "\n")


def bar(ok: bool) -> str:
    return "met" if ok else "**MISSED**"
