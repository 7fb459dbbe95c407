"""gwn_fast.coder.build_indexes: bit-identical to the comparison rule
(ops.reference.build_indexes_ref / functional.build_indexes) for every input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gwn_fast import _rans
from gwn_fast import functional as F
from gwn_fast.coder import build_indexes
from gwn_fast.entropy_models.gaussian import GaussianCoder
from gwn_fast.ops.reference import build_indexes_ref

COMPRESSAI_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
FINE_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256.0), 512))


def reference(scales: np.ndarray, table) -> np.ndarray:
    """The comparison loop, in torch, with the table cast to the scales' dtype by torch."""
    s = torch.from_numpy(np.ascontiguousarray(scales))
    t = torch.from_numpy(np.array(table, dtype=np.float64)).to(s.dtype)
    return build_indexes_ref(s, t).numpy()


def special_values(table: np.ndarray, dtype) -> np.ndarray:
    """Table entries (in dtype), their neighbours, zeros, infinities, NaNs, denormals, extremes."""
    info = np.finfo(dtype)
    with np.errstate(over="ignore"):
        t = table.astype(dtype)
    inf = np.array(np.inf, dtype)
    values = [
        t,
        np.nextafter(t, inf),
        np.nextafter(t, -inf),
        np.nextafter(np.nextafter(t, inf), inf),
        -t,
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0], dtype),
        np.array([info.tiny, info.smallest_subnormal, -info.smallest_subnormal, info.tiny / 3, info.max, info.min], dtype),
    ]
    out = np.concatenate([v.astype(dtype).reshape(-1) for v in values])
    nan_payload = np.array([0x7FC00001 if dtype == np.float32 else 0x7FF8000000000001], np.uint32 if dtype == np.float32 else np.uint64)
    return np.concatenate([out, nan_payload.view(dtype), (-nan_payload.view(dtype))])


def random_scales(n, dtype, low=0.01, high=3000.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(low), np.log(high), n)).astype(dtype)


TABLES = {
    "compressai": COMPRESSAI_TABLE,
    "fine": FINE_TABLE,
    "single": np.array([1.5]),
    "two": np.array([0.5, 2.0]),
    "signed": np.array([-3.0, -1e-30, -0.0, 0.0, 1e-42, 1e-300, 2.5, 7.0]),
    "duplicates": np.array([0.1, 0.1, 0.1, 1.0, 1.0, 5.0, 5.0, 5.0, 9.0]),
    "infinite": np.array([-np.inf, 0.3, 1.0, np.inf, np.inf, 4.0]),
    # dense cluster: many entries share a lookup bucket (the binary-search path)
    "clustered": np.concatenate([1.0 + np.arange(300) * 1e-7, [1e6, 2e6]]),
    "float64_only": np.array([1.0, 1.0 + 1e-12, 1.0 + 2e-12, 1e200, 1e300]),  # collapse in float32
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(TABLES))
@pytest.mark.parametrize("n", [5, 63, 1000, 70_000])
def test_bit_identical_to_the_comparison_rule(name, dtype, n):
    table = TABLES[name]
    scales = np.concatenate([special_values(table, dtype), random_scales(n, dtype), random_scales(n // 4 + 1, dtype, 1e-45, 1e38, seed=1)])
    scales = np.random.default_rng(2).permutation(scales)
    expected = reference(scales, table)
    # in calls of n scales: small calls search without the lookup, larger ones build it
    got = np.concatenate([build_indexes(scales[i : i + n], table) for i in range(0, scales.size, n)])
    assert got.dtype == np.int32 and got.shape == scales.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_neighbour_of_every_entry(dtype):
    """Each table entry, and 3 ulps either side: exactly where the index changes."""
    t = FINE_TABLE.astype(dtype)
    steps = [t]
    for direction in (np.inf, -np.inf):
        x = t
        for _ in range(3):
            x = np.nextafter(x, np.array(direction, dtype))
            steps.append(x)
    scales = np.tile(np.concatenate(steps), 50)  # enough for the lookup path
    np.testing.assert_array_equal(build_indexes(scales, FINE_TABLE), reference(scales, FINE_TABLE))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_ascending_tables_follow_the_count_rule(dtype):
    rng = np.random.default_rng(3)
    scales = np.concatenate([random_scales(20_000, dtype), special_values(COMPRESSAI_TABLE, dtype)])
    for table in (COMPRESSAI_TABLE[::-1], rng.permutation(COMPRESSAI_TABLE), rng.permutation(TABLES["duplicates"]), np.array([5.0, 1.0])):
        got = build_indexes(scales, table)
        np.testing.assert_array_equal(got, reference(scales, table))
    # the last entry is never compared: it may be anything (but NaN)
    np.testing.assert_array_equal(build_indexes(scales, [1.0, 2.0, -7.0]), build_indexes(scales, [1.0, 2.0, 1e30]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 5), (1,), (7, 11, 13), (2, 3, 4, 5, 6)])
def test_any_shape(shape, dtype):
    scales = random_scales(int(np.prod(shape)), dtype).reshape(shape)
    got = build_indexes(scales, COMPRESSAI_TABLE)
    assert got.shape == shape and got.dtype == np.int32
    np.testing.assert_array_equal(got, reference(scales, COMPRESSAI_TABLE))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_arrays_and_tensors(dtype):
    base = random_scales(64 * 48 * 3, dtype).reshape(64, 48, 3)
    views = [base.transpose(2, 0, 1), base[::2, 1::3], base[::-1], base[..., 1], np.asfortranarray(base)]
    for view in views:
        expected = reference(view, COMPRESSAI_TABLE)
        np.testing.assert_array_equal(build_indexes(view, COMPRESSAI_TABLE), expected)
    tensor = torch.from_numpy(np.ascontiguousarray(base))
    for tview in (tensor.permute(2, 0, 1), tensor[::2, 1::3], tensor[..., 1], tensor.mT):
        expected = build_indexes_ref(tview, torch.from_numpy(COMPRESSAI_TABLE).to(tview.dtype)).numpy()
        np.testing.assert_array_equal(build_indexes(tview, torch.from_numpy(COMPRESSAI_TABLE)), expected)
    # byte-swapped input
    swapped = base.astype(base.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(build_indexes(swapped, COMPRESSAI_TABLE), reference(base, COMPRESSAI_TABLE))


def test_table_is_rounded_to_the_scales_dtype():
    """A float64 table is compared in float32 for float32 scales, as tensor.to(float32) rounds it."""
    table = np.array([1.0 + 1e-9, 2.0, 3.0])  # 1 + 1e-9 rounds to 1.0 in float32
    s32 = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], np.float32)
    np.testing.assert_array_equal(build_indexes(s32, table), [0, 1])
    np.testing.assert_array_equal(build_indexes(s32.astype(np.float64), table), [0, 1])
    s64 = np.array([1.0 + 5e-10, 1.0 + 2e-9])
    np.testing.assert_array_equal(build_indexes(s64, table), [0, 1])
    np.testing.assert_array_equal(build_indexes(s64.astype(np.float32), table), [0, 0])
    # float32 / float16 / list tables give the same as the float64 table they round from
    scales = random_scales(5000, np.float32)
    for t in (COMPRESSAI_TABLE.astype(np.float32), torch.from_numpy(COMPRESSAI_TABLE).float(), COMPRESSAI_TABLE.tolist()):
        np.testing.assert_array_equal(build_indexes(scales, t), reference(scales, COMPRESSAI_TABLE.astype(np.float32)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_tensors_of_every_float_dtype_match_functional(dtype):
    # 1 + 2**-11 + 2**-40: torch rounds float64 -> float16 through float32 (to 1.0, not 1.001)
    table = torch.tensor(np.concatenate([[1 + 2**-11 + 2**-40, 1 + 2**-8 + 2**-40], COMPRESSAI_TABLE[2:]]))
    values = torch.from_numpy(special_values(table.numpy(), np.float64)).to(dtype)
    scales = torch.cat([values, torch.from_numpy(random_scales(5000, np.float64)).to(dtype)])
    scales = torch.cat([scales, torch.tensor([1.0, 1.0009765625, 1.00048828125, 1.00390625], dtype=dtype)])
    got = build_indexes(scales, table)
    np.testing.assert_array_equal(got, F.build_indexes(scales, table).numpy())
    np.testing.assert_array_equal(got, build_indexes_ref(scales, table.to(dtype)).numpy())
    if dtype == torch.float16:
        np.testing.assert_array_equal(build_indexes(scales.numpy(), table), got)


def test_threads_do_not_change_the_result():
    scales = np.concatenate([random_scales(300_001, np.float32), special_values(FINE_TABLE, np.float32)])
    one = build_indexes(scales, FINE_TABLE)
    for threads in (2, 3, None):
        np.testing.assert_array_equal(build_indexes(scales, FINE_TABLE, threads=threads), one)


def test_matches_compressai_gaussian_conditional():
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional(COMPRESSAI_TABLE.tolist())
    scales = torch.from_numpy(random_scales(100_000, np.float32, low=0.11))
    expected = gc.build_indexes(scales).numpy()
    np.testing.assert_array_equal(build_indexes(scales, gc.scale_table), expected)
    np.testing.assert_array_equal(build_indexes(scales, COMPRESSAI_TABLE), expected)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=32)


@settings(max_examples=200, deadline=None)
@given(
    scales=hnp.arrays(np.float32, st.integers(0, 300), elements=finite_or_not),
    table=st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=20),
    ascending=st.booleans(),
)
def test_arbitrary_float32_inputs(scales, table, ascending):
    if ascending:
        table = sorted(table)
    np.testing.assert_array_equal(build_indexes(scales, table), reference(scales, table))


@settings(max_examples=100, deadline=None)
@given(
    scales=hnp.arrays(np.float64, st.integers(0, 300), elements=st.floats(allow_nan=True, allow_subnormal=True)),
    table=st.lists(st.floats(allow_nan=False), min_size=1, max_size=20).map(sorted),
)
def test_arbitrary_float64_inputs(scales, table):
    np.testing.assert_array_equal(build_indexes(scales, table), reference(scales, table))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: build_indexes(np.ones(3, np.float32), []), ValueError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), np.ones((2, 2))), ValueError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), np.array(1.0)), ValueError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), [0.1, np.nan, 1.0]), ValueError, "table.*NaN"),
        (lambda: build_indexes(np.ones(3, np.float32), np.arange(3)), TypeError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), torch.arange(3)), TypeError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), ["a", "b"]), TypeError, "table"),
        (lambda: build_indexes(np.ones(3, np.float32), "abc"), TypeError, "table"),
        (lambda: build_indexes(np.ones(3, np.int32), [1.0]), TypeError, "scales"),
        (lambda: build_indexes(torch.ones(3, dtype=torch.int64), [1.0]), TypeError, "scales"),
        (lambda: build_indexes(np.ones(3, np.complex64), [1.0]), TypeError, "scales"),
        (lambda: build_indexes(np.ones(3, np.longdouble), [1.0]), TypeError, "scales"),
        (lambda: build_indexes([0.5, 1.0], [1.0]), TypeError, "scales"),
        (lambda: build_indexes(np.ones(3), [1.0], threads=0), ValueError, "threads"),
        (lambda: build_indexes(np.ones(3), [1.0], threads=1.5), TypeError, "threads"),
        (lambda: _rans.build_indexes(np.ones(3), np.ones(2, np.float32), 1), ValueError, "table"),
        (lambda: _rans.build_indexes(np.ones(3, np.int32), np.ones(2, np.int32), 1), ValueError, "scales"),
        (lambda: _rans.build_indexes(np.ones(3), np.ones(0), 1), ValueError, "table"),
        (lambda: _rans.build_indexes(np.ones((3, 2))[:, 0], np.ones(2), 1), ValueError, "scales"),
    ],
)
def test_bad_arguments_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.cuda
def test_cuda_tensors_are_refused():
    with pytest.raises(ValueError, match="scales"):
        build_indexes(torch.ones(3, device="cuda"), [1.0])


# -- GaussianCoder.indexes uses it on CPU ---------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_gaussian_coder_indexes_are_unchanged(dtype):
    coder = GaussianCoder()
    bounds = coder._boundaries
    scales = torch.cat(
        [
            torch.from_numpy(random_scales(10_000, np.float64, 0.01, 1000.0)),
            bounds,
            torch.from_numpy(np.nextafter(bounds.numpy(), np.inf)),
            torch.from_numpy(np.nextafter(bounds.numpy(), -np.inf)),
            torch.tensor([0.0, -1.0, float("inf"), float("nan"), 1e-310]),
        ]
    ).to(dtype)
    scales = scales[: scales.numel() // 6 * 6].reshape(6, -1).t()  # non-contiguous, 2-D
    got = coder.indexes(scales)
    assert got.dtype == torch.int32 and got.shape == scales.shape and got.device == scales.device
    expected = F.build_indexes(scales, bounds.to(dtype))
    assert torch.equal(got, expected)
    assert torch.equal(got, build_indexes_ref(scales, bounds.to(dtype)))
