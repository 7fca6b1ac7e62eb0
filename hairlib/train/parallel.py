"""Data parallelism for the training loops, through Hugging Face ``accelerate``.

The same script runs on one device or on several: ``hairlib train mapper ...`` trains in one
process; ``accelerate launch --num_processes 4 -m hairlib.cli train mapper ...`` starts four,
each on its own GPU (``--cpu`` on CPU: gloo), each drawing its own batches. After every
backward pass the gradients are averaged across processes, so the processes stay identical and
the effective batch is ``batch x processes``; only the main process writes checkpoints, logs
and the progress bar. A run checkpointed with N processes resumes with N (each process gets
its random state back).

We average gradients by hand instead of wrapping the model in DistributedDataParallel: the
loss functions call the raw module (a mapper between a frozen generator and CLIP), and the
all-reduce of a mapper's few MB costs nothing beside the generator's forward.
"""
from __future__ import annotations

import atexit
import os
from typing import Any, List, Optional

import torch
from torch import nn

__all__ = ["Parallel", "launched"]


def launched() -> bool:
    """True in a process started by ``accelerate launch`` / ``torchrun`` with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Parallel:
    """This process's place in a data-parallel run: ``rank``, ``num``, ``device``, ``is_main``.
    Single-process (``num == 1``) unless launched with several processes or ``enabled=True``."""

    def __init__(self, enabled: Optional[bool] = None, cpu: bool = False):
        self.accelerator = None
        if enabled or (enabled is None and launched()):
            try:
                from accelerate import Accelerator
            except ImportError as e:  # pragma: no cover - accelerate is in the [train] extra
                raise ImportError("several processes need accelerate: pip install 'hairlib[train]'") from e
            self.accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available())
        acc = self.accelerator
        self.rank = acc.process_index if acc else 0
        self.num = acc.num_processes if acc else 1
        if self.num > 1:
            # A process group left open at interpreter exit aborts the process ("terminate
            # called without an active exception" from gloo's threads) once in a few runs.
            atexit.register(self.close)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, default: Any = "cpu") -> Any:
        """The accelerator's device in a multi-process run, else ``default`` as given."""
        return self.accelerator.device if self.accelerator is not None and self.num > 1 else default

    def average_gradients(self, module: nn.Module) -> None:
        """Mean of each parameter's gradient over the processes (in place); no-op alone."""
        if self.num < 2:
            return
        import torch.distributed as dist

        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.num)

    def gather(self, obj: Any) -> List[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every process."""
        if self.num < 2:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.num
        dist.all_gather_object(out, obj)
        return out

    def wait(self) -> None:
        if self.num > 1:
            self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Wait for every process, then tear the process group down (idempotent; also run at
        exit). Without it a process may abort at exit while gloo's threads still run."""
        if self.num < 2:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
