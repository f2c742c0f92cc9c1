"""The GPU check: every path a GPU user takes, run for real, with one summary table.

    python bench/gpu_check.py                          # on a CUDA machine (a few minutes)
    python bench/gpu_check.py --datasets ../shared/datasets --encoder roberta-base
    python bench/gpu_check.py --device cpu --heads bert2joint   # dry run of the script itself

Steps, each in its own process so that one failure is reported and the rest still run:
  1. preprocess a KP20K-layout corpus (the repository's test fixtures unless --datasets);
  2. train every head for a few steps in bf16 and in fp16 (gradient scaler), each run
     ending with a dev evaluation and a test of its best checkpoint (the path that
     crashed when evaluation decoded a CPU batch against CUDA scores);
  3. kill a bf16 run with SIGKILL after its first saved `last/`, continue it with
     `--resume`, and check that it finishes its step budget (with `--ema_decay`, so the
     moving average is saved and restored on the device too);
  4. `scripts/test.py` on a trained checkpoint in fp16, compared with the run's own test;
  5. `bertkpe extract` on the device;
  6. `torchrun` over every visible GPU (NCCL), in bf16, with `--ema_decay`.
Throughput (documents per second of training) is read from each run's log. Everything
is written under --workdir, never into the repository; `--json` keeps the raw rows.
With `--device cpu` fp16 is skipped (it needs CUDA) and torchrun uses two gloo processes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADS = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
ACCUMULATION = 2
STEP_TIME = re.compile(r"\(([\d.]+) s/step\)")


@dataclass
class Row:
    step: str
    what: str
    ok: bool
    seconds: float
    docs_per_s: float | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)


class Check:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.workdir)
        self.rows: list[Row] = []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        self.cuda = args.device.startswith("cuda")

    # -- running

    def command(self, name: str, argv: list[str], timeout: float | None = None) -> tuple[bool, float, str]:
        """Run one step; its output goes to <workdir>/logs/<name>.log."""
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            try:
                done = subprocess.run(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=timeout or self.args.step_timeout)
                ok = done.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
        seconds = time.perf_counter() - start
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if not ok else []
        return ok, seconds, (tail[0][-160:] if tail else "")

    def bertkpe(self, command: str) -> list[str]:
        return [sys.executable, "-m", "bertkpe.cli", command]

    def train_argv(self, run_name: str, model_class: str, precision: str, *extra: str) -> list[str]:
        argv = ["--dataset_class", "kp20k", "--preprocess_folder", str(self.work / "data"),
                "--cached_features_dir", str(self.work / "cache"), "--pretrain_model_type", self.args.encoder,
                "--model_class", model_class, "--output_dir", str(self.work / "runs"), "--run_name", run_name,
                "--max_train_steps", str(self.args.steps), "--per_gpu_train_batch_size", str(self.args.batch_size),
                "--gradient_accumulation_steps", str(ACCUMULATION), "--display_iter", "1", "--learning_rate", "1e-4",
                "--per_gpu_test_batch_size", "16", *extra]
        if precision != "fp32":
            argv.append(f"--{precision}")
        if not self.cuda:
            argv.append("--no_cuda")
        return argv

    def throughput(self, run_name: str, processes: int = 1) -> float | None:
        """Training documents per second, from the step times the run logged (first step left out)."""
        log = self.work / "runs" / run_name / "train.log"
        times = [float(value) for value in STEP_TIME.findall(log.read_text())] if log.is_file() else []
        if not times:
            return None
        return self.args.batch_size * ACCUMULATION * processes / statistics.median(times[1:] or times)

    def metrics(self, run_dir: Path) -> dict:
        path = run_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def add(self, row: Row) -> None:
        self.rows.append(row)
        mark = "ok" if row.ok else "FAILED"
        print(f"[{mark}] {row.step}: {row.what} ({row.seconds:.1f} s) {row.detail}", flush=True)

    # -- the steps

    def prepare(self) -> bool:
        if self.work.exists():
            shutil.rmtree(self.work)
        source = Path(self.args.datasets) if self.args.datasets else REPO / "tests" / "fixtures"
        ok, seconds, detail = self.command("preprocess", self.bertkpe("preprocess") + [
            "--dataset_class", "kp20k", "--source_dataset_dir", str(source), "--output_path", str(self.work / "data")])
        self.add(Row("1 preprocess", f"kp20k layout from {source}", ok, seconds, detail=detail))
        return ok

    def train_heads(self) -> None:
        precisions = ["bf16", "fp16"] if self.cuda else ["bf16"]
        for precision in precisions:
            for head in self.args.heads:
                name = f"{head}_{precision}"
                ok, seconds, detail = self.command(f"train_{name}",
                                                   [sys.executable, "scripts/train.py", *self.train_argv(name, head, precision)])
                scores = self.metrics(self.work / "runs" / name).get("eval", {})
                if ok and "F1@5" in scores:
                    detail = f"eval F1@5 {scores['F1@5']:.4f}"
                self.add(Row("2 train+eval+test", f"{head} {precision}", ok and "F1@5" in scores, seconds,
                             self.throughput(name), detail))
        if not self.cuda:
            self.add(Row("2 train+eval+test", "fp16", True, 0.0, detail="skipped: fp16 needs CUDA"))

    def kill_and_resume(self) -> None:
        head = self.args.heads[-1]
        name = f"{head}_resume"
        argv = [sys.executable, "scripts/train.py",
                *self.train_argv(name, head, "bf16", "--save_every", "1", "--no_eval", "--no-test_after_training",
                                 "--ema_decay", "0.99")]
        state = self.work / "runs" / name / "last" / "training_state.pt"
        log = self.work / "logs" / "resume_killed.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            process = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            while process.poll() is None and not state.is_file() and time.perf_counter() - start < self.args.step_timeout:
                time.sleep(0.05)
            killed = process.poll() is None
            if killed:
                process.send_signal(signal.SIGKILL)
            process.wait()
        if not killed:
            self.add(Row("3 kill + resume", head, False, time.perf_counter() - start,
                         detail="the run ended before its first save; raise --steps"))
            return
        ok, seconds, detail = self.command("resume", [sys.executable, "scripts/train.py", "--resume",
                                                      str(self.work / "runs" / name)])
        train_state = self.work / "runs" / name / "last" / "training_state.pt"
        step = None
        if ok and train_state.is_file():
            import torch

            step = torch.load(train_state, weights_only=True)["train_state"]["step"]
        finished = ok and step == self.args.steps
        self.add(Row("3 kill + resume", f"{head} bf16", finished, time.perf_counter() - start,
                     detail=detail or f"killed after the first save, resumed to step {step}/{self.args.steps}"))

    def test_script(self) -> None:
        head = self.args.heads[-1]
        precision = "fp16" if self.cuda else "bf16"
        trained = self.work / "runs" / f"{head}_{precision}"
        out = self.work / "tests" / f"{head}_{precision}"
        argv = [sys.executable, "scripts/test.py", "--dataset_class", "kp20k", "--preprocess_folder",
                str(self.work / "data"), "--cached_features_dir", str(self.work / "cache"), "--eval_checkpoint",
                str(trained / "best"), "--output_dir", str(out.parent), "--run_name", out.name, f"--{precision}"]
        if not self.cuda:
            argv.append("--no_cuda")
        ok, seconds, detail = self.command("test_script", argv)
        tested, trained_scores = self.metrics(out).get("eval", {}), self.metrics(trained).get("eval", {})
        same = ok and "F1@5" in tested and abs(tested["F1@5"] - trained_scores.get("F1@5", -1.0)) < 0.02
        if ok:
            detail = f"eval F1@5 {tested.get('F1@5', float('nan')):.4f}, the run's own test {trained_scores.get('F1@5', float('nan')):.4f}"
        self.add(Row("4 scripts/test.py", f"{head} {precision}", same, seconds, detail=detail))

    def extract(self) -> None:
        head = self.args.heads[-1]
        checkpoint = self.work / "runs" / f"{head}_bf16" / "best"
        source = self.work / "data" / "kp20k" / "kp20k.eval.json"
        inputs = self.work / "extract_input.jsonl"
        records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        inputs.write_text("".join(json.dumps({"id": r["url"], "text": " ".join(r["doc_words"])}) + "\n"
                                  for r in records), encoding="utf-8")
        output = self.work / "extract_output.jsonl"
        ok, seconds, detail = self.command("extract", self.bertkpe("extract") + [
            "--checkpoint", str(checkpoint), "--input", str(inputs), "--format", "jsonl", "--output", str(output),
            "--device", self.args.device])
        lines = output.read_text(encoding="utf-8").splitlines() if output.is_file() else []
        complete = ok and len(lines) == len(records) and all(json.loads(line)["keyphrases"] for line in lines)
        self.add(Row("5 bertkpe extract", f"{head} on {self.args.device}", complete, seconds,
                     len(records) / seconds if complete else None, detail or f"{len(lines)} documents"))

    def torchrun(self) -> None:
        head = self.args.heads[-1]
        processes = self.args.nproc
        if processes is None:
            import torch

            processes = torch.cuda.device_count() if self.cuda else 2
        name = f"{head}_torchrun"
        ok, seconds, detail = self.command("torchrun", [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "scripts/train.py", *self.train_argv(name, head, "bf16", "--ema_decay", "0.99")])
        scores = self.metrics(self.work / "runs" / name).get("eval", {})
        backend = "nccl" if self.cuda else "gloo"
        self.add(Row("6 torchrun", f"{head} bf16, {processes} process(es), {backend}", ok and "F1@5" in scores,
                     seconds, self.throughput(name, processes), detail or f"eval F1@5 {scores.get('F1@5', float('nan')):.4f}"))

    def run(self) -> int:
        if self.prepare():
            self.train_heads()
            self.kill_and_resume()
            self.test_script()
            self.extract()
            self.torchrun()
        print(self.table())
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({"machine": machine(), "rows": [asdict(r) for r in self.rows]},
                                                       indent=2) + "\n")
        return 0 if all(row.ok for row in self.rows) else 1

    def table(self) -> str:
        lines = [f"\nGPU check on {machine()}", "",
                 "| step | what | result | wall s | train docs/s | detail |", "|---|---|---|---|---|---|"]
        for row in self.rows:
            rate = f"{row.docs_per_s:.1f}" if row.docs_per_s else ""
            lines.append(f"| {row.step} | {row.what} | {'ok' if row.ok else 'FAILED'} | {row.seconds:.1f} | "
                         f"{rate} | {row.detail} |")
        passed = sum(row.ok for row in self.rows)
        lines.append(f"\n{passed} passed, {len(self.rows) - passed} failed")
        return "\n".join(lines)


def machine() -> str:
    import platform

    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    where = f"{len(gpus)} x {gpus[0]}" if gpus else f"CPU ({os.cpu_count()} cores)"
    return f"{where}, torch {torch.__version__}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of the script)")
    parser.add_argument("--encoder", default="default", help="hub id, local folder, or `default`")
    parser.add_argument("--datasets", default=None,
                        help="folder holding kp20k/ (default: the repository's tests/fixtures)")
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per training run")
    parser.add_argument("--batch_size", type=int, default=8, help="documents per micro-batch (2 micro-batches a step)")
    parser.add_argument("--nproc", type=int, default=None, help="torchrun processes (default: every visible GPU)")
    parser.add_argument("--step_timeout", type=float, default=600, help="seconds before a step counts as failed")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bertkpe_gpu_check"))
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("error: CUDA is not available here (use --device cpu for a dry run)", file=sys.stderr)
            return 2
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
