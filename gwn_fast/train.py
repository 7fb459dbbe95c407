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
    """Write model, optimiser and scheduler state atomically (tmp file + rename)."""
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
    """Restore what :func:`save_checkpoint` wrote; returns the checkpoint dict."""
    state = torch.load(path, map_location=map_location, weights_only=False)
    codec.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


def load_codec(path, map_location="cpu"):
    """A ``GrayWynerCodec`` rebuilt from a checkpoint written by :func:`save_checkpoint`
    (tables included), in eval mode."""
    from gwn_fast.models import GrayWynerCodec

    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or not state.get("config"):
        raise ValueError(f"{path} is not a gwn_fast checkpoint with a codec config")
    codec = GrayWynerCodec.from_config(state["config"])
    codec.load_state_dict(state["model"])
    return codec.eval()


def fit(
    codec: nn.Module,
    loss_fn: nn.Module,
    loader: Iterable,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    one_cycle: bool = True,
    grad_clip: float | None = 1.0,
    device: str | torch.device = "cpu",
    batch_fn: Callable | None = None,
    metrics_path: str | os.PathLike | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    distributed: bool = False,
) -> list[dict]:
    """Train ``codec`` with ``loss_fn`` (a :class:`gwn_fast.GrayWynerLoss`) for ``epochs``.

    Adam (or ``optimizer``), optionally a one-cycle schedule peaking at ``lr``, gradient
    clipping, a tqdm progress bar, one JSON line of epoch-mean metrics per epoch in
    ``metrics_path``, a checkpoint after every epoch in ``checkpoint_path`` (with
    ``resume=True`` training continues from it). Returns the per-epoch metrics.
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
    params = [p for p in codec.parameters() if p.requires_grad]
    optimizer = optimizer or torch.optim.Adam(params, lr=lr)
    try:
        steps_per_epoch = len(loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    scheduler = None
    if one_cycle:
        if steps_per_epoch is None:
            raise ValueError("one_cycle=True needs a loader with len(); pass one_cycle=False")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m gwn_fast.train`` / ``torchrun --nproc_per_node=N -m gwn_fast.train``:
    train a bundled recipe (the options of ``gwn-fast train``). Under torchrun each process
    trains a DistributedDataParallel replica on its shard of every epoch (gloo on CPU, nccl
    on CUDA); rank 0 writes the checkpoint, metrics and evaluation. ``--save-rank-weights``
    makes every rank write ``OUT/rank{r}.pt`` (its final state dict) so replicas can be
    compared."""
    import argparse

    from gwn_fast.experiment import run
    from gwn_fast.models import ARCHITECTURES, CONTEXTS
    from gwn_fast.recipes import DATASETS

    p = argparse.ArgumentParser(prog="python -m gwn_fast.train", description=main.__doc__)
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--setting", default="mixture")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="shared")
    p.add_argument("--context", choices=CONTEXTS, default="checkerboard")
    p.add_argument("--rate-grad", choices=("ste", "smooth", "noise"), default="smooth")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, default=None, help="per process; default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when CUDA is available, else cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation")
    p.add_argument("--save-rank-weights", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if distributed:
        import torch.distributed as dist

        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend)
    try:
        result = run(
            args.dataset, architecture=args.architecture, beta=args.beta, alpha=args.alpha, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, setting=args.setting, size=args.size,
            train_samples=args.train_samples, context=args.context, rate_grad=args.rate_grad, device=device,
            out_dir=args.out, resume=args.resume, progress=not args.quiet, distributed=distributed,
            evaluate_result=not args.no_eval, save_rank_weights=args.save_rank_weights,
        )
        if not distributed or torch.distributed.get_rank() == 0:
            print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=1))
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
