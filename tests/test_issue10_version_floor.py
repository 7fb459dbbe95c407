"""Issue 10, part 4: gwn_fast imports and its CPU path works with the Triton path disabled,
and the interpreter gate works on Triton releases older than ``triton.knobs``.

Each case runs in a fresh interpreter (``sys.executable``), started outside the source
tree so that it imports the installed package, as users and CI do.

The declared floors (pyproject.toml: torch >= 2.6, triton >= 3.2) were checked by hand
with Triton 3.2.0: the interpreter suite and tests/test_kernel_codegen.py pass with it,
while Triton 3.0 and 3.1 reject the kernels (``arange's arguments must be of type
tl.constexpr``).
"""

import os
import subprocess
import sys
import textwrap

import pytest

NO_TRITON = textwrap.dedent(
    """
    import sys
    sys.modules["triton"] = None  # `import triton` raises ImportError; find_spec says None

    import torch

    import gwn_fast
    from gwn_fast import GrayWynerCodec, GrayWynerLoss, kernels
    from gwn_fast import functional as F
    from gwn_fast.coder import CdfTables, decode, encode
    from gwn_fast.ops import backend

    assert not kernels.triton_available()
    assert not kernels.interpreter_active()
    assert not kernels.triton_usable("cpu") and not kernels.triton_usable("cuda")

    # The ops run their PyTorch path, values and gradients.
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1000, generator=g, dtype=torch.float64).mul(3).round().requires_grad_()
    scales = torch.rand(1000, generator=g, dtype=torch.float64).add(0.2).requires_grad_()
    means = torch.randn(1000, generator=g, dtype=torch.float64).requires_grad_()
    bits = F.gaussian_rate(y, scales, means)
    p = F.gaussian_likelihood(y, scales, means)
    torch.testing.assert_close(bits, -torch.log2(p).sum())
    bits.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (y, scales, means))
    y0, align = F.match_merge(torch.randn(64, generator=g), torch.randn(64, generator=g))
    assert y0.shape == (64,) and torch.isfinite(align)

    # Asking for the kernels explicitly fails with a clear error, not an ImportError.
    try:
        with backend("triton"):
            F.gaussian_rate(y.detach().float(), scales.detach().float())
    except RuntimeError as error:
        assert "Triton cannot run" in str(error), error
    else:
        raise AssertionError("backend('triton') ran without Triton")

    # The codec trains and codes exactly; the coder works.
    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8)
    x = torch.rand(2, 3, 16, 16)
    out = codec(x)
    GrayWynerLoss()(out, (x, x))["loss"].backward()
    codec.eval().update()
    out = codec(x)
    enc = codec.compress(x)
    dec = codec.decompress(enc["strings"], enc["shape"])
    for name, latent in dec["latents"].items():
        assert torch.equal(latent, out["latents"][name]), name
    import numpy as np
    tables = CdfTables.from_gaussian(np.exp(np.linspace(np.log(0.11), np.log(256), 8)))
    symbols = np.arange(-50, 50, dtype=np.int32)
    indexes = (np.arange(100) % 8).astype(np.int32)
    assert np.array_equal(decode(encode(symbols, indexes, tables), indexes, tables), symbols)

    assert sys.modules["triton"] is None, "something imported a real triton"
    print("OK", gwn_fast.__version__)
    """
)

# A Triton older than 3.4 has no ``triton.knobs``; its @jit interprets when
# TRITON_INTERPRET is exactly "1". The installed Triton, with knobs taken away, plays it.
OLD_TRITON_GATE = textwrap.dedent(
    """
    import sys
    import triton
    if hasattr(triton, "knobs"):
        del triton.knobs
    sys.modules["triton.knobs"] = None  # `from triton import knobs` raises ImportError
    from gwn_fast import kernels
    print(kernels.triton_available(), kernels.interpreter_active())
    """
)


def _run(code, tmp_path, env_update=None, env_drop=()):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env.update(env_update or {})
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("interpret", [None, "1"], ids=["plain", "TRITON_INTERPRET=1"])
def test_issue10_import_and_cpu_path_without_triton(tmp_path, interpret):
    env = {"TRITON_INTERPRET": interpret} if interpret else {}
    assert _run(NO_TRITON, tmp_path, env, env_drop=("TRITON_INTERPRET",)).startswith("OK")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "True False"), ("1", "True True"), ("0", "True False"), ("true", "True False")],
    ids=["unset", "1", "0", "true"],
)
def test_issue10_interpreter_gate_on_triton_without_knobs(tmp_path, value, expected):
    pytest.importorskip("triton")
    env = {"TRITON_INTERPRET": value} if value is not None else {}
    assert _run(OLD_TRITON_GATE, tmp_path, env, env_drop=("TRITON_INTERPRET",)) == expected
