"""SIGTERM as an interruption, and writes that an interruption cannot tear."""

import os
import signal

import pytest
import torch

from biounet.errors import Terminated
from biounet.signals import deferred_interrupts, terminate_as_interrupt


def _send(signum):
    # to this thread: os.kill may hand it to another thread (torch's, zarr's), and the
    # Python handler then runs in the main thread some bytecodes later, possibly
    # after the block under test (a flaky "DID NOT RAISE" under load)
    signal.raise_signal(signum)


def test_sigterm_raises_terminated_inside_and_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), terminate_as_interrupt():
        _send(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)]
)
def test_a_signal_inside_the_deferred_block_arrives_after_it(signum, expected):
    done = []
    with pytest.raises(expected), terminate_as_interrupt():
        with deferred_interrupts():
            _send(signum)
            done.append("rest of the block")  # not interrupted
        done.append("after the block")  # the signal is delivered before this
    assert done == ["rest of the block"]


def test_deferred_block_restores_handlers_and_passes_exceptions():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(ValueError, match="own"), deferred_interrupts():
        raise ValueError("own error")
    assert {s: signal.getsignal(s) for s in before} == before
    with deferred_interrupts():
        pass  # no signal: nothing is raised afterwards


def test_sigterm_during_a_checkpoint_write_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    """torch's zip writer, interrupted half-way, raised its own RuntimeError over the stop."""
    from biounet.network.checkpoint import load_checkpoint, save_checkpoint
    from biounet.network.unet import UNet, UNetConfig

    real_save = torch.save

    def save_after_signal(obj, f, *args, **kwargs):
        _send(signal.SIGTERM)  # arrives while the file is being written
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_after_signal)
    model = UNet(UNetConfig(features=4, depth=2))
    path = tmp_path / "latest.pt"
    with pytest.raises(Terminated), terminate_as_interrupt():
        save_checkpoint(path, model, train_state={"step": 7})
    assert load_checkpoint(path)["train_state"]["step"] == 7
    assert os.listdir(tmp_path) == ["latest.pt"]
