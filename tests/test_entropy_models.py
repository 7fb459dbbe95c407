"""GaussianCoder: tables in buffers, the symbol bijection, payload vs likelihood."""

import io

import numpy as np
import pytest
import torch

from gwn_fast import functional as F
from gwn_fast.coder import fixed_overhead
from gwn_fast.entropy_models import GaussianCoder


def test_symbol_mapping_is_a_bijection_even_at_half_means():
    y = torch.arange(-20, 21, dtype=torch.float64).repeat(4)
    mu = torch.tensor([0.5, -0.5, 2.5, 0.25], dtype=torch.float64).repeat_interleave(41)
    k = GaussianCoder.symbols(y, mu)
    assert torch.equal(GaussianCoder.values(k, mu), y)
    for m in (0.5, -0.5, 2.5):
        ks = k[mu == m]
        assert ks.unique().numel() == ks.numel()  # no two integers share a symbol


def test_payload_matches_likelihood_within_one_percent():
    torch.manual_seed(0)
    g = GaussianCoder()
    g.update()
    n = 200_000
    scales = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(np.log(0.3), np.log(60.0)))
    means = torch.empty(n, dtype=torch.float64).uniform_(-3, 3)
    y = torch.round(means + scales * torch.randn(n, dtype=torch.float64))
    estimate = (-torch.log2(F.gaussian_likelihood(y.float(), scales.float(), means.float()))).sum().item()
    data = g.encode_stream([g.encode(y, means, scales)])
    payload = 8 * (len(data) - fixed_overhead(data))
    assert abs(payload - estimate) <= 0.01 * estimate, (payload, estimate)
    dec = g.decoder(data)
    assert torch.equal(g.decode_part(dec, means, scales), y)
    dec.finish()


def test_tables_live_in_the_state_dict_and_resize_on_load():
    g = GaussianCoder(scale_table=[0.2, 1.0, 5.0])
    g.update()
    buf = io.BytesIO()
    torch.save(g.state_dict(), buf)
    buf.seek(0)
    fresh = GaussianCoder()
    assert not fresh.ready
    fresh.load_state_dict(torch.load(buf))
    assert fresh.ready and fresh.tables() == g.tables()
    assert fresh.scale_table.tolist() == [0.2, 1.0, 5.0]


def test_missing_update_names_the_fix():
    with pytest.raises(RuntimeError, match=r"update\(\)"):
        GaussianCoder().tables()
    with pytest.raises(ValueError, match="scale_table"):
        GaussianCoder(scale_table=[1.0, 0.5])
