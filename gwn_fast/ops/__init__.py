"""``torch.library`` ops of gwn_fast: Triton kernels on CUDA, PyTorch references on CPU.

Every op is registered as ``gwn_fast::<name>`` with a fake (meta) implementation and, where
it has differentiable inputs, a registered autograd whose backward is itself an op, so
``torch.compile`` traces them without graph breaks. Use them through
:mod:`gwn_fast.functional`; this package adds the backend switch::

    from gwn_fast.ops import backend
    with backend("triton"):      # force the Triton kernels ("reference": force PyTorch)
        ...

Dispatch (``"auto"``): CUDA tensors of float16/bfloat16/float32 run the Triton kernels
when Triton works on that device; CPU tensors and float64 run :mod:`.reference`.
"""

from gwn_fast.ops import reference
from gwn_fast.ops._dispatch import BACKENDS, TRITON_DTYPES, backend, current_backend
from gwn_fast.ops.gaussian import (
    gaussian_likelihood,
    gaussian_likelihood_backward,
    gaussian_rate,
    gaussian_rate_backward,
)
from gwn_fast.ops.indexes import build_indexes
from gwn_fast.ops.merge import match_merge, match_merge_backward

__all__ = [
    "BACKENDS",
    "TRITON_DTYPES",
    "backend",
    "build_indexes",
    "current_backend",
    "gaussian_likelihood",
    "gaussian_likelihood_backward",
    "gaussian_rate",
    "gaussian_rate_backward",
    "match_merge",
    "match_merge_backward",
    "reference",
]
