"""Two processes under torchrun (gloo on CPU) train the same parameters as one process with the
same global batch, with DDP and with FSDP2, across an interruption and a distributed resume."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from sora.train import TrainConfig, Trainer
from tests.train.ddp_worker import CONFIG, model
from tests.train.synthetic import SyntheticData

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    log = tmp_path / "torchrun.log"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        str(tmp_path),
        "ddp,fsdp",
        "3",
    ]
    with open(log, "w") as f:  # a file, not a pipe: nothing can block on a full pipe
        proc = subprocess.run(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=240,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    assert proc.returncode == 0, log.read_text()[-4000:]

    torch.manual_seed(0)
    single = Trainer(model(), SyntheticData("classification", n=128), TrainConfig(**CONFIG), tmp_path / "single").fit()
    assert single.step == CONFIG["max_steps"]
    final = f"checkpoints/step-{CONFIG['max_steps']}/model.safetensors"
    expected = load_file(str(tmp_path / "single" / final))
    for strategy in ("ddp", "fsdp"):
        got = load_file(str(tmp_path / strategy / final))
        assert got.keys() == expected.keys()
        worst = max(float((got[k] - expected[k]).abs().max()) for k in got)
        assert worst < 1e-5, (strategy, worst)
        # only rank 0 wrote: one log and one set of checkpoints (the last two kept)
        assert sorted(p.name for p in (tmp_path / strategy / "checkpoints").iterdir()) == ["step-4", "step-6"]
        assert (tmp_path / strategy / "logs" / "train.jsonl").is_file()
