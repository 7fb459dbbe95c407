"""Issue 10: a ``torch.compile``d training step of a small codec matches eager (loss and
every parameter's gradient), in one graph: the loss reads the fused ``out["bits"]`` and the
lazy ``out["likelihoods"]`` mapping causes no graph break (``fullgraph=True`` would raise)."""

import copy

import pytest
import torch
from utils import assert_verbose_allclose

from gwn_fast import GrayWynerCodec, GrayWynerLoss, recipes


def _digits():
    # The digits recipe's codec (shared architecture, match_merge, rate_grad="smooth").
    codec = recipes.make_codec("digits", architecture="shared", context="none", y0_prior="gaussian")
    loss = recipes.make_loss("digits")
    x = torch.rand(8, 3, 16, 16)
    return codec, loss, x, (torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,)))


def _checkerboard():
    # The image codec's structure (checkerboard context, conditional private latents), small.
    codec = GrayWynerCodec(latent_channels=8, transform="light", hidden_channels=8, depth=2, rate_grad="ste")
    x = torch.rand(2, 3, 16, 16)
    return codec, GrayWynerLoss(), x, (x, x)


MODELS = {"digits": _digits, "checkerboard": _checkerboard}


def _step(codec, loss_fn, x, targets):
    return loss_fn(codec(x), targets)["loss"]


def _loss_and_grads(fn, codec, loss_fn, x, targets):
    loss = fn(codec, loss_fn, x, targets)
    params = [p for p in codec.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), dict(zip([n for n, p in codec.named_parameters() if p.requires_grad], grads))


def _check_step(model, compile_backend):
    torch.manual_seed(0)
    codec, loss_fn, x, targets = MODELS[model]()
    codec.train()
    compiled_codec = copy.deepcopy(codec)
    eager_loss, eager_grads = _loss_and_grads(_step, codec, loss_fn, x, targets)
    torch._dynamo.reset()
    # fullgraph=True: any graph break in forward, the rates or the loss raises here.
    compiled = torch.compile(_step, fullgraph=True, backend=compile_backend)
    loss, grads = _loss_and_grads(compiled, compiled_codec, loss_fn, x, targets)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-5, abs=1e-5)
    assert grads.keys() == eager_grads.keys()
    for name, want in eager_grads.items():
        got = grads[name]
        if want is None:
            assert got is None, name
            continue
        assert_verbose_allclose(got, want, atol=1e-5, rtol=1e-4, name=f"grad {name}")


@pytest.mark.parametrize("model", list(MODELS))
def test_issue10_compiled_training_step_matches_eager(model):
    _check_step(model, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_issue10_inductor_training_step_matches_eager(model):
    _check_step(model, "inductor")


@pytest.mark.parametrize("model", list(MODELS))
def test_issue10_lazy_likelihoods_cause_no_graph_break(model):
    torch.manual_seed(0)
    codec, loss_fn, x, targets = MODELS[model]()
    codec.train()
    torch._dynamo.reset()
    step = torch._dynamo.explain(lambda x: loss_fn(codec(x), targets)["loss"])(x)
    assert step.graph_break_count == 0, [str(b.reason) for b in step.break_reasons]
    assert step.graph_count == 1
    torch._dynamo.reset()
    # The compiled module's output keeps CompressAI's contract: the mapping, evaluated
    # after the graph on first access, has the eager likelihoods.
    out = torch.compile(codec, fullgraph=True, backend="aot_eager")(x)
    eager = codec(x)
    assert set(out["likelihoods"]) == set(eager["likelihoods"]) == set(out["bits"])
    for name in eager["bits"]:
        assert_verbose_allclose(out["bits"][name], eager["bits"][name], atol=1e-4, rtol=1e-5, name=f"bits {name}")
        lik = out["likelihoods"][name]
        assert_verbose_allclose(lik, eager["likelihoods"][name], atol=1e-6, rtol=1e-5, name=f"likelihood {name}")
        # -log2 of the lazy likelihood has the fused bits' values.
        assert_verbose_allclose(-torch.log2(lik).flatten(1).sum(1), out["bits"][name], atol=1e-3, rtol=1e-5, name=name)
