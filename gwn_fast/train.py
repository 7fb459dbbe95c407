"""Training: ``fit(codec, loss_fn, loader, ...)``, for your own data and task heads.

A batch from ``loader`` is either a dict with keys ``x1``, ``z1``, ``z2`` (and optional
``x2``), or a tuple ``(x1, z1, z2)`` / ``(x1, x2, z1, z2)``; pass ``batch_fn`` to map
anything else to ``(x1, x2_or_None, (z1, z2))``.

Under ``torchrun`` (``torch.distributed`` initialised), pass ``distributed=True``: the
codec is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA) and only rank 0
logs and writes checkpoints; use a ``DistributedSampler`` in the loader.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

__all__ = ["fit", "unpack_batch", "save_checkpoint", "load_checkpoint", "load_codec"]


def unpack_batch(batch):
    """``(x1, x2 or None, (z1, z2))`` from a dict or tuple batch (see module doc)."""
    if isinstance(batch, dict):
        try:
            return batch["x1"], batch.get("x2"), (batch["z1"], batch["z2"])
        except KeyError as err:
            raise ValueError(f"a dict batch needs keys x1, z1, z2 (and optional x2); missing {err}") from None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 3:
            return batch[0], None, (batch[1], batch[2])
        if len(batch) == 4:
            return batch[0], batch[1], (batch[2], batch[3])
    raise ValueError(
        "a batch must be a dict {x1, z1, z2[, x2]} or a tuple (x1, z1, z2) / (x1, x2, z1, z2); "
        "pass batch_fn= to convert yours"
    )


def _to(x, device):
    return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x


def save_checkpoint(path, codec: nn.Module, optimizer=None, scheduler=None, epoch: int = 0, extra: dict | None = None):
    """Write model, optimiser and scheduler state atomically (tmp file + rename).

    Everything written is tensors and plain values, so :func:`load_checkpoint` and
    :func:`load_codec` read it back with ``torch.load(weights_only=True)`` (see
    :mod:`gwn_fast.checkpoint`); ``extra`` holding anything else raises ``TypeError`` here
    rather than writing a file the safe loader refuses."""
    from gwn_fast.checkpoint import check_plain

    check_plain(extra or {}, "extra")
    check_plain(getattr(codec, "config", None), "codec.config")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": codec.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "extra": extra or {},
        "config": getattr(codec, "config", None),  # lets load_codec rebuild the model
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, codec: nn.Module, optimizer=None, scheduler=None, map_location="cpu") -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the checkpoint dict.

    Loads with ``weights_only=True``: nothing in the file is executed. Raises
    :class:`gwn_fast.checkpoint.CheckpointError` (a ``ValueError``) naming the file if it is
    not a gwn_fast checkpoint or its weights do not fit ``codec``."""
    from gwn_fast.checkpoint import CheckpointError, load_state

    state = load_state(path, map_location=map_location)
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: not a gwn_fast checkpoint (no 'model' state dict in it)")
    try:
        codec.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: its weights do not fit this codec: {str(err).strip().splitlines()[0]}") from None
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


def load_codec(path, map_location="cpu"):
    """A ``GrayWynerCodec`` rebuilt from a checkpoint written by :func:`save_checkpoint`
    (tables included), in eval mode.

    Safe on files from others: the file is read with ``torch.load(weights_only=True)`` (no
    code runs), and the config is validated against
    :data:`gwn_fast.checkpoint.CONFIG_BOUNDS` before the model is built. Raises
    :class:`gwn_fast.checkpoint.CheckpointError` (a ``ValueError``) naming the file."""
    from gwn_fast.checkpoint import CheckpointError, load_state
    from gwn_fast.models import GrayWynerCodec

    state = load_state(path, map_location=map_location)
    if not state.get("config") or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: not a gwn_fast checkpoint (no codec config and model weights in it)")
    codec = GrayWynerCodec.from_config(state["config"], source=str(path))
    try:
        codec.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: its weights do not fit its config: {str(err).strip().splitlines()[0]}") from None
    return codec.eval()


def fit(
    codec: nn.Module,
    loss_fn: nn.Module,
    loader: Iterable,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    one_cycle: bool | dict = True,
    grad_clip: float | None = 1.0,
    device: str | torch.device = "cpu",
    batch_fn: Callable | None = None,
    metrics_path: str | os.PathLike | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    distributed: bool = False,
    on_epoch: Callable[[int], None] | None = None,
    aux_lr: float = 1e-3,
) -> list[dict]:
    """Train ``codec`` with ``loss_fn`` (a :class:`gwn_fast.GrayWynerLoss`) for ``epochs``.

    Adam (or ``optimizer``), optionally a one-cycle schedule peaking at ``lr``
    (``one_cycle`` may be a dict of extra ``OneCycleLR`` arguments, e.g. ``pct_start``),
    gradient clipping, a tqdm progress bar, one JSON line of epoch-mean metrics per epoch in
    ``metrics_path``, a checkpoint after every epoch in ``checkpoint_path`` (with
    ``resume=True`` training continues from it). ``on_epoch(epoch)`` is called before each
    epoch (0-based), e.g. to schedule the loss's ``beta``.

    Auxiliary parameters (CompressAI's ``quantiles`` of an ``EntropyBottleneck``, as with
    ``y0_prior="bottleneck"``) are trained too: by their own Adam (``aux_lr``) on
    ``codec.aux_loss()`` after every step, and left out of the main optimiser.
    Returns the per-epoch metrics.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    unpack = batch_fn or unpack_batch
    device = torch.device(device)
    codec.to(device)
    model = codec
    rank = 0
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            raise RuntimeError("distributed=True needs torch.distributed initialised (run under torchrun)")
        rank = dist.get_rank()
        model = DistributedDataParallel(codec, device_ids=[device.index] if device.type == "cuda" else None)
    aux_params = [p for n, p in codec.named_parameters() if n.endswith("quantiles") and p.requires_grad]
    aux_ids = {id(p) for p in aux_params}
    params = [p for p in codec.parameters() if p.requires_grad and id(p) not in aux_ids]
    optimizer = optimizer or torch.optim.Adam(params, lr=lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=aux_lr) if aux_params and hasattr(codec, "aux_loss") else None
    try:
        steps_per_epoch = len(loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    scheduler = None
    if one_cycle:
        if steps_per_epoch is None:
            raise ValueError("one_cycle=True needs a loader with len(); pass one_cycle=False")
        extra = dict(one_cycle) if isinstance(one_cycle, dict) else {}
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, **extra
        )
    start = 0
    history: list[dict] = []
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, codec, optimizer, scheduler, map_location=device)
        start = int(state["epoch"])
        history = list(state["extra"].get("history", []))
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=(epochs - start) * (steps_per_epoch or 0) or None, desc="train", unit="step")
    codec.train()
    for epoch in range(start, epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            x1, x2, targets = unpack(batch)
            x1, x2 = _to(x1, device), _to(x2, device)
            targets = tuple(_to(t, device) for t in targets)
            out = model(x1, x2)
            terms = loss_fn(out, targets)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower lr or check inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if aux_optimizer is not None:
                aux_optimizer.zero_grad(set_to_none=True)
                codec.aux_loss().backward()
                aux_optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
            if bar is not None:
                bar.update(1)
                if count % 10 == 1:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.4g}", r0=f"{float(terms['r0'].detach()):.3g}")
        record = {"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()}}
        history.append(record)
        if rank == 0:
            if metrics_path is not None:
                Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, codec, optimizer, scheduler, epoch + 1, {"history": history})
    if bar is not None:
        bar.close()
    codec.eval()
    if any(not math.isfinite(v) for v in history[-1].values()) if history else False:
        raise FloatingPointError("non-finite epoch metrics")
    return history


if __name__ == "__main__":
    # `python -m gwn_fast.train ...` / `torchrun ... -m gwn_fast.train ...`: the same command
    # as `gwn-fast train ...` (one parser, one set of defaults, in gwn_fast.cli).
    import sys

    from gwn_fast.cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))
