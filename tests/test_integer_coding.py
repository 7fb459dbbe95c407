"""Issue 11: the integer entropy parameters are exact, bounded and close to the float model."""

import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from gwn_fast import GrayWynerCodec
from gwn_fast.entropy_models import GaussianLatentCodec, IntegerEntropyParameters, LatentEntropyParameters
from gwn_fast.entropy_models.integer import ACTIVATION_LIMIT, FRACTION_BITS, IntegerConv2d, latent_activations


def light(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("latent_channels", 8)
    codec = GrayWynerCodec(3, (3, 3), transform="light", depth=2, hidden_channels=8, **kw)
    return codec.eval()


def _randomize(module: nn.Module, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("context", ["checkerboard", "autoregressive", "none"])
@pytest.mark.parametrize("cond", [0, 6])
def test_integer_parameters_track_the_float_network(context, cond):
    ep = LatentEntropyParameters(8, cond_channels=cond, context=context)
    _randomize(ep, 1)
    q = IntegerEntropyParameters(ep)
    q.quantize_from(ep)
    g = torch.Generator().manual_seed(2)
    y = torch.randint(-6, 7, (2, 8, 9, 11), generator=g).double()
    c = torch.randint(-6, 7, (2, cond, 9, 11), generator=g).double() if cond else None
    with torch.no_grad():
        s_float, m_float = ep.double()(y, c)
    s_int, m_int = q(y, c)
    one = float(1 << FRACTION_BITS)
    for a in (s_int, m_int):
        assert torch.equal(a, torch.round(a)) and float(a.abs().max()) <= ACTIVATION_LIMIT
    # fixed point to 2**-12 plus 15-16-bit weights: a few activation steps, plus the
    # weights' relative rounding (2**-15) times the activations' size
    for q_out, f_out in ((s_int, s_float), (m_int, m_float)):
        err = (q_out / one - f_out).abs().max()
        assert err <= 3e-3 + 1e-4 * f_out.abs().max(), (float(err), float(f_out.abs().max()))


def test_every_accumulator_stays_below_2_to_the_53():
    """The bound that makes float64 exact in any order: sum |w_q| * max|a| + |b_q| < 2**53
    for every output channel of every integer convolution, even with huge weights."""
    codec = light(context="checkerboard", latent_channels=16)
    for lc in codec.latent_codecs.values():
        _randomize(lc.entropy_parameters, 3, scale=50.0)  # far beyond trained weights
    codec.update()
    convs = [m for m in codec.modules() if isinstance(m, IntegerConv2d)]
    assert len(convs) >= 10
    for conv in convs:
        w = conv.weight.double().flatten(1).abs()
        bound = w.sum(1) * ACTIVATION_LIMIT + conv.bias.double().abs() + 2.0 ** conv.shift.double()
        assert float(bound.max()) < 2.0**53
        assert int(conv.weight.abs().max()) < 2**16


def test_integer_convolution_is_order_independent():
    """The same integer conv on the same input, computed with 1 and 2 threads and through
    a padded window: bit-identical (float64 on integers below 2**53)."""
    conv = nn.Conv2d(32, 64, 5, padding=2)
    _randomize(conv, 4)
    q = IntegerConv2d(conv)
    q.quantize_from(conv)
    g = torch.Generator().manual_seed(5)
    a = latent_activations(torch.randint(-40, 41, (2, 32, 64, 64), generator=g).double())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = q(a)
        torch.set_num_threads(2)
        two = q(a)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    window = q(nn.functional.pad(a, (2, 2, 2, 2))[:, :, 10:15, 20:25], padding=0)
    assert torch.equal(window[:, :, 0, 0], one[:, :, 10, 20])


def test_update_rederives_after_training_and_load_keeps_the_buffers():
    codec = light()
    codec.update()
    lc = codec.latent_codecs["y1"]
    before = lc.integer.head.layers[0].weight.clone()
    with torch.no_grad():
        lc.entropy_parameters.head[0].weight.add_(0.05)
    # compress() never codes with a network older than the float weights
    x = torch.rand(1, 3, 16, 16)
    enc = codec.compress(x)
    assert not torch.equal(lc.integer.head.layers[0].weight, before)
    buf = io.BytesIO()
    torch.save(codec.state_dict(), buf)
    buf.seek(0)
    fresh = GrayWynerCodec.from_config(codec.config).eval()
    fresh.load_state_dict(torch.load(buf))
    fresh.update()
    for name, lc2 in fresh.latent_codecs.items():
        a, b = lc2.integer.state_dict(), codec.latent_codecs[name].integer.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert fresh.compress(x)["strings"] == enc["strings"]


def test_state_dict_from_before_the_latent_codecs_loads():
    codec = light(y0_prior="bottleneck")
    codec.update()
    legacy = {}
    for key, value in codec.state_dict().items():
        if ".integer." in key:
            continue  # did not exist
        key = key.replace("latent_codecs.y0.bottleneck.", "y0_bottleneck.")
        for name in ("y0", "y1", "y2"):
            key = key.replace(f"latent_codecs.{name}.entropy_parameters.", f"entropy_parameters.{name}.")
        legacy[key] = value
    fresh = GrayWynerCodec.from_config(codec.config).eval()
    fresh.load_state_dict(legacy)
    fresh.update()
    x = torch.rand(2, 3, 16, 16)
    assert fresh.compress(x)["strings"] == codec.compress(x)["strings"]


def test_latent_codec_alone_round_trips_a_batch():
    torch.manual_seed(0)
    base = GaussianLatentCodec(6, context="checkerboard").eval()
    cond = GaussianLatentCodec(4, cond_channels=6, context="autoregressive").eval()
    for lc in (base, cond):
        _randomize(lc.entropy_parameters, 7, scale=0.2)
        lc.update()
    g = torch.Generator().manual_seed(8)
    y0 = torch.randint(-3, 4, (3, 6, 5, 7), generator=g).float()
    y1 = torch.randint(-3, 4, (3, 4, 5, 7), generator=g).float()
    for single in (False, True):
        s0 = base.compress(y0, single_stream=single)
        s1 = cond.compress(y1, y0, single_stream=single)
        d0 = base.decompress(base.open_streams(s0, (5, 7), 3, single, "y0", 1 << 30), (5, 7), 3, single_stream=single)
        d1 = cond.decompress(cond.open_streams(s1, (5, 7), 3, single, "y1", 1 << 30), (5, 7), 3, d0, single_stream=single)
        assert torch.equal(d0, y0.double()) and torch.equal(d1, y1.double())
    bits, lik = base(y0)
    assert bits.shape == (3,) and lik().shape == y0.shape


@pytest.mark.parametrize("context", ["none", "checkerboard", "autoregressive"])
def test_positional_prior_gives_border_elements_their_own_gaussian_and_round_trips(context):
    torch.manual_seed(0)
    lc = GaussianLatentCodec(3, context=context, prior="positional").eval()
    _randomize(lc.entropy_parameters, 3, scale=0.3)
    lc.update()
    # Without context the parameters depend on the position only: on a 2x2 grid every
    # element differs from the others (the plane's zero padding differs), on a 9x9 grid the
    # interior (three or more from the border) shares one per channel.
    if context == "none":
        scales, means = lc.entropy_parameters(torch.zeros(2, 3, 2, 2), torch.ones(2, 1, 2, 2))
        flat = means[0].flatten(1)
        assert all(not torch.allclose(flat[:, a], flat[:, b]) for a in range(4) for b in range(a))
        _, means = lc.entropy_parameters(torch.zeros(1, 3, 9, 9), torch.ones(1, 1, 9, 9))
        inner = means[0, :, 3:6, 3:6].flatten(1)
        assert torch.allclose(inner, inner[:, :1].expand_as(inner))
        assert not torch.allclose(means[0, :, 0, 0], means[0, :, 4, 4])
    g = torch.Generator().manual_seed(1)
    y = torch.randint(-3, 4, (2, 3, 4, 5), generator=g).float()
    for single in (False, True):
        s = lc.compress(y, single_stream=single)
        d = lc.decompress(lc.open_streams(s, (4, 5), 2, single, "y0", 1 << 30), (4, 5), 2, single_stream=single)
        assert torch.equal(d, y.double())
    bits, _ = lc(y)
    assert bits.shape == (2,) and torch.isfinite(bits).all()
    with pytest.raises(ValueError, match="positional"):
        GaussianLatentCodec(3, cond_channels=2, prior="positional")


def test_codec_with_positional_y0_prior_decodes_what_forward_scores():
    codec = light(y0_prior="positional", context="none")
    _randomize(codec.latent_codecs["y0"].entropy_parameters, 5, scale=0.2)
    codec.update(force=True)
    x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        enc = codec.compress(x, x)
        dec = codec.decompress(enc["strings"], enc["shape"])
        ref = codec(x, x)["latents"]
    for k, v in ref.items():
        assert torch.equal(dec["latents"][k].float(), v.float())


_DECODE_ALONE = textwrap.dedent(
    """
    import io, sys, pickle, torch
    from gwn_fast import GrayWynerCodec
    torch.set_num_threads(int(sys.argv[2]))
    blob = pickle.load(open(sys.argv[1], "rb"))
    codec = GrayWynerCodec.from_config(blob["config"]).eval()
    codec.load_state_dict(torch.load(io.BytesIO(blob["state"]), weights_only=True))
    codec.update()
    out = {}
    for b in range(3):
        one = {k: v[b : b + 1] for k, v in blob["strings"].items()}
        dec = codec.decompress(one, blob["shape"])
        again = codec.compress(blob["x"][b : b + 1])
        out[b] = ({k: v.numpy().tobytes() for k, v in dec["latents"].items()}, again["strings"])
    pickle.dump((torch.get_num_threads(), out), open(sys.argv[3], "wb"))
    """
)


@pytest.mark.slow
def test_batch_of_three_decodes_alone_in_fresh_processes_with_1_and_2_threads(tmp_path):
    import pickle

    codec = light(latent_channels=16, context="checkerboard")
    codec.update()
    x = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(9))  # 64x64 latents
    enc = codec.compress(x)
    ref = codec.decompress(enc["strings"], enc["shape"])
    state = io.BytesIO()
    torch.save(codec.state_dict(), state)
    blob = {"config": codec.config, "state": state.getvalue(), "strings": enc["strings"], "shape": enc["shape"], "x": x}
    (tmp_path / "in.pkl").write_bytes(pickle.dumps(blob))
    (tmp_path / "decode.py").write_text(_DECODE_ALONE)
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        out_file = tmp_path / f"out{threads}.pkl"
        subprocess.run(
            [sys.executable, str(tmp_path / "decode.py"), str(tmp_path / "in.pkl"), str(threads), str(out_file)],
            check=True,
            env=env,
            cwd=tmp_path,
        )
        used, out = pickle.loads(out_file.read_bytes())
        assert used == threads
        for b in range(3):
            latents, strings = out[b]
            for name, data in latents.items():
                assert data == ref["latents"][name][b : b + 1].numpy().tobytes(), (threads, b, name)
            assert strings == {k: [v[b]] for k, v in enc["strings"].items()}
