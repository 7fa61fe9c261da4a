"""Run under ``torchrun --nproc_per_node=2`` by test_distributed.py: train a tiny model data-parallel,
stopping half-way and resuming (as a crash and restart would), and leave its checkpoints in OUT."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.* and sora.*

from sora.models import build_model  # noqa: E402
from sora.train import TrainConfig, Trainer, distributed  # noqa: E402
from tests.helpers import tiny  # noqa: E402
from tests.train.synthetic import SyntheticData  # noqa: E402

CONFIG = dict(
    max_steps=6, batch_size=16, grad_accum=2, lr=3e-3, warmup_steps=2, validate_every_steps=2, quiet=True, threads=1
)


def model():
    # no biases: a key bias has a true gradient of exactly zero (softmax ignores a shift), and AdamW
    # turns the float noise in it into full-size steps that differ with the summation order
    return build_model(tiny(bias=False))


def main(out: str, strategies: list[str], stop_at: int) -> None:
    data = SyntheticData("classification", n=128)
    dist = distributed.setup("cpu")  # one process group for every run (re-creating one races in gloo)
    try:
        for strategy in strategies:
            config = TrainConfig(**CONFIG, strategy=strategy)
            folder = Path(out) / strategy
            torch.manual_seed(0)
            first = Trainer(model(), data, config, folder, dist=dist).fit(stop_after_steps=stop_at)
            assert first.interrupted and first.step == stop_at
            torch.manual_seed(99)  # a restarted process starts from some other state
            result = Trainer(model(), data, config, folder, resume=True, dist=dist).fit()
            assert result.step == CONFIG["max_steps"], result.step
    finally:
        dist.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]))
