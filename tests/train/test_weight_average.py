"""The moving average of the weights (train.ema_decay): validation measures it, the run ends with it, a resume
continues it exactly."""

from __future__ import annotations

import torch

from sora.train.averaging import KEY, averaged_weights, update_average
from tests.train.test_resume_runs import fit, same_parameters


def test_the_average_trails_the_weights_and_comes_back_out_after_a_swap():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=1.0)
    for step in range(1, 51):
        with torch.no_grad():
            p.fill_(float(step))
        update_average(opt, 0.9, step)
    average = opt.state[p][KEY]
    assert 35 < float(average[0]) < 50  # behind the last weights (50), well past the early ones
    with averaged_weights(opt):
        assert torch.equal(p.detach(), average)
    assert torch.all(p.detach() == 50.0)


def test_a_run_ends_with_the_average_and_differs_from_one_without(tmp_path):
    plain = fit(tmp_path / "plain", max_steps=8)
    averaged = fit(tmp_path / "avg", max_steps=8, ema_decay=0.9)
    assert not same_parameters(plain.model, averaged.model)


def test_a_resumed_run_continues_the_average_exactly(tmp_path):
    straight = fit(tmp_path / "straight", ema_decay=0.9)
    fit(tmp_path / "resumed", ema_decay=0.9, stop_after_steps=3)
    resumed = fit(tmp_path / "resumed", ema_decay=0.9, resume=True)
    assert resumed.step == straight.step
    assert same_parameters(resumed.model, straight.model)
