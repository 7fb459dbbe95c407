"""torch.compile traces the ops without graph breaks (fullgraph=True) and gives the eager
result, forward and backward."""

import pytest
import torch
from utils import assert_verbose_allclose, gaussian_inputs

from gwn_fast import functional as F


def _codec_step(c1, c2, scales, means, private, private_scales, table):
    # A miniature of the GWN step: merge the candidates, rate the common and a private
    # latent, and index the scales for coding.
    y0, align = F.match_merge(c1, c2, quantize=True)
    common_bits = F.gaussian_rate(y0, scales, means, rate_grad="smooth")
    private_bits = F.gaussian_rate(private, private_scales, reduction="batch")
    likelihood = F.gaussian_likelihood(y0, scales, means)
    indexes = F.build_indexes(scales.detach(), table)
    loss = 2.0 * common_bits + private_bits.sum() + align - torch.log2(likelihood).mean()
    return loss, indexes


def _inputs():
    c1 = torch.randn(2, 3, 6, 5) * 3
    c2 = c1 + 0.4 * torch.randn(2, 3, 6, 5)
    _, scales, means = gaussian_inputs((2, 3, 6, 5))
    private, private_scales, _ = gaussian_inputs((2, 4, 6, 5))
    table = torch.exp(torch.linspace(-2.2, 5.5, 32))
    leaves = [t.requires_grad_() for t in (c1, c2, scales, means, private, private_scales)]
    return leaves, table


def _run(fn, leaves, table):
    loss, indexes = fn(*leaves, table)
    grads = torch.autograd.grad(loss, leaves)
    return loss, indexes, grads


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compiled_step_matches_eager(compile_backend):
    leaves, table = _inputs()
    eager_loss, eager_indexes, eager_grads = _run(_codec_step, leaves, table)
    torch._dynamo.reset()
    compiled = torch.compile(_codec_step, fullgraph=True, backend=compile_backend)
    loss, indexes, grads = _run(compiled, leaves, table)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-6)
    assert torch.equal(indexes, eager_indexes)
    for name, got, want in zip(("c1", "c2", "scales", "means", "private", "private_scales"), grads, eager_grads):
        assert_verbose_allclose(got, want, atol=1e-5, rtol=1e-5, name=f"grad {name}")


def test_backend_choice_is_guarded_and_baked_into_the_graph():
    # The backend is read at trace time: switching it must trace a new graph whose op
    # calls carry the new choice, not reuse the graph traced for the old one.
    from gwn_fast.ops import backend

    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    leaves, table = _inputs()
    torch._dynamo.reset()
    compiled = torch.compile(_codec_step, fullgraph=True, backend=recording_backend)
    _run(compiled, leaves, table)
    with backend("reference"):
        _run(compiled, leaves, table)
    _run(compiled, leaves, table)  # back to "auto": the first graph is reused

    def impl_arguments(graph_module):
        return {
            node.args[-1]
            for node in graph_module.graph.nodes
            if node.op == "call_function" and "gwn_fast" in str(node.target)
        }

    assert len(graphs) == 2
    assert impl_arguments(graphs[0]) == {"auto"}
    assert impl_arguments(graphs[1]) == {"reference"}
