"""Checkpoints are data, never code: the safe loader and the config validator.

Every checkpoint ``gwn_fast`` reads (``load_codec``, ``load_checkpoint``,
``evaluate_checkpoint``, the ``gwn-fast`` CLI) goes through :func:`load_state`, which calls
``torch.load(..., weights_only=True)``. That unpickler only rebuilds tensors and plain
containers (dict, list, tuple, str, int, float, bool, None, OrderedDict): a pickle whose
``__reduce__`` names ``os.system`` (or any other callable) is refused before anything
runs. The model configuration is plain JSON-able values, checked by
:func:`validate_config` against :data:`CONFIG_BOUNDS` *before* a model is built from it,
so a config cannot ask for ``latent_channels=10**9`` either.

Why ``weights_only=True`` and not safetensors: it closes the code-execution hole with no
new dependency, it reads every checkpoint written so far (they hold only tensors and
plain values: model, optimiser and scheduler state dicts, epoch, history, recipe,
config), and a training checkpoint needs the optimiser and scheduler state, which
safetensors (a flat ``name -> tensor`` map) cannot hold without a second file for the
rest. safetensors would add a parser that is not pickle at all (a smaller attack
surface), and is the right choice if checkpoints are ever shared as a model-hub format;
the weights could then go to a ``.safetensors`` file and the config to JSON, and
:func:`load_state` is the one place to change.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

__all__ = ["CONFIG_BOUNDS", "CheckpointError", "check_plain", "load_state", "validate_config"]


class CheckpointError(ValueError):
    """A file is not a loadable gwn_fast checkpoint (wrong format, refused objects in
    its pickle, a config outside bounds, weights that do not fit the config)."""


# Inclusive bounds of the integer fields of ``GrayWynerCodec.config``. They refuse absurd
# sizes (an allocation attack) and leave room far above the bundled recipes; raise them
# (``gwn_fast.checkpoint.CONFIG_BOUNDS["latent_channels"] = (1, 4096)``) for bigger models
# from a trusted source.
CONFIG_BOUNDS: dict[str, tuple[int, int]] = {
    "in_channels": (1, 256),
    "out_channels": (1, 1 << 14),
    "latent_channels": (1, 1024),
    "common_channels": (0, 1024),
    "hidden_channels": (1, 1024),
    "depth": (1, 8),
    "precision": (1, 24),
    "head_hidden": (1, 1 << 14),
    "mean_steps": (1, 64),
    "input_size": (1, 1 << 16),
    # weights of the MLP heads' first layer (C * h * w * head_hidden)
    "mlp_weights": (1, 1 << 27),
}

_CHOICE_FIELDS = ("architecture", "context", "transform", "rate_grad", "head", "y0_prior", "head_activation")
_KNOWN = set(CONFIG_BOUNDS) - {"mlp_weights"} | set(_CHOICE_FIELDS) | {"custom_modules"}


def _choices() -> dict:
    from gwn_fast.models import gray_wyner as gw
    from gwn_fast.models.transforms import HEAD_ACTIVATIONS

    return {"architecture": gw.ARCHITECTURES, "context": gw.CONTEXTS, "transform": gw.TRANSFORMS,
            "rate_grad": gw.RATE_GRADS, "head": gw.HEADS, "y0_prior": gw.Y0_PRIORS,
            "head_activation": tuple(HEAD_ACTIVATIONS)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_config(config: Any, source: str = "config") -> dict:
    """``config`` checked field by field (types, choices, bounds); returns a plain copy.

    Raises :class:`CheckpointError` naming ``source`` and the field. Missing fields take
    the constructor's defaults (older checkpoints lack the newer ones)."""

    def fail(msg: str):
        raise CheckpointError(f"{source}: {msg}")

    if not isinstance(config, dict):
        fail(f"the codec config must be a dict, got {type(config).__name__}")
    unknown = sorted(str(k) for k in config if k not in _KNOWN)
    if unknown:
        # A new GrayWynerCodec.config field needs its check here too (a test asserts it).
        fail(f"unknown config fields {unknown} (written by another version of gwn_fast?)")
    out = dict(config)

    def bounded(name: str, v) -> int:
        lo, hi = CONFIG_BOUNDS[name]
        if not _is_int(v) or not lo <= v <= hi:
            fail(f"config field {name!r} must be an integer in [{lo}, {hi}], got {v!r}"
                 " (raise gwn_fast.checkpoint.CONFIG_BOUNDS for a trusted bigger model)")
        return v

    for name in ("in_channels", "latent_channels", "hidden_channels", "depth", "precision", "head_hidden", "mean_steps"):
        if name in out:
            bounded(name, out[name])
    if out.get("common_channels") is not None:
        bounded("common_channels", out["common_channels"])
    if "out_channels" in out:
        oc = out["out_channels"]
        if not isinstance(oc, (list, tuple)) or len(oc) != 2:
            fail(f"config field 'out_channels' must be a pair, got {oc!r}")
        out["out_channels"] = [bounded("out_channels", v) for v in oc]
    if out.get("input_size") is not None:
        size = out["input_size"]
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            fail(f"config field 'input_size' must be a pair (H, W) or None, got {size!r}")
        out["input_size"] = [bounded("input_size", v) for v in size]
    for name, choices in _choices().items():
        if name in out and out[name] not in choices:
            fail(f"config field {name!r} must be one of {choices}, got {out[name]!r}")
    if "custom_modules" in out and not isinstance(out["custom_modules"], bool):
        fail(f"config field 'custom_modules' must be a bool, got {out['custom_modules']!r}")
    if out.get("head") == "mlp" and out.get("input_size") is not None:
        stride = 16 if out.get("transform", "image") == "image" else 2 ** out.get("depth", 3)
        h, w = (-(-v // stride) for v in out["input_size"])
        weights = out.get("latent_channels", 192) * h * w * out.get("head_hidden", 256)
        lo, hi = CONFIG_BOUNDS["mlp_weights"]
        if weights > hi:
            fail(f"the MLP heads' first layer would have {weights:,} weights (more than {hi:,}): "
                 "input_size, latent_channels or head_hidden out of bounds")
    return out


def check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is what ``torch.load(weights_only=True)`` reads
    back: tensors and nested dict / list / tuple of str, int, float, bool, None."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.Size)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            check_plain(k, f"{where} key {k!r}")
            check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: checkpoints hold only tensors and "
        "plain values (dict, list, tuple, str, int, float, bool, None); convert it first (e.g. float(x), x.tolist())"
    )


def load_state(path, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)`` of a checkpoint dict, with one clear error.

    Raises:
        FileNotFoundError / OSError: the file cannot be read.
        CheckpointError: the file is not a torch checkpoint, its pickle holds anything but
            tensors and plain values (nothing in it is executed), or it is not a dict.
    """
    import torch

    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as err:
        # weights_only refusals land here too ("Weights only load failed ... Unsupported global")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in first.lower() or "unsupported" in str(err).lower():
            why = "it holds objects other than tensors and plain values, which are never unpickled (nothing in it ran)"
        else:
            why = f"not a torch checkpoint ({first})"
        raise CheckpointError(f"{name}: not a gwn_fast checkpoint: {why}") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            zipfile.BadZipFile, UnicodeDecodeError, OverflowError, MemoryError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{name}: not a gwn_fast checkpoint: not a readable torch file (empty, truncated or another format; "
            f"{type(err).__name__}{': ' + detail if detail else ''})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}: not a gwn_fast checkpoint: it holds a {type(state).__name__}, not a dict")
    return state
