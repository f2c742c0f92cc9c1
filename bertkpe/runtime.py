"""Process setup shared by training and testing: devices, torchrun, precision, logging."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger("bertkpe")


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # autocast dtype, None for float32

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def ranks_where(self, flag: bool) -> list[int]:
        """The ranks on which `flag` holds. A collective: every rank calls it, and all get
        the same answer, so that all take the same path (a save one rank's clock asks for)."""
        if not self.distributed:
            return [self.rank] if flag else []
        flags = torch.zeros(self.world_size, device=self.device)
        flags[self.rank] = float(flag)
        dist.all_reduce(flags)
        return [rank for rank, value in enumerate(flags.tolist()) if value]

    def from_main(self, *values: Any) -> tuple[Any, ...]:
        """Rank 0's values on every rank, so that all ranks take the same path."""
        shared = list(values)
        if self.distributed:
            dist.broadcast_object_list(shared, src=0)
        return tuple(shared)


def setup_runtime(no_cuda: bool = False) -> Runtime:
    """Single process, or one process per device under torchrun (NCCL on GPU, gloo on CPU).
    Float32 until `set_precision`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not no_cuda
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def set_precision(runtime: Runtime, fp16: bool = False, bf16: bool = False) -> None:
    """Choose the autocast dtype; a flag that cannot do what it says is refused, not ignored."""
    if fp16 and bf16:
        raise SystemExit("error: choose one of --fp16 and --bf16")
    if fp16 and runtime.device.type != "cuda":
        raise SystemExit("error: --fp16 needs CUDA, which this process does not have: use --bf16 for mixed "
                         "precision on the CPU")
    if fp16:
        runtime.amp_dtype = torch.float16
    elif bf16:
        runtime.amp_dtype = torch.bfloat16


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(log_file: Path | None = None, is_main: bool = True) -> None:
    """Console (and file) logging on rank 0; other ranks only warn."""
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if log_file is not None and is_main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
