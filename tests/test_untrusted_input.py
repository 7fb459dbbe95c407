"""Issue 13: untrusted files and bad input. One regression test per finding of the issue
(``test_issue13_finding<k>_*``), then the properties behind them."""

import os
import pickle

import pytest
import torch

from gwn_fast import BitstreamError, GrayWynerCodec
from gwn_fast.checkpoint import CheckpointError, validate_config
from gwn_fast.train import load_checkpoint, load_codec, save_checkpoint


def _small_codec(**kw):
    torch.manual_seed(0)
    args = dict(latent_channels=8, transform="light", depth=2, hidden_channels=8)
    args.update(kw)
    codec = GrayWynerCodec(3, (3, 3), **args).eval()
    codec.update()
    return codec


class _Evil:
    """A pickle payload that writes a file when unpickled by a trusting loader."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"echo PWNED > {self.target}",))


@pytest.fixture
def evil_checkpoints(tmp_path):
    marker = tmp_path / "pwned.txt"
    codec = _small_codec()
    zip_file = tmp_path / "evil_zip.pt"  # torch's zip format, the pickle inside is malicious
    torch.save({"config": _Evil(marker), "model": codec.state_dict()}, zip_file)
    raw_file = tmp_path / "evil_raw.pt"  # a bare pickle
    with open(raw_file, "wb") as f:
        pickle.dump({"config": codec.config, "model": _Evil(marker), "extra": {"recipe": _Evil(marker)}}, f)
    return marker, [zip_file, raw_file]


# --------------------------------------------------------------------------------------
# finding 1: loading a checkpoint ran arbitrary code
# --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_issue13_finding1_malicious_pickle_never_runs(evil_checkpoints, tmp_path):
    from gwn_fast.experiment import evaluate_checkpoint

    marker, files = evil_checkpoints
    for path in files:
        for load in (load_codec, lambda p: load_checkpoint(p, _small_codec()), evaluate_checkpoint):
            with pytest.raises(CheckpointError, match="nothing in it ran") as info:
                load(path)
            assert str(path) in str(info.value)
            assert not marker.exists(), f"loading {path.name} executed code"


def test_issue13_finding1_cli_does_not_run_checkpoint_code(evil_checkpoints, tmp_path, capsys):
    from gwn_fast.cli import EXIT_CHECKPOINT, main

    marker, files = evil_checkpoints
    x = tmp_path / "x.pt"
    torch.save(torch.rand(1, 3, 8, 8), x)
    assert main(["compress", str(files[0]), str(x), str(tmp_path / "y.gwn")]) == EXIT_CHECKPOINT
    assert not marker.exists()
    assert not (tmp_path / "y.gwn").exists()


def test_checkpoints_written_today_load_safely(tmp_path):
    """What save_checkpoint writes after real training (model, Adam, OneCycleLR, history,
    recipe, config) reads back under weights_only=True."""
    from gwn_fast import GrayWynerLoss
    from gwn_fast.train import fit

    codec = _small_codec()
    x = torch.rand(2, 3, 8, 8)
    path = tmp_path / "ck.pt"
    fit(codec, GrayWynerLoss(), [{"x1": x, "z1": x, "z2": x}], epochs=1, progress=False, checkpoint_path=path)
    save_checkpoint(path, codec, epoch=1, extra={"recipe": {"dataset": "digits", "beta": 1.0}, "history": [{"loss": 1.0}]})
    fresh = load_codec(path)
    for k, v in codec.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    torch.load(path, weights_only=True)  # plainly


def test_save_refuses_what_the_safe_loader_cannot_read(tmp_path):
    codec = _small_codec()
    with pytest.raises(TypeError, match=r"extra\['bad'\]"):
        save_checkpoint(tmp_path / "ck.pt", codec, extra={"bad": object()})
    assert not (tmp_path / "ck.pt").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latent_channels", 10**9),
        ("latent_channels", -4),
        ("hidden_channels", 10**7),
        ("depth", 10**6),
        ("in_channels", 2.5),
        ("out_channels", [3, 10**9]),
        ("input_size", [10**6, 10**6]),
        ("architecture", "rm -rf"),
        ("precision", 99),
        ("surprise", 1),
    ],
)
def test_config_outside_bounds_is_refused_before_building(tmp_path, field, value):
    codec = _small_codec()
    config = dict(codec.config, **{field: value})
    path = tmp_path / "big.pt"
    torch.save({"config": config, "model": codec.state_dict()}, path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_codec(path)
    with pytest.raises(CheckpointError):
        validate_config(config)


def test_mlp_head_weights_bounded():
    config = dict(_small_codec().config, head="mlp", input_size=[4096, 4096], head_hidden=4096)
    with pytest.raises(CheckpointError, match="MLP"):
        validate_config(config)


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, b"PK\x03\x04broken zip"])
def test_not_a_checkpoint_is_one_clear_error(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path}: not a gwn_fast checkpoint"):
        load_codec(path)


def test_checkpoint_without_config_or_with_wrong_weights(tmp_path):
    codec = _small_codec()
    torch.save({"model": codec.state_dict()}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="no codec config"):
        load_codec(tmp_path / "a.pt")
    torch.save(torch.zeros(3), tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="not a dict"):
        load_codec(tmp_path / "b.pt")
    other = _small_codec(latent_channels=12)
    torch.save({"config": codec.config, "model": other.state_dict()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_codec(tmp_path / "c.pt")


def test_every_config_field_is_validated():
    """A new GrayWynerCodec.config field must get its check in gwn_fast.checkpoint."""
    from gwn_fast.checkpoint import _KNOWN

    for kw in ({}, {"head": "mlp", "input_size": (16, 16)}):
        config = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8, **kw).config
        assert set(config) <= _KNOWN, set(config) - _KNOWN
        assert validate_config(config) == {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


# --------------------------------------------------------------------------------------
# the container (findings 2, 3, 4) and decompress's checks (finding 7, 9)
# --------------------------------------------------------------------------------------
import time  # noqa: E402
import zlib  # noqa: E402

from gwn_fast import container  # noqa: E402
from gwn_fast.container import Limits  # noqa: E402


def _varint(v):
    out = bytearray()
    container._put_varint(out, v)
    return bytes(out)


def _pack_v2(enc):
    """The version-2 writer of before issue 13 (lengths interleaved with the streams)."""
    strings, shape = enc["strings"], enc["shape"]
    (H, W), (h, w) = shape["input"], shape["latent"]
    out = bytearray(b"GWNC\x02")
    for v in (H, W, h, w, shape["samples"]):
        out += _varint(v)
    out.append(sum(1 << i for i, c in enumerate(container.CHANNELS) if c in strings) | (8 if shape["single_stream"] else 0))
    for c in container.CHANNELS:
        for s in strings.get(c, ()):
            out += _varint(len(s)) + s
    return bytes(out)


def _v3(H, W, h, w, n, flags, sections, version=container.VERSION):
    """A container in the current layout (version 3's, with a CRC) with any header and a
    *valid* CRC (what an attacker can write)."""
    out = bytearray(b"GWNC" + bytes([version]))
    for v in (H, W, h, w, n):
        out += _varint(v)
    out.append(flags | container.V3_FLAG)
    for s in sections:
        out += _varint(len(s))
    out += b"".join(sections)
    return bytes(out + zlib.crc32(out).to_bytes(4, "little"))


@pytest.fixture(scope="module")
def coded():
    torch.manual_seed(1)
    codec = _small_codec()
    x = torch.rand(2, 3, 13, 18)
    enc = codec.compress(x)
    ref = codec.decompress(enc["strings"], enc["shape"])
    return codec, x, enc, ref


def _decode_blob(codec, blob, **kw):
    enc = container.unpack(blob, **kw)
    return codec.decompress(enc["strings"], enc["shape"], **kw)


def test_v4_roundtrip_and_float_path_versions_refused_by_name(coded):
    codec, x, enc, ref = coded
    blob = container.pack(enc)
    assert blob[:5] == b"GWNC\x04"
    assert container.unpack(blob) == {"strings": enc["strings"], "shape": enc["shape"]}
    out = _decode_blob(codec, blob)
    for i in (1, 2):
        assert torch.equal(out["z_hat"][i], ref["z_hat"][i])
    part = container.extract(blob, 1)
    assert part[4] == 4
    assert set(container.unpack(part)["strings"]) == {"common", "private1"}
    # versions 2 and 3 (the float64 coding path): a BitstreamError naming the version
    sections = [s for c in container.CHANNELS for s in enc["strings"][c]]
    for old in (_pack_v2(enc), _v3(13, 18, 4, 5, 2, 0b111, sections, version=3)):
        with pytest.raises(BitstreamError, match=f"container version {old[4]} .*float64"):
            container.unpack(old)


def test_container_with_damaged_version_byte_is_refused(coded):
    _, _, enc, _ = coded
    blob = bytearray(container.pack(enc))
    for v in set(range(256)) - {container.VERSION}:
        blob[4] = v
        with pytest.raises(BitstreamError):
            container.unpack(bytes(blob))


def test_issue13_finding2_huge_latent_is_refused_before_allocating(coded):
    codec, _, enc, _ = coded
    n_sections = len(enc["strings"]) * 2
    header = bytes([0xC7, (2 << 5) | (codec.gaussian.precision - 1), 0x00])  # a valid-looking 3-byte rANS header
    tiny = [header] * n_sections
    for H, h in ((24000, 6000), (240000, 60000)):
        blob = _v3(H, H, h, h, 2, 0b111, tiny)
        assert len(blob) < 100
        t0 = time.perf_counter()
        with pytest.raises(BitstreamError, match="max_pixels"):
            container.unpack(blob)
        # with the container's limits lifted, the model's checks still refuse in no time
        big = Limits(max_pixels=1 << 40, max_latent_elements=1 << 40, max_symbols=1 << 40)
        shape = {"input": (H, H), "latent": (h, h), "samples": 2, "single_stream": False}
        strings = {c: [header] * 2 for c in enc["strings"]}
        with pytest.raises(BitstreamError, match="symbols"):
            codec.decompress(strings, shape, limits=big)
        with pytest.raises(BitstreamError, match="max_latent_elements"):
            codec.decompress(strings, shape, limits=Limits(max_pixels=1 << 40))
        assert time.perf_counter() - t0 < 1.0
    # a negative size in a shape dict is a BitstreamError, not torch's "Dimension size"
    with pytest.raises(BitstreamError, match="positive"):
        codec.decompress(enc["strings"], dict(enc["shape"], latent=(-4, 5)))


def test_issue13_finding3_input_size_is_checked_and_protected(coded):
    codec, _, enc, _ = coded
    blob = container.pack(enc)
    assert blob[5:7] == bytes([13, 18])
    for pos, value in ((5, 77), (6, 2), (5, 14), (6, 19)):  # 14 and 19 keep the latent grid
        bad = bytearray(blob)
        bad[pos] = value
        with pytest.raises(BitstreamError, match="checksum"):
            _decode_blob(codec, bytes(bad))
    # a crafted file (valid CRC) with a wrong input size
    with pytest.raises(BitstreamError, match="latent grid"):
        codec.decompress(enc["strings"], dict(enc["shape"], input=(77, 18)))


def test_issue13_finding4_zero_latent_size(coded):
    codec, _, enc, _ = coded
    sections = [s for c in container.CHANNELS for s in enc["strings"][c]]
    for h, w in ((0, 5), (4, 0)):
        with pytest.raises(BitstreamError, match="positive"):
            container.unpack(_v3(13, 18, h, w, 2, 0b111, sections))
        with pytest.raises(BitstreamError, match="positive"):
            codec.decompress(enc["strings"], dict(enc["shape"], latent=(h, w)))


def test_issue13_finding7_mismatches_are_bitstream_errors(coded):
    codec, _, enc, _ = coded
    other = _small_codec(latent_channels=12)
    with pytest.raises(BitstreamError, match="another configuration") as info:
        other.decompress(enc["strings"], enc["shape"])
    assert type(info.value) is BitstreamError
    assert isinstance(info.value, ValueError)
    assert "indexes" not in str(info.value)
    # another image's shape dict (same latent grid rule, other size)
    with pytest.raises(BitstreamError, match="shape does not belong"):
        codec.decompress(enc["strings"], {"input": (8, 8), "latent": (2, 2), "samples": 2, "single_stream": False})
    # a codec of another stride
    deeper = _small_codec(depth=3)
    with pytest.raises(BitstreamError, match="stride"):
        deeper.decompress(enc["strings"], enc["shape"])


def test_issue13_finding9_receivers_single_int(coded):
    codec, _, enc, ref = coded
    for r in (1, 2):
        out = codec.decompress(enc["strings"], enc["shape"], receivers=r)
        assert set(out["z_hat"]) == {r}
        assert torch.equal(out["z_hat"][r], ref["z_hat"][r])
    for bad in (3, 0, (1, 1), (True,), ()):
        with pytest.raises(ValueError, match="receivers"):
            codec.decompress(enc["strings"], enc["shape"], receivers=bad)
    for bad in (1.5, True, None):
        with pytest.raises(TypeError, match="receivers"):
            codec.decompress(enc["strings"], enc["shape"], receivers=bad)


# --------------------------------------------------------------------------------------
# compress refuses what it cannot decode (findings 5, 6)
# --------------------------------------------------------------------------------------
def test_issue13_finding5_non_finite_and_huge_inputs_are_refused(coded):
    codec, x, _, _ = coded
    nan = x.clone()
    nan[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"x1 holds 1 non-finite.*nan_to_num"):
        codec.compress(nan)
    with pytest.raises(ValueError, match=r"x2 holds"):
        codec.compress(x, x.clone().fill_(float("inf")))
    with pytest.raises(ValueError, match="int32 range.*scale it"):
        codec.compress(x * 1e30)
    with pytest.raises(ValueError, match="torch.float32"):
        codec.compress(x.double())
    with pytest.raises(ValueError, match=r"x1 must be a tensor \[N, 3"):
        codec.compress(x[:, :2])


def test_issue13_finding6_mlp_codec_refuses_other_input_sizes():
    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (10, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8,
                           head="mlp", head_hidden=16, input_size=(16, 16)).eval()
    codec.update()
    with pytest.raises(ValueError, match=r"input_size=\(16, 16\).*resize"):
        codec.compress(torch.rand(1, 3, 32, 32))
    enc = codec.compress(torch.rand(2, 3, 16, 16))
    assert codec.decompress(enc["strings"], enc["shape"])["z_hat"][1].shape == (2, 10)
    # a container for 32x32 inputs (written by a conv-head codec) is refused, in these words
    conv = GrayWynerCodec(3, (10, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8).eval()
    conv.update()
    other = conv.compress(torch.rand(1, 3, 32, 32))
    with pytest.raises(BitstreamError, match="MLP heads take 16x16"):
        codec.decompress(other["strings"], other["shape"])


# --------------------------------------------------------------------------------------
# finding 8: the CLI fails like a Unix tool (one line, an exit status per class, --debug)
# --------------------------------------------------------------------------------------
from gwn_fast import cli  # noqa: E402


@pytest.fixture
def cli_files(tmp_path):
    codec = _small_codec()
    ck = tmp_path / "codec.pt"
    save_checkpoint(ck, codec)
    x = tmp_path / "x.pt"
    torch.save(torch.rand(1, 3, 13, 18), x)
    gwn = tmp_path / "x.gwn"
    assert cli.main(["compress", str(ck), str(x), str(gwn)]) == 0
    return tmp_path, ck, x, gwn


def _fails(capsys, argv, code, *needles):
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gwn-fast"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_issue13_finding8_cli_checkpoint_error(cli_files, capsys):
    tmp, _, x, _ = cli_files
    junk = tmp / "junk.pt"
    junk.write_bytes(b"\x80\x02not a pickle at all")
    argv = ["compress", str(junk), str(x), str(tmp / "o.gwn")]
    _fails(capsys, argv, cli.EXIT_CHECKPOINT, str(junk), "not a gwn_fast checkpoint")
    with pytest.raises(CheckpointError):
        cli.main(["compress", str(junk), str(x), str(tmp / "o.gwn"), "--debug"])


def test_issue13_finding8_cli_bitstream_error(cli_files, capsys):
    tmp, ck, _, gwn = cli_files
    bad = bytearray(gwn.read_bytes())
    bad[len(bad) // 2] ^= 0x10
    (tmp / "bad.gwn").write_bytes(bytes(bad))
    _fails(capsys, ["decompress", str(ck), str(tmp / "bad.gwn"), str(tmp / "z.pt"), "--receiver", "1"], cli.EXIT_BITSTREAM,
           "checksum", "damaged")
    _fails(capsys, ["split", str(tmp / "bad.gwn"), "--out-dir", str(tmp / "parts")], cli.EXIT_BITSTREAM, "checksum")
    assert not (tmp / "z.pt").exists()


def test_issue13_finding8_cli_io_error(cli_files, capsys):
    tmp, ck, x, _ = cli_files
    _fails(capsys, ["decompress", str(ck), str(tmp / "missing.gwn"), str(tmp / "z.pt"), "--receiver", "1"], cli.EXIT_IO,
           "missing.gwn", "No such file")
    _fails(capsys, ["compress", str(tmp / "nope.pt"), str(x), str(tmp / "o.gwn")], cli.EXIT_IO, "nope.pt")


def test_issue13_finding8_cli_input_error(cli_files, capsys):
    tmp, ck, _, _ = cli_files
    nan = torch.rand(1, 3, 8, 8)
    nan[0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp / "nan.pt")
    _fails(capsys, ["compress", str(ck), str(tmp / "nan.pt"), str(tmp / "o.gwn")], cli.EXIT_INPUT, "non-finite", "nan_to_num")
    torch.save(torch.rand(1, 5, 8, 8), tmp / "c5.pt")
    _fails(capsys, ["compress", str(ck), str(tmp / "c5.pt"), str(tmp / "o.gwn")], cli.EXIT_INPUT, "x1 must be")
    (tmp / "txt.pt").write_bytes(b"hello")
    _fails(capsys, ["compress", str(ck), str(tmp / "txt.pt"), str(tmp / "o.gwn")], cli.EXIT_INPUT, "txt.pt", "cannot read")
    assert not (tmp / "o.gwn").exists()


def test_issue13_finding8_cli_usage_and_internal_errors(cli_files, capsys, monkeypatch):
    tmp, ck, x, _ = cli_files
    with pytest.raises(SystemExit) as info:
        cli.main(["compress", str(ck)])
    assert info.value.code == cli.EXIT_USAGE
    capsys.readouterr()

    def boom(*a, **k):
        raise RuntimeError("something unexpected\nacross lines")

    monkeypatch.setattr(GrayWynerCodec, "compress", boom)
    _fails(capsys, ["compress", str(ck), str(x), str(tmp / "o.gwn")], cli.EXIT_INTERNAL, "--debug", "report")
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "compress", str(ck), str(x), str(tmp / "o.gwn")])


def test_cli_help_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in (cli.EXIT_IO, cli.EXIT_CHECKPOINT, cli.EXIT_BITSTREAM, cli.EXIT_INPUT):
        assert f"{code} " in out
    assert "--debug" in out


# --------------------------------------------------------------------------------------
# the encoder never writes a stream its own decoder rejects (property)
# --------------------------------------------------------------------------------------
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@pytest.fixture(scope="module")
def property_codecs():
    torch.manual_seed(0)
    shared = _small_codec()
    mlp = GrayWynerCodec(3, (10, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8,
                         head="mlp", head_hidden=16, input_size=(6, 5), y0_prior="bottleneck").eval()
    mlp.update()
    return {"shared": shared, "mlp": mlp}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    which=st.sampled_from(["shared", "mlp"]),
    n=st.integers(1, 2),
    scale=st.sampled_from([1.0, -1.0, 1e2, 1e5, 1e8, 1e12, 1e20, 1e30, 1e38]),
    single=st.booleans(),
)
def test_compress_writes_only_what_decompress_reads(property_codecs, data, which, n, scale, single):
    codec = property_codecs[which]
    H, W = (6, 5) if which == "mlp" else (data.draw(st.integers(1, 11)), data.draw(st.integers(1, 11)))
    elements = st.one_of(
        st.floats(-2.0, 2.0, width=32),
        st.floats(width=32, allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, float("nan"), float("inf"), -float("inf"), 2.0**127, -(2.0**127)]),
    )
    x = torch.from_numpy(data.draw(hnp.arrays("float32", (n, 3, H, W), elements=elements))) * scale
    try:
        enc = codec.compress(x, single_stream=single)
    except ValueError as err:
        msg = str(err)
        assert "non-finite" in msg or "int32" in msg or "exactly" in msg, msg
        event(f"refused: {msg.split(':')[0][:40]}")
        return
    event("coded")
    assert bool(torch.isfinite(x).all())
    back = container.unpack(container.pack(enc))
    out = codec.decompress(back["strings"], back["shape"])
    want = codec(x)["latents"]
    for name, y in want.items():
        assert torch.equal(out["latents"][name], y), name
    for r in (1, 2):
        shape = (n, codec.out_channels[r - 1]) if which == "mlp" else (n, codec.out_channels[r - 1], H, W)
        assert tuple(out["z_hat"][r].shape) == shape


# --------------------------------------------------------------------------------------
# seeded mutation fuzzing of containers and decompress (issue 13, "Done when")
# --------------------------------------------------------------------------------------
def _fuzz(seconds, mutants, seed):
    from fuzz_container import run_campaign

    stats = run_campaign(seconds, mutants, seed=seed)
    print(stats.summary())
    assert not stats.failures, stats.failures[:5]
    return stats


def test_container_fuzz_short():
    """CI: 20,000 mutants (about 5 s, at most 15 s); 0 crashes, 0 wrong-sized or silently
    different outputs, 0 exceptions but BitstreamError."""
    stats = _fuzz(seconds=15.0, mutants=20_000, seed=13)
    assert stats.mutants >= 1000
    assert stats.rejected > 0
    assert stats.decoded > 0


@pytest.mark.slow
def test_container_fuzz_long():
    """At least 100k mutants (``GWN_FUZZ_SECONDS``, default 900 s, bounds the time)."""
    seconds = float(os.environ.get("GWN_FUZZ_SECONDS", "900"))
    stats = _fuzz(seconds=seconds, mutants=int(os.environ.get("GWN_FUZZ_MUTANTS", "100000")), seed=1313)
    assert stats.mutants >= min(100_000, int(os.environ.get("GWN_FUZZ_MUTANTS", "100000")))
