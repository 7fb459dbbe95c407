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
