"""No step of a sampler reads a device tensor back to the host (on a GPU each read waits for the stream to drain).

The device is faked by the meta device (see builders/device_transfers.py): x, the model and everything derived
from them have no values, so a read can only be counted, never answered. The caller's sigmas are on the host, as
`prepare_sigmas` expects; it is the only place that would read device sigmas (once, before the first step).
"""

from __future__ import annotations

import math

import pytest
import torch

from builders.device_transfers import DEVICE, TransferCounter
from builders.pixart import pixart_state_dict
from tinybreaker_ext.models.pixart import load_pixart
from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser
from tinybreaker_ext.sampling.samplers import SAMPLERS
from tinybreaker_ext.sampling.samplers_common import prepare_sigmas
from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas

STOCHASTIC = ("euler_ancestral", "dpmpp_2m_sde")  # their fresh noise is made on the host: one copy per step


def toy_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x * 0.5 + sigma.view(-1, 1, 1, 1) * 0.1


def geometric_sigmas(final_zero: bool) -> torch.Tensor:
    sigmas = torch.exp(torch.linspace(math.log(14.6), math.log(0.03), 7))
    return torch.cat([sigmas, torch.zeros(1)]) if final_zero else sigmas


def run_counted(name: str, denoiser, x: torch.Tensor, sigmas: torch.Tensor, **seed) -> TransferCounter:
    counter = TransferCounter()
    with counter:
        SAMPLERS[name](denoiser, x, sigmas, callback=lambda *_: counter.mark_step(), **seed)
    assert len(counter.reads) == len(sigmas)  # setup + step 0, then one entry per later step
    return counter


def assert_no_reads_and_only_noise_copies(name: str, counter: TransferCounter) -> None:
    assert counter.total_reads() == 0, counter.reads
    later_steps = counter.copies[1:]
    if name in STOCHASTIC:
        assert all(len(copies) <= 1 for copies in later_steps), later_steps
        assert all("samplers_common.py" in copy for copies in later_steps for copy in copies)  # `to_device`
    else:
        assert all(copies == [] for copies in later_steps), later_steps


@pytest.mark.parametrize("final_zero", [True, False])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_read_nothing_from_the_device(name, final_zero):
    x = torch.zeros(2, 4, 6, 6, device=DEVICE)
    sigmas = geometric_sigmas(final_zero)
    assert_no_reads_and_only_noise_copies(name, run_counted(name, toy_denoiser, x, sigmas, seeds=[1, 2]))
    assert_no_reads_and_only_noise_copies(name, run_counted(name, toy_denoiser, x, sigmas, seed=3))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cfg_eps_and_pixart_read_nothing_from_the_device(name):
    """The whole denoiser chain of the base stage: batched images, masked contexts, the PixArt forward."""
    pixart = load_pixart(pixart_state_dict(hidden=144, depth=1, caption_dim=32, seed=3), device=DEVICE)
    generator = torch.Generator().manual_seed(0)
    conds = [torch.randn(1, length, 32, generator=generator) for length in (77, 120)]
    uncond = torch.randn(1, 77, 32, generator=generator)
    denoiser = CFGDenoiser(EpsDenoiser(pixart.eps, pixart_sigmas()), conds, uncond, 3.4, accepts_context_mask=True)
    sigmas = compute_sigmas(pixart_sigmas(), sampler=name, scheduler="karras", steps=6, steps_start=0)
    x = torch.zeros(2, 4, 8, 8, device=DEVICE)
    assert_no_reads_and_only_noise_copies(name, run_counted(name, denoiser, x, sigmas, seeds=[5, 6]))


def test_the_counter_sees_a_branch_on_a_device_value():
    """Guards the tests above: the k-diffusion style ``if sigmas[i + 1] == 0`` on device sigmas is one read per
    step, and copying the sigmas to the host is counted too."""
    sigmas = geometric_sigmas(final_zero=True).to(DEVICE)
    counter = TransferCounter()
    with counter:
        for i in range(len(sigmas) - 1):
            if sigmas[i + 1] == 0:
                pass
            counter.mark_step()
        sigmas.cpu()
        sigmas.to("cpu", torch.float64)
        torch.zeros(3).to(DEVICE)
    assert [len(reads) for reads in counter.reads] == [1] * (len(sigmas) - 1) + [2]
    assert "test_sampling_host_syncs.py" in counter.reads[0][0]
    assert len(counter.copies[-1]) == 1


def test_device_sigmas_are_read_once_before_the_steps():
    x = torch.zeros(1, 4, 2, 2, device=DEVICE)
    counter = TransferCounter()
    with counter:
        on_device, host = prepare_sigmas(geometric_sigmas(final_zero=True).to(DEVICE), x)
    assert counter.total_reads() == 1 and host.device.type == "cpu" and on_device.device == DEVICE
    with counter:
        prepare_sigmas(geometric_sigmas(final_zero=True), x)
    assert counter.total_reads() == 1  # host sigmas: nothing more to read
