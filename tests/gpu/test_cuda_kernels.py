"""Triton kernels on a CUDA GPU: against the reference, bit-identical indexes across devices,
deterministic reductions, no host synchronisation, torch.compile. Skipped without CUDA."""

import math

import pytest
import torch
from utils import assert_verbose_allclose, assert_within_rule, float64_bits, gaussian_inputs

from gwn_fast import functional as F
from gwn_fast.ops import _dispatch, backend

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _cuda_inputs(shape, dtype=torch.float32, **kwargs):
    return [t.to(device="cuda", dtype=dtype) for t in gaussian_inputs(shape, **kwargs)]


def _leaves(tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).requires_grad_() for t in tensors]


def test_auto_dispatch_runs_triton_on_cuda():
    assert _dispatch.use_triton("auto", torch.zeros(1, device="cuda"))
    assert not _dispatch.use_triton("auto", torch.zeros(1, device="cuda", dtype=torch.float64))
    assert not _dispatch.use_triton("reference", torch.zeros(1, device="cuda"))


@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
@pytest.mark.parametrize("shape", [(1,), (1023,), (4, 192, 17, 23), (3, 1 << 20)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gaussian_kernels_match_the_reference(dtype, shape, rate_grad):
    inputs = _cuda_inputs(shape, dtype, spread=2.0)
    if len(shape) == 4:
        inputs = [t.transpose(1, 3) for t in inputs]  # non-contiguous

    def run(tensors):
        y, scales, means = tensors
        p = F.gaussian_likelihood(y, scales, means, rate_grad=rate_grad)
        bits = F.gaussian_rate(y, scales, means, reduction="batch", rate_grad=rate_grad)
        upstream = torch.linspace(-1, 1, p.numel(), device="cuda").reshape(p.shape).to(p.dtype)
        grads = torch.autograd.grad((p, bits), tensors, (upstream, torch.ones_like(bits)))
        return (p, bits, *grads)

    kernel = run(_leaves(inputs))
    with backend("reference"):
        ref32 = run(_leaves(inputs, torch.float32))
        ref_dtype = run(_leaves(inputs))
    for name, got, want, rounded in zip(("p", "bits", "dy", "dscales", "dmeans"), kernel, ref32, ref_dtype):
        assert_within_rule(got, want, rounded, dtype, name=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_match_merge_kernels_match_the_reference(dtype):
    c1 = (torch.randn(8, 96, 33, 47, device="cuda") * 3).to(dtype)
    c2 = torch.where(torch.rand(c1.shape, device="cuda") < 0.5, c1, c1 + torch.randn_like(c1)).to(dtype)
    g_y0 = torch.randn(c1.shape, device="cuda").to(dtype)
    results = {}
    for name, cast in (("auto", dtype), ("reference", torch.float32), ("reference-dtype", dtype)):
        leaves = _leaves((c1, c2), cast)
        with backend(name.split("-")[0]):
            y0, align = F.match_merge(*leaves)
            grads = torch.autograd.grad((y0, align), leaves, (g_y0.to(cast), torch.ones_like(align)))
        results[name] = (y0, align, *grads)
    assert torch.equal(results["auto"][0].float(), results["reference"][0].to(dtype).float())
    assert_verbose_allclose(results["auto"][1], results["reference"][1], rtol=1e-5, name="align")
    for i, name in ((2, "dc1"), (3, "dc2")):
        assert_within_rule(results["auto"][i], results["reference"][i], results["reference-dtype"][i], dtype, name=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_build_indexes_is_bit_identical_on_cpu_and_gpu(dtype):
    table = torch.exp(torch.linspace(math.log(0.11), math.log(256), 64)).to(dtype)
    scales = torch.exp(torch.empty(1 << 20).uniform_(math.log(0.01), math.log(1000))).to(dtype)
    scales[:64] = table
    scales[64:67] = torch.tensor([math.nan, math.inf, -math.inf]).to(dtype)
    on_cpu = F.build_indexes(scales, table)
    on_gpu = F.build_indexes(scales.cuda(), table.cuda())
    assert on_gpu.dtype == torch.int32
    assert torch.equal(on_gpu.cpu(), on_cpu)


def test_reductions_are_bitwise_deterministic():
    y, scales, means = _cuda_inputs((16, 1 << 18), spread=2.0)
    first = (F.gaussian_rate(y, scales, means), F.gaussian_rate(y, scales, means, reduction="batch"), F.match_merge(y, means)[1])
    for _ in range(5):
        again = (F.gaussian_rate(y, scales, means), F.gaussian_rate(y, scales, means, reduction="batch"), F.match_merge(y, means)[1])
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_forward_and_backward_never_synchronise_with_the_host():
    y, scales, means = _leaves(_cuda_inputs((4, 64, 32, 32)))
    table = torch.exp(torch.linspace(-2.2, 5.5, 64, device="cuda"))
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y0, align = F.match_merge(y, means)
        bits = F.gaussian_rate(y0, scales, means, rate_grad="smooth")
        p = F.gaussian_likelihood(y, scales, means)
        F.build_indexes(scales.detach(), table)
        (bits + align + p.sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def test_triton_bits_match_float64_everywhere():
    y, scales, means = _cuda_inputs((1 << 20,), scale_range=(0.01, 1e4), spread=8.0)
    bits = -torch.log2(F.gaussian_likelihood(y, scales, means).double())
    exact = float64_bits(y, scales, means)
    tolerance = torch.maximum(torch.full_like(exact, 1e-4), 1e-6 * exact.abs())
    assert_verbose_allclose(bits, exact, atol=tolerance, name="bits vs float64")


def test_compiled_step_matches_eager():
    y, scales, means = _leaves(_cuda_inputs((8, 32, 16, 16)))

    def step(y, scales, means):
        y0, align = F.match_merge(y, means)
        return F.gaussian_rate(y0, scales, means, rate_grad="smooth") + align

    eager = step(y, scales, means)
    eager_grads = torch.autograd.grad(eager, (y, scales, means))
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True)(y, scales, means)
    compiled_grads = torch.autograd.grad(compiled, (y, scales, means))
    assert torch.equal(eager, compiled)
    for got, want in zip(compiled_grads, eager_grads):
        assert torch.equal(got, want)


@pytest.mark.slow
def test_more_than_two_to_the_31_elements():
    # 64-bit offsets: the rate of the whole equals the rates of two halves.
    n = (1 << 31) + 4099
    if torch.cuda.get_device_properties(0).total_memory < 3 * n * 2 + (4 << 30):
        pytest.skip("not enough GPU memory")
    y = torch.round(torch.randn(n, device="cuda", dtype=torch.bfloat16) * 3)
    scales = torch.full((n,), 1.5, device="cuda", dtype=torch.bfloat16)
    total = F.gaussian_rate(y, scales).double()
    half = n // 2
    parts = F.gaussian_rate(y[:half], scales[:half]).double() + F.gaussian_rate(y[half:], scales[half:]).double()
    assert total.item() == pytest.approx(parts.item(), rel=1e-5)


# -- issue 11: integer entropy parameters, exact across devices ------------------------------
def _light_codec(context):
    from gwn_fast import GrayWynerCodec

    torch.manual_seed(0)
    codec = GrayWynerCodec(3, (3, 3), latent_channels=16, transform="light", depth=2, hidden_channels=16, context=context)
    codec.eval().update()
    return codec


@pytest.mark.parametrize("context", ["checkerboard", "autoregressive", "none"])
def test_integer_entropy_parameters_are_identical_on_cpu_and_gpu(context):
    codec = _light_codec(context)
    g = torch.Generator().manual_seed(1)
    y0 = torch.randint(-20, 21, (3, 8, 64, 64), generator=g).double()
    y1 = torch.randint(-20, 21, (3, 8, 64, 64), generator=g).double()
    cpu = codec.latent_codecs["y1"].integer(y1, y0)
    gpu_codec = codec.to("cuda")
    gpu = gpu_codec.latent_codecs["y1"].integer(y1.cuda(), y0.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


@pytest.mark.parametrize("context", ["checkerboard", "autoregressive"])
def test_encode_on_one_device_decode_on_the_other(context):
    from gwn_fast import GrayWynerCodec

    cpu_codec = _light_codec(context)
    gpu_codec = GrayWynerCodec.from_config(cpu_codec.config)
    gpu_codec.load_state_dict(cpu_codec.state_dict())
    gpu_codec = gpu_codec.eval().to("cuda")
    gpu_codec.update()
    size = 64 if context == "checkerboard" else 32
    x = torch.rand(3, 3, size * 4, size * 4, generator=torch.Generator().manual_seed(2))
    for enc_codec, dec_codec, xin in ((gpu_codec, cpu_codec, x.cuda()), (cpu_codec, gpu_codec, x)):
        enc = enc_codec.compress(xin)
        same = enc_codec.decompress(enc["strings"], enc["shape"])
        other = dec_codec.decompress(enc["strings"], enc["shape"])
        for name in same["latents"]:
            assert torch.equal(same["latents"][name].cpu(), other["latents"][name].cpu())
        # and the latents are those the encoder computed
        ref = enc_codec(xin)["latents"]
        for name in ref:
            assert torch.equal(ref[name].cpu(), other["latents"][name].cpu())
