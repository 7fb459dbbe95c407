"""GrayWynerCodec: exact real bitstreams for every architecture and context."""

import io

import pytest
import torch

from gwn_fast import BitstreamError, GrayWynerCodec, GrayWynerLoss, container
from gwn_fast.container import rates
from gwn_fast.coder import fixed_overhead
from gwn_fast.models import ARCHITECTURES, CONTEXTS


def small_codec(architecture="shared", context="checkerboard", seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("latent_channels", 8)
    codec = GrayWynerCodec(
        3, (3, 2), architecture=architecture, context=context, transform="light", depth=2, hidden_channels=8, **kw
    )
    codec.update()
    return codec.eval()


def images(n, h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 6


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_decompress_recovers_forward_latents_and_predictions(architecture, context):
    codec = small_codec(architecture, context)
    x1, x2 = images(3, 13, 10), images(3, 13, 10, seed=2)
    out = codec(x1, x2)
    enc = codec.compress(x1, x2)
    assert set(enc["strings"]) == {{"y0": "common", "y1": "private1", "y2": "private2"}[k] for k in out["likelihoods"]}
    dec = codec.decompress(enc["strings"], enc["shape"])
    for name, y in dec["latents"].items():
        assert torch.equal(y, out["latents"][name]), name
    for i in (1, 2):
        assert dec["z_hat"][i].shape == out["z_hat"][i].shape == (3, (3, 2)[i - 1], 13, 10)
        torch.testing.assert_close(dec["z_hat"][i], out["z_hat"][i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("size", [(16, 16), (9, 7), (1, 1)])
def test_batch_sizes_and_odd_sizes(batch, size):
    codec = small_codec()
    x = images(batch, *size)
    out = codec(x)
    dec = codec.decompress(**_sd(codec.compress(x)))
    for name, y in dec["latents"].items():
        assert torch.equal(y, out["latents"][name])
    torch.testing.assert_close(dec["z_hat"][1], out["z_hat"][1], rtol=1e-5, atol=1e-5)


def _sd(enc):
    return {"strings": enc["strings"], "shape": enc["shape"]}


def test_sample_from_a_batch_decodes_alone_and_with_other_threads():
    codec = small_codec()
    x = images(3, 16, 12)
    enc = codec.compress(x)
    together = codec.decompress(enc["strings"], enc["shape"])
    alone = codec.decompress({k: v[1:2] for k, v in enc["strings"].items()}, enc["shape"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = codec.decompress({k: v[1:2] for k, v in enc["strings"].items()}, enc["shape"])
    finally:
        torch.set_num_threads(threads)
    for name in together["latents"]:
        assert torch.equal(alone["latents"][name][0], together["latents"][name][1])
        assert torch.equal(single["latents"][name][0], together["latents"][name][1])
    # compressing the sample alone gives the same streams
    solo = codec.compress(x[1:2])
    assert {k: v[0] for k, v in solo["strings"].items()} == {k: v[1] for k, v in enc["strings"].items()}


def test_receiver_decodes_without_the_other_private_stream():
    codec = small_codec()
    x = images(2, 16, 16)
    out = codec(x)
    enc = codec.compress(x)
    only1 = {k: v for k, v in enc["strings"].items() if k != "private2"}
    dec = codec.decompress(only1, enc["shape"], receivers=(1,))
    assert set(dec["z_hat"]) == {1}
    torch.testing.assert_close(dec["z_hat"][1], out["z_hat"][1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"lacks 'private2'.*receivers=\(1,\)"):
        codec.decompress(only1, enc["shape"], receivers=(1, 2))


def test_other_entropy_model_raises_bitstream_error():
    codec = small_codec()
    x = images(1, 16, 16)
    enc = codec.compress(x)
    other = small_codec(seed=5)  # other weights -> other means/scales/indexes
    with pytest.raises(BitstreamError):
        other.decompress(enc["strings"], enc["shape"])


def test_errors_name_the_fix():
    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8)
    x = images(1, 16, 16)
    with pytest.raises(RuntimeError, match=r"update\(\)"):
        codec.compress(x)
    codec.update()
    with pytest.raises(ValueError, match=r"x1 must be a tensor \[N, 3, H, W\]"):
        codec(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"x2 must have x1's shape"):
        codec(x, images(1, 16, 15))
    with pytest.raises(ValueError, match="receivers"):
        codec.decompress(codec.compress(x)["strings"], codec.compress(x)["shape"], receivers=(3,))
    with pytest.raises(ValueError, match="architecture must be one of"):
        GrayWynerCodec(architecture="triple")
    with pytest.raises(ValueError, match="context must be one of"):
        GrayWynerCodec(context="raster")


def test_state_dict_round_trip_decodes_old_streams():
    codec = small_codec()
    x = images(2, 16, 16)
    enc = codec.compress(x)
    buf = io.BytesIO()
    torch.save(codec.state_dict(), buf)
    fresh = GrayWynerCodec.from_config(codec.config)
    assert not fresh.gaussian.ready
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    fresh.eval()
    a = codec.decompress(enc["strings"], enc["shape"])
    b = fresh.decompress(enc["strings"], enc["shape"])
    for i in (1, 2):
        assert torch.equal(a["z_hat"][i], b["z_hat"][i])


def test_payload_matches_likelihood_estimate_after_training():
    codec = small_codec(latent_channels=12)
    codec.train()
    opt = torch.optim.Adam(codec.parameters(), lr=5e-3)
    loss_fn = GrayWynerLoss(beta=1.5, lmbda=(300.0, 300.0))
    g = torch.Generator().manual_seed(3)
    for _ in range(60):
        x = torch.rand(8, 3, 16, 16, generator=g)
        terms = loss_fn(codec(x), (x, x[:, :2]))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    codec.eval()
    x = torch.rand(64, 3, 16, 16, generator=g)
    out = codec(x)
    enc = codec.compress(x)
    for name, channel in (("y0", "common"), ("y1", "private1"), ("y2", "private2")):
        estimate = (-torch.log2(out["likelihoods"][name])).sum().item()
        streams = enc["strings"][channel]
        overhead = 8 * sum(fixed_overhead(s) for s in streams)
        payload = 8 * sum(len(s) for s in streams) - overhead
        assert estimate > 1000, "not a trivial latent"
        assert abs(payload - estimate) <= 0.01 * estimate, (name, payload, estimate)
        assert overhead <= 8 * 12 * len(streams)  # header + initial state/checksum + flush


def test_rates_helper_and_container():
    codec = small_codec()
    x = images(3, 16, 16)
    enc = codec.compress(x)
    r = container.rates(enc)
    bits = {c: 8 * sum(map(len, enc["strings"][c])) for c in enc["strings"]}
    assert r["rate_transmit"] == bits["common"] + bits["private1"] + bits["private2"]
    assert r["rate_receive"] == 2 * bits["common"] + bits["private1"] + bits["private2"]
    blob = container.pack(enc)
    assert container.unpack(blob) == {"strings": enc["strings"], "shape": enc["shape"]}
    for receiver in (1, 2):
        part = container.unpack(container.extract(blob, receiver))
        assert set(part["strings"]) == {"common", f"private{receiver}"}
        dec = codec.decompress(part["strings"], part["shape"], receivers=(receiver,))
        full = codec.decompress(enc["strings"], enc["shape"], receivers=(receiver,))
        assert torch.equal(dec["z_hat"][receiver], full["z_hat"][receiver])
    with pytest.raises(BitstreamError):
        container.unpack(blob[:-1])
    with pytest.raises(BitstreamError):
        container.unpack(b"XXXX" + blob[4:])


def test_loss_terms():
    codec = small_codec()
    x = images(2, 16, 16)
    out = codec(x)
    terms = GrayWynerLoss(beta=2.0, lmbda=(3.0, 5.0), align_weight=0.5)(out, (x, x[:, :2]))
    pixels = 2 * 16 * 16
    r0 = (-torch.log2(out["likelihoods"]["y0"])).sum() / pixels
    torch.testing.assert_close(terms["r0"], r0)
    torch.testing.assert_close(terms["rate_receive"], 2 * terms["r0"] + terms["r1"] + terms["r2"])
    expected = 2 * terms["r0"] + terms["r1"] + terms["r2"] + 3 * terms["d1"] + 5 * terms["d2"] + 0.5 * terms["align"]
    torch.testing.assert_close(terms["loss"], expected)
    with pytest.raises(ValueError, match="distortion"):
        GrayWynerLoss(distortion=("mse", "l7"))


def test_compressai_contract():
    codec = small_codec()
    assert isinstance(codec.aux_loss(), torch.Tensor)
    assert codec.update() is False and codec.update(force=True) is True
    net = {n for n, p in codec.named_parameters() if not n.endswith(".quantiles")}
    assert net == {n for n, _ in codec.named_parameters()}


@pytest.mark.slow
def test_torch_compile_forward_matches_eager():
    codec = small_codec()
    x = images(2, 16, 16)
    eager = codec(x)
    compiled = torch.compile(codec)(x)
    for i in (1, 2):
        torch.testing.assert_close(compiled["z_hat"][i], eager["z_hat"][i], rtol=1e-4, atol=1e-4)
    for k in eager["likelihoods"]:
        torch.testing.assert_close(compiled["likelihoods"][k], eager["likelihoods"][k], rtol=1e-4, atol=1e-6)


def test_single_stream_decodes_like_per_sample_streams_and_is_smaller():
    torch.manual_seed(3)
    codec = GrayWynerCodec(in_channels=1, out_channels=(1, 1), latent_channels=8, transform="light", depth=2).eval()
    codec.update()
    x = torch.rand(5, 1, 8, 12)
    per_sample = codec.compress(x)
    single = codec.compress(x, single_stream=True)
    assert all(len(v) == 1 for v in single["strings"].values())
    assert single["shape"]["samples"] == 5 and single["shape"]["single_stream"]
    a = codec.decompress(per_sample["strings"], per_sample["shape"])
    b = codec.decompress(single["strings"], single["shape"])
    for name in a["latents"]:
        assert torch.equal(a["latents"][name], b["latents"][name])
    assert rates(single)["rate_transmit"] < rates(per_sample)["rate_transmit"]
    # the container keeps the layout; receiver 1 alone decodes from its extract
    packed = container.pack(single)
    only1 = container.unpack(container.extract(packed, 1))
    assert "private2" not in only1["strings"] and only1["shape"]["single_stream"]
    c = codec.decompress(only1["strings"], only1["shape"], receivers=(1,))
    assert torch.equal(c["z_hat"][1], b["z_hat"][1])
    with pytest.raises(ValueError, match="single_stream"):
        codec.decompress({k: v * 2 for k, v in single["strings"].items()}, single["shape"])


# ---------------------------------------------------------------------------------------
# y0_prior="bottleneck": Y0's context-free elements on CompressAI's EntropyBottleneck
# ---------------------------------------------------------------------------------------
BOTTLENECK_CONTEXTS = ("checkerboard", "none")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("context", BOTTLENECK_CONTEXTS)
def test_bottleneck_prior_decompress_recovers_forward_latents(architecture, context):
    codec = small_codec(architecture, context, y0_prior="bottleneck")
    assert (codec.y0_bottleneck is not None) == (architecture != "independent")
    x1, x2 = images(3, 13, 10), images(3, 13, 10, seed=2)
    out = codec(x1, x2)
    for single in (False, True):
        enc = codec.compress(x1, x2, single_stream=single)
        dec = codec.decompress(enc["strings"], enc["shape"])
        for name, y in dec["latents"].items():
            assert torch.equal(y, out["latents"][name]), (name, single)
        for i in (1, 2):
            torch.testing.assert_close(dec["z_hat"][i], out["z_hat"][i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context", BOTTLENECK_CONTEXTS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(16, 16), (9, 7), (13, 10), (1, 1)])
def test_bottleneck_prior_batch_and_odd_sizes(context, batch, size):
    codec = small_codec(context=context, y0_prior="bottleneck")
    x = images(batch, *size)
    out = codec(x)
    assert out["likelihoods"]["y0"].shape == out["latents"]["y0"].shape
    enc = codec.compress(x)
    assert len(enc["strings"]["common"]) == batch
    dec = codec.decompress(**_sd(enc))
    for name, y in dec["latents"].items():
        assert torch.equal(y, out["latents"][name]), name
    torch.testing.assert_close(dec["z_hat"][1], out["z_hat"][1], rtol=1e-5, atol=1e-5)
    # one sample decodes alone, and compressing it alone gives the same stream
    solo = codec.compress(x[-1:])
    assert solo["strings"]["common"][0] == enc["strings"]["common"][-1]


def test_bottleneck_prior_likelihoods_split_by_pass():
    """Anchors (checkerboard first pass) take the bottleneck's likelihood, the rest the
    Gaussian's; with context='none' every Y0 element takes the bottleneck's."""
    for context in BOTTLENECK_CONTEXTS:
        codec = small_codec(context=context, y0_prior="bottleneck")
        x = images(2, 16, 12)
        with torch.no_grad():
            out = codec(x)
            y0 = out["latents"]["y0"]
            prior = codec.y0_bottleneck.likelihood(y0)
            lik = out["likelihoods"]["y0"]
            if context == "none":
                assert torch.equal(lik, prior)
            else:
                from gwn_fast.models import checkerboard_anchor_mask

                a = checkerboard_anchor_mask(y0.shape[2], y0.shape[3], dtype=torch.bool).expand_as(y0)
                assert torch.equal(lik[a], prior[a])
                assert not torch.equal(lik[~a], prior[~a])


def test_bottleneck_prior_aux_loss_is_real_and_trains_the_quantiles():
    codec = small_codec(y0_prior="bottleneck")
    loss = codec.aux_loss()
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    loss.backward()
    grads = {n: p.grad for n, p in codec.named_parameters() if p.grad is not None}
    assert set(grads) == {"latent_codecs.y0.bottleneck.quantiles"}
    assert grads["latent_codecs.y0.bottleneck.quantiles"].abs().sum() > 0
    # the Gaussian prior's aux loss stays a zero tensor
    gauss = small_codec()
    assert gauss.aux_loss().item() == 0.0
    # the rate's gradient reaches the bottleneck's density (not its quantiles) and Y0
    codec.zero_grad()
    out = codec.train()(images(2, 16, 16))
    (-torch.log2(out["likelihoods"]["y0"])).sum().backward()
    eb = codec.y0_bottleneck
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in eb.matrices)
    assert eb.quantiles.grad is None or eb.quantiles.grad.abs().sum() == 0


def test_bottleneck_prior_state_dict_round_trip_decodes_old_streams():
    codec = small_codec(y0_prior="bottleneck")
    # move the quantiles off their initial values (fractional medians) before the tables
    with torch.no_grad():
        codec.y0_bottleneck.quantiles[:, 0, :] += torch.tensor([0.3, 0.6, -0.4])
    codec.update(force=True)
    x = images(2, 16, 16)
    enc = codec.compress(x)
    single = codec.compress(x, single_stream=True)
    buf = io.BytesIO()
    torch.save(codec.state_dict(), buf)
    fresh = GrayWynerCodec.from_config(codec.config)
    assert fresh.config["y0_prior"] == "bottleneck" and fresh.y0_bottleneck is not None
    assert fresh.y0_bottleneck._quantized_cdf.numel() == 0
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    fresh.eval()
    assert fresh.latent_codecs["y0"].stream_tables() == codec.latent_codecs["y0"].stream_tables()
    for e in (enc, single):
        a = codec.decompress(e["strings"], e["shape"])
        b = fresh.decompress(e["strings"], e["shape"])
        for name in a["latents"]:
            assert torch.equal(a["latents"][name], b["latents"][name])
        for i in (1, 2):
            assert torch.equal(a["z_hat"][i], b["z_hat"][i])
    # the reloaded codec encodes what the old one did
    assert fresh.compress(x)["strings"] == enc["strings"]
    gauss = GrayWynerCodec.from_config({**codec.config, "y0_prior": "gaussian"})
    assert gauss.y0_bottleneck is None


def test_bottleneck_prior_tables_follow_update():
    codec = small_codec(y0_prior="bottleneck")
    before = codec.latent_codecs["y0"].stream_tables()
    assert codec.latent_codecs["y0"].stream_tables() is before  # cached
    assert codec.latent_codecs["y1"].stream_tables() is codec.gaussian.tables()
    assert len(before) == len(codec.gaussian.tables()) + codec.y0_bottleneck.channels
    with torch.no_grad():
        codec.y0_bottleneck.quantiles[:, 0, :] += 2.6
    assert codec.update() is False
    assert codec.latent_codecs["y0"].stream_tables() is before  # tables only change at update()
    assert codec.update(force=True) is True
    after = codec.latent_codecs["y0"].stream_tables()
    assert after is not before and after != before
    x = images(2, 9, 13)
    out = codec(x)
    dec = codec.decompress(**_sd(codec.compress(x)))
    assert torch.equal(dec["latents"]["y0"], out["latents"]["y0"])


def test_integer_bottleneck_codes_integers_exactly_with_compressai():
    from gwn_fast.models.entropy_parameters import IntegerEntropyBottleneck

    torch.manual_seed(0)
    eb = IntegerEntropyBottleneck(3)
    with torch.no_grad():
        eb.quantiles[:, 0, :] = torch.tensor([[-4.2, 0.5, 3.9], [-7.0, -1.5, 2.2], [-1.1, 0.49, 1.6]])
    eb.update()
    assert eb._medians.tolist() == [1, -1, 0]
    y = torch.randint(-9, 10, (2, 3, 5, 4)).float()
    strings = eb.compress(y)
    assert torch.equal(eb.decompress(strings, y.shape[2:]), y)
    lik = eb.likelihood(y)
    assert lik.shape == y.shape and bool(((lik > 0) & (lik <= 1)).all())


def test_bad_y0_prior_raises():
    with pytest.raises(ValueError, match=r"y0_prior must be one of \('gaussian', 'positional', 'bottleneck'\), got 'laplace'"):
        GrayWynerCodec(y0_prior="laplace")
    with pytest.raises(ValueError, match=r"y0_prior='bottleneck'.*context='autoregressive'"):
        GrayWynerCodec(context="autoregressive", y0_prior="bottleneck")
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8, y0_prior="bottleneck")
    codec.gaussian.update()  # Gaussian tables only: the bottleneck's are still missing
    with pytest.raises(RuntimeError, match=r"EntropyBottleneck.*update\(\)"):
        codec.compress(images(1, 16, 16))


@pytest.mark.parametrize("context", BOTTLENECK_CONTEXTS)
def test_bottleneck_prior_payload_matches_likelihood_estimate_after_training(context):
    codec = small_codec(context=context, latent_channels=12, y0_prior="bottleneck")
    codec.train()
    quantiles = [p for n, p in codec.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam([p for n, p in codec.named_parameters() if not n.endswith(".quantiles")], lr=5e-3)
    aux = torch.optim.Adam(quantiles, lr=1e-2)
    loss_fn = GrayWynerLoss(beta=1.5, lmbda=(300.0, 300.0))
    g = torch.Generator().manual_seed(3)
    aux_start = codec.aux_loss().item()
    for _ in range(60):
        x = torch.rand(8, 3, 16, 16, generator=g)
        terms = loss_fn(codec(x), (x, x[:, :2]))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        aux.zero_grad()
        codec.aux_loss().backward()
        aux.step()
    assert codec.aux_loss().item() < aux_start
    codec.eval()
    codec.update(force=True)
    x = torch.rand(64, 3, 16, 16, generator=g)
    out = codec(x)
    enc = codec.compress(x)
    dec = codec.decompress(**_sd(enc))
    assert torch.equal(dec["latents"]["y0"], out["latents"]["y0"])
    for name, channel in (("y0", "common"), ("y1", "private1"), ("y2", "private2")):
        estimate = (-torch.log2(out["likelihoods"][name])).sum().item()
        streams = enc["strings"][channel]
        payload = 8 * sum(len(s) for s in streams) - 8 * sum(fixed_overhead(s) for s in streams)
        assert estimate > 1000, "not a trivial latent"
        assert abs(payload - estimate) <= 0.02 * estimate, (name, payload, estimate)


@pytest.mark.parametrize("context", BOTTLENECK_CONTEXTS)
def test_bottleneck_prior_trains_under_distributed_data_parallel(context, tmp_path):
    """forward() never uses the quantiles (nor, with context='none', Y0's Gaussian prior):
    the codec tells DDP to skip them, else DDP fails at the second step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        codec = small_codec(context=context, y0_prior="bottleneck").train()
        model = DistributedDataParallel(codec)
        opt = torch.optim.Adam(codec.parameters(), lr=1e-3)
        loss_fn = GrayWynerLoss(beta=1.0, lmbda=(10.0, 10.0))
        for step in range(3):
            x = images(2, 16, 16, seed=step)
            loss = loss_fn(model(x), (x, x[:, :2]))["loss"] + codec.aux_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        dist.destroy_process_group()
