"""The training API: progress, metrics, checkpoints, resume."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gwn_fast import GrayWynerCodec, GrayWynerLoss
from gwn_fast.train import fit, unpack_batch


def tiny_setup(seed=0):
    torch.manual_seed(seed)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8)
    x = torch.rand(32, 3, 8, 8)
    loader = DataLoader(TensorDataset(x, x, x), batch_size=8, shuffle=False)
    return codec, GrayWynerLoss(beta=1.0, lmbda=(50.0, 50.0)), loader


def test_fit_reduces_loss_and_writes_metrics_and_checkpoints(tmp_path):
    codec, loss_fn, loader = tiny_setup()
    history = fit(
        codec, loss_fn, loader, epochs=6, lr=5e-3, progress=False,
        metrics_path=tmp_path / "m.jsonl", checkpoint_path=tmp_path / "ckpt.pt",
    )
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["loss"] < history[0]["loss"]
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and set(lines[0]) >= {"loss", "r0", "r1", "r2", "rate_transmit", "rate_receive", "d1", "d2"}
    assert (tmp_path / "ckpt.pt").exists()


def test_resume_continues_where_it_stopped(tmp_path):
    codec_a, loss_fn, loader = tiny_setup()
    fit(codec_a, loss_fn, loader, epochs=4, lr=5e-3, progress=False)
    codec_b, _, _ = tiny_setup()
    ckpt = tmp_path / "ckpt.pt"
    fit(codec_b, loss_fn, loader, epochs=2, lr=5e-3, progress=False, checkpoint_path=ckpt, one_cycle=False)
    codec_c, _, _ = tiny_setup()
    history = fit(codec_c, loss_fn, loader, epochs=3, lr=5e-3, progress=False, checkpoint_path=ckpt, resume=True, one_cycle=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # resumed weights continue from the checkpoint, not from scratch
    codec_d, _, _ = tiny_setup()
    fit(codec_d, loss_fn, loader, epochs=3, lr=5e-3, progress=False, one_cycle=False)
    for p, q in zip(codec_c.parameters(), codec_d.parameters()):
        torch.testing.assert_close(p, q)


def test_batch_formats():
    x = torch.zeros(1)
    assert unpack_batch((x, x, x))[1] is None
    assert unpack_batch({"x1": x, "x2": x, "z1": x, "z2": x})[1] is x
    with pytest.raises(ValueError, match="batch_fn"):
        unpack_batch([x])
    with pytest.raises(ValueError, match="keys x1, z1, z2"):
        unpack_batch({"x1": x})


def test_fit_trains_the_bottleneck_quantiles_on_the_aux_loss_only():
    # y0_prior="bottleneck": the quantiles move (by their own optimiser on aux_loss), the
    # main optimiser leaves them alone, and the aux loss falls.
    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8,
                           context="none", y0_prior="bottleneck")
    x = torch.rand(32, 3, 8, 8)
    loader = DataLoader(TensorDataset(x, x, x), batch_size=8, shuffle=False)
    before = codec.y0_bottleneck.quantiles.detach().clone()
    aux_before = float(codec.aux_loss().detach())
    fit(codec, GrayWynerLoss(beta=1.0, lmbda=(50.0, 50.0)), loader, epochs=3, lr=5e-3, progress=False, aux_lr=1e-2)
    assert not torch.equal(codec.y0_bottleneck.quantiles.detach(), before)
    assert float(codec.aux_loss().detach()) < aux_before


def test_fit_on_epoch_hook_sees_every_epoch():
    codec, loss_fn, loader = tiny_setup()
    seen = []
    fit(codec, loss_fn, loader, epochs=3, lr=1e-3, progress=False, on_epoch=seen.append)
    assert seen == [0, 1, 2]
