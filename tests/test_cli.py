"""The gwn-fast command line on files: compress, split, decompress per receiver."""

import pytest
import torch

from gwn_fast import GrayWynerCodec
from gwn_fast.cli import main
from gwn_fast.train import save_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8).eval()
    codec.update()
    path = tmp_path / "codec.pt"
    save_checkpoint(path, codec)
    return path, codec


def test_compress_split_decompress(tmp_path, checkpoint, capsys):
    path, codec = checkpoint
    x = torch.rand(2, 3, 12, 12)
    torch.save(x, tmp_path / "x.pt")
    assert main(["compress", str(path), str(tmp_path / "x.pt"), str(tmp_path / "x.gwn")]) == 0
    assert main(["split", str(tmp_path / "x.gwn"), "--out-dir", str(tmp_path / "parts")]) == 0
    expected = codec(x)["z_hat"]
    for receiver in (1, 2):
        part = tmp_path / "parts" / f"receiver{receiver}.gwn"
        out = tmp_path / f"z{receiver}.pt"
        assert main(["decompress", str(path), str(part), str(out), "--receiver", str(receiver)]) == 0
        torch.testing.assert_close(torch.load(out), expected[receiver], rtol=1e-5, atol=1e-5)
    assert "bytes" in capsys.readouterr().out
    # receiver 1's part lacks private2: asking it for receiver 2 fails with the fix named,
    # in one line on stderr (--debug raises it instead)
    args = ["decompress", str(path), str(tmp_path / "parts" / "receiver1.gwn"), str(tmp_path / "z.pt"), "--receiver", "2"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "private2" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="private2"):
        main([*args, "--debug"])


def test_importing_gwn_fast_prints_no_dependency_deprecation_noise(tmp_path):
    # CompressAI's import of torch_geometric warns about torch.jit.script on every import;
    # gwn_fast (and so every gwn-fast command) silences that one warning for that import.
    # (Run outside the checkout: "-c" puts the cwd first on sys.path, and the source tree
    # has no compiled extension.)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import gwn_fast"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "torch.jit.script" not in done.stderr
