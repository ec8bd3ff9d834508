"""A folder of computed arrays keyed by a model's weights and the settings, shared by processes (the book's chapters).

The folder is named by the environment variable `IHLIB_SCORE_CACHE`, which the book runner sets for the
chapters it executes; without it nothing is cached. An entry is an NPZ file named by a SHA-256 of the model's
weights (every tensor of its state dict: name, dtype, shape and bytes), the device type and the settings.
Processes that ask for the same entry at once compute it once: the first holds a lock (`fcntl.flock`, POSIX),
the others wait for it and then read the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

CACHE_ENV = "IHLIB_SCORE_CACHE"


def cache_folder() -> Path | None:
    """Return the folder named by `IHLIB_SCORE_CACHE`, or None when the variable is unset or empty."""
    folder = os.environ.get(CACHE_ENV, "")
    return Path(folder) if folder else None


def weights_digest(model: torch.nn.Module) -> str:
    """Return the SHA-256 (hex) of every tensor of `model.state_dict()`: names, dtypes, shapes and bytes, sorted."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def entry_key(model: torch.nn.Module, kind: str, settings: dict[str, object]) -> str:
    """Return the key of an entry: a SHA-256 of the weights, the model's device type, `kind` and `settings`."""
    device = next(model.parameters()).device.type
    described = json.dumps({"kind": kind, "device": device, "settings": settings}, sort_keys=True)
    return hashlib.sha256(f"{weights_digest(model)}|{described}".encode()).hexdigest()


def cached_arrays(folder: Path, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays stored under `key` in `folder`, computing and storing them first when absent (locked)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npz"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            arrays = compute()
            partial = folder / f"{key}.{os.getpid()}.partial.npz"
            np.savez(partial, **arrays)
            os.replace(partial, path)
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}
