"""GaussianCoder: deterministic tables rebuilt from a small state, the symbol mappings, payload vs likelihood."""

import io

import numpy as np
import pytest
import torch

from gwn_fast import functional as F
from gwn_fast.coder import Decoder, encode, fixed_overhead
from gwn_fast.entropy_models import GaussianCoder


def test_symbol_mapping_is_a_bijection_even_at_half_means():
    y = torch.arange(-20, 21, dtype=torch.float64).repeat(4)
    mu = torch.tensor([0.5, -0.5, 2.5, 0.25], dtype=torch.float64).repeat_interleave(41)
    k = GaussianCoder.symbols(y, mu)
    assert torch.equal(GaussianCoder.values(k, mu), y)
    for m in (0.5, -0.5, 2.5):
        ks = k[mu == m]
        assert ks.unique().numel() == ks.numel()  # no two integers share a symbol


@pytest.mark.parametrize("mean_steps", [1, 8])
def test_payload_matches_likelihood_through_the_integer_mapping(mean_steps):
    """Fixed-point (scale, mean) -> (table, offset) -> bytes: within 0.1 % of the
    likelihood of the quantized parameters (256 scales, 24-bit tables)."""
    torch.manual_seed(0)
    g = GaussianCoder(mean_steps=mean_steps)
    g.update()
    n = 200_000
    scales = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(np.log(0.3), np.log(60.0)))
    means = torch.empty(n, dtype=torch.float64).uniform_(-3, 3)
    y = torch.round(means + scales * torch.randn(n, dtype=torch.float64))
    s_fix, m_fix = torch.round(scales * 4096), torch.round(means * 4096)
    mu = torch.floor((m_fix * mean_steps + 2048) / 4096) / mean_steps if mean_steps > 1 else m_fix / 4096
    lik = F.gaussian_likelihood(y, s_fix / 4096, mu, round_residual=g.round_residual)
    estimate = (-torch.log2(lik)).sum().item()
    offset, table = g.integer_offsets(s_fix, m_fix)
    k = g.integer_symbols(y, offset)
    data = encode(k.numpy(), table.numpy(), g.tables())
    payload = 8 * (len(data) - fixed_overhead(data))
    assert abs(payload - estimate) <= 0.001 * estimate, (payload, estimate)
    dec = Decoder(data, g.tables())
    assert torch.equal(torch.from_numpy(dec.decode(table.numpy())).double() + offset, y)
    dec.finish()


def test_integer_symbols_refuse_values_outside_int32():
    y = torch.tensor([2.0**31 - 1], dtype=torch.float64)
    with pytest.raises(ValueError, match="int32 range"):
        GaussianCoder.integer_symbols(y, torch.tensor([-(2**31)]))
    with pytest.raises(ValueError, match="int32 range"):
        GaussianCoder.integer_symbols(torch.tensor([float("nan")]), torch.tensor([0]))


def test_tables_are_rebuilt_identically_from_a_small_state_dict():
    g = GaussianCoder(scale_table=[0.2, 1.0, 5.0], mean_steps=8)
    g.update()
    state = g.state_dict()
    assert set(state) == {"scale_table", "tables_built"}  # the tables are not stored
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = GaussianCoder(mean_steps=8)
    assert not fresh.ready
    fresh.load_state_dict(torch.load(buf))
    assert fresh.ready and fresh.tables() == g.tables()
    assert fresh.tables().fingerprint == g.tables().fingerprint
    assert fresh.scale_table.tolist() == [0.2, 1.0, 5.0]
    # the default codec's coder: 256 scales x 8 mean steps, 24-bit, a few kB of state
    big = GaussianCoder(mean_steps=8)
    big.update()
    assert big.tables().num_tables == 256 * 8 and big.precision == 24
    assert sum(t.numel() * t.element_size() for t in big.state_dict().values()) < 4096


def test_legacy_state_dict_with_stored_tables_loads():
    legacy = {
        "scale_table": torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64),
        "_quantized_cdf": torch.zeros(3, 5, dtype=torch.int32),
        "_cdf_length": torch.zeros(3, dtype=torch.int32),
        "_offset": torch.zeros(3, dtype=torch.int32),
    }
    g = GaussianCoder(precision=16)
    g.load_state_dict(legacy)
    assert g.ready and g.tables() == GaussianCoder(scale_table=[0.2, 1.0, 5.0], precision=16)._build()


def test_missing_update_names_the_fix():
    with pytest.raises(RuntimeError, match=r"update\(\)"):
        GaussianCoder().tables()
    with pytest.raises(ValueError, match="scale_table"):
        GaussianCoder(scale_table=[1.0, 0.5])
