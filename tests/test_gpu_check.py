"""The GPU check script stays runnable: its CPU dry run walks every step it takes on a GPU
(fp16 excepted, which needs CUDA) over the tiny encoder and the in-repo fixtures."""
from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, SUBPROCESS_ENV


def test_gpu_check_dry_run_on_cpu(setup, tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--heads", "bert2tag",
               "--encoder", str(setup["encoder"]), "--steps", "3", "--batch_size", "4",
               "--workdir", str(tmp_path / "work"), "--json", str(tmp_path / "rows.json")]
    done = subprocess.run(command, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("| step |"):]
    for step in ("1 preprocess", "2 train+eval+test", "3 kill + resume", "4 scripts/test.py", "5 bertkpe extract",
                 "6 torchrun"):
        assert f"| {step} |" in table, step
    assert "| 3 kill + resume | bert2tag bf16 | ok |" in table
    assert "skipped: fp16 needs CUDA" in table
    assert "7 passed, 0 failed" in table
