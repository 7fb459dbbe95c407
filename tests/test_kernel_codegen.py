"""Every Triton kernel compiles to a CUDA binary (sm_90) in the variants the launchers use.

The interpreter executes kernels as Python, so it cannot catch errors of Triton's compiler
(types, constexpr control flow, unsupported ops). This compiles them ahead of time for a
GPU target, which needs no GPU, so a CPU machine checks the real code path too.
"""

import os

import pytest

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="kernels are interpreted functions under TRITON_INTERPRET=1"
)


def _compile(kernel, signature, constexprs):
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as error:  # pragma: no cover - depends on the Triton version
        pytest.skip(f"this Triton has no ahead-of-time compile API: {error}")
    for name in constexprs:
        signature[name] = "constexpr"
    try:
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    except TypeError:  # Triton 3.2, the declared floor, calls them constants
        source = ASTSource(fn=kernel, signature=signature, constants=constexprs)
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    except RuntimeError as error:
        if "ptxas" in str(error) and "not found" in str(error):  # pragma: no cover
            pytest.skip(f"no ptxas: {error}")
        raise
    assert compiled.asm["cubin"]


def _gaussian_pointers(dtype, *names):
    return {name: f"*{dtype}" for name in names}


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("quantize", [True, False])
def test_merge_kernels_compile(dtype, quantize):
    from gwn_fast.kernels import merge

    _compile(
        merge._match_merge_fwd_kernel,
        {**_gaussian_pointers(dtype, "c1_ptr", "c2_ptr", "y0_ptr"), "partials_ptr": "*fp32", "n": "i32"},
        {"QUANTIZE": quantize, "BLOCK": 2048},
    )
    _compile(
        merge._match_merge_bwd_kernel,
        {
            **_gaussian_pointers(dtype, "c1_ptr", "c2_ptr", "grad_y0_ptr", "grad_c1_ptr", "grad_c2_ptr"),
            "grad_align_ptr": "*fp32",
            "n": "i32",
            "two_over_n": "fp32",
        },
        {"QUANTIZE": quantize, "BLOCK": 1024},
    )


@pytest.mark.parametrize(
    ("dtype", "has_means", "mean_grid"), [("fp32", True, False), ("fp16", False, False), ("bf16", True, False), ("bf16", True, True)]
)
@pytest.mark.parametrize("round_residual", [True, False])
def test_gaussian_forward_kernels_compile(dtype, has_means, mean_grid, round_residual):
    from gwn_fast.kernels import gaussian

    inputs = _gaussian_pointers(dtype, "y_ptr", "scales_ptr", "means_ptr")
    bounds = {"scale_bound": "fp32", "likelihood_bound": "fp32"}
    flags = {"HAS_MEANS": has_means, "ROUND": round_residual}
    _compile(
        gaussian._gaussian_likelihood_fwd_kernel,
        {**inputs, "likelihood_ptr": f"*{dtype}", "n": "i32", **bounds},
        {**flags, "BLOCK": 1024},
    )
    _compile(
        gaussian._gaussian_rate_fwd_kernel,
        {**inputs, "partials_ptr": "*fp32", "row_len": "i32", "programs_per_row": "i32", **bounds, "mean_steps": "fp32"},
        {**flags, "MEAN_GRID": mean_grid, "BLOCK": 2048},
    )


@pytest.mark.parametrize(("round_residual", "smooth", "latent"), [(True, False, False), (True, True, False), (False, False, False), (True, False, True)])
@pytest.mark.parametrize("needs", [(True, True, True), (False, True, False)])
@pytest.mark.parametrize("mean_grid", [False, True])
def test_gaussian_backward_kernels_compile(round_residual, smooth, latent, needs, mean_grid):
    from gwn_fast.kernels import gaussian

    tensors = _gaussian_pointers("bf16", "y_ptr", "scales_ptr", "means_ptr", "grad_y_ptr", "grad_scales_ptr", "grad_means_ptr")
    bounds = {"scale_bound": "fp32", "likelihood_bound": "fp32"}
    flags = {
        "HAS_MEANS": needs[2],
        "ROUND": round_residual,
        "SMOOTH": smooth,
        "NEED_Y": needs[0],
        "NEED_SCALES": needs[1],
        "NEED_MEANS": needs[2],
        "BLOCK": 1024,
    }
    if not mean_grid and not latent:  # the likelihood has no mean grid and no latent
        _compile(gaussian._gaussian_likelihood_bwd_kernel, {"grad_p_ptr": "*bf16", **tensors, "n": "i32", **bounds}, flags)
    inputs = _gaussian_pointers("bf16", "y_ptr", "scales_ptr", "means_ptr", "latent_ptr")
    outputs = _gaussian_pointers("bf16", "grad_y_ptr", "grad_scales_ptr", "grad_means_ptr")
    _compile(
        gaussian._gaussian_rate_bwd_kernel,
        {"grad_bits_ptr": "*fp32", **inputs, **outputs, "row_len": "i32", "programs_per_row": "i32", **bounds, "mean_steps": "fp32"},
        {**flags, "HAS_MEANS": needs[2] or mean_grid, "MEAN_GRID": mean_grid, "LATENT": latent},
    )


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_index_and_reduction_kernels_compile(dtype):
    from gwn_fast.kernels import indexes, utils

    _compile(
        indexes._build_indexes_fwd_kernel,
        {"scales_ptr": f"*{dtype}", "table_ptr": f"*{dtype}", "indexes_ptr": "*i32", "n": "i32", "table_len": "i32"},
        {"BLOCK": 1024},
    )
    _compile(utils._sum_partials_kernel, {"partials_ptr": "*fp32", "out_ptr": "*fp32", "num_partials": "i32"}, {"BLOCK": 1024})
