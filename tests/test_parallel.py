"""Data-parallel training through accelerate: the same command, several processes."""
import os
import subprocess
import sys

import pytest
import torch

from hairlib.train.parallel import Parallel


def free_port() -> str:
    """A port nobody listens on now (a fixed one may be held by another run on the machine)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_one_process_is_a_no_op():
    par = Parallel()
    assert (par.rank, par.num, par.is_main) == (0, 1, True)
    lin = torch.nn.Linear(2, 1)
    lin(torch.ones(1, 2)).sum().backward()
    before = lin.weight.grad.clone()
    par.average_gradients(lin)
    assert torch.equal(lin.weight.grad, before) and par.gather("x") == ["x"] and par.device("cpu") == "cpu"


def test_two_processes_train_one_mapper_and_resume(tiny_weights, tmp_path):
    """`torchrun --nproc_per_node 2 -m hairlib.cli train mapper` (what `accelerate launch
    --multi_gpu` starts on GPUs; on CPU accelerate itself would need MPI): one checkpoint, one
    random state per process, one saved mapper, and a resumed run continues."""
    pytest.importorskip("accelerate")
    env = {**os.environ, "HAIRLIB_MINI_WEIGHTS": str(tiny_weights), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "runs"

    def run(steps):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               "-m", "hairlib.cli", "train", "mapper", "--text", "red hair", "--steps", str(steps), "--batch", "2",
               "--out", str(out)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        return p.stdout

    stdout = run(3)
    assert stdout.count("wrote ") == 1  # only the main process saves the mapper
    run_dir = out / "mini-red-hair"
    state = torch.load(run_dir / "state.pt", weights_only=False)
    assert state["step"] == 3 and len(state["rngs"]) == 2
    assert not torch.equal(state["rngs"][0], state["rngs"][1])  # each process drew its own batches
    first = {k: v.clone() for k, v in state["model"].items()}
    run(5)  # resumes at step 3
    state = torch.load(run_dir / "state.pt", weights_only=False)
    assert state["step"] == 5 and any(not torch.equal(first[k], v) for k, v in state["model"].items())
    assert (run_dir / "red-hair.safetensors").exists()


def test_gradients_are_averaged_across_processes(tmp_path):
    """Each process backpropagates its own input; afterwards every process holds the mean."""
    pytest.importorskip("accelerate")
    script = tmp_path / "avg.py"
    script.write_text(
        "import torch\n"
        "from hairlib.train.parallel import Parallel\n"
        "par = Parallel()\n"
        "lin = torch.nn.Linear(3, 1, bias=False)\n"
        "torch.nn.init.ones_(lin.weight)\n"
        "lin(torch.full((1, 3), float(par.rank + 1))).sum().backward()\n"  # grads 1 and 2
        "par.average_gradients(lin)\n"
        "assert par.num == 2 and torch.allclose(lin.weight.grad, torch.full((1, 3), 1.5)), lin.weight.grad\n"
        "assert par.gather(par.rank) == [0, 1]\n"
        "print('ok', par.rank)\n")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
                        str(script)], capture_output=True, text=True, timeout=200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and p.stdout.count("ok") == 2, p.stdout[-1000:] + p.stderr[-2000:]
