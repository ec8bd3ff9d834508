"""A folder of computed arrays keyed by a model's weights and the settings, shared by processes (the book's chapters).

The folder is named by the environment variable `IHLIB_SCORE_CACHE`, which the book runner sets for the
chapters it executes; without it nothing is cached. An entry is an NPZ file named by a SHA-256 of the model's
weights (every tensor of its state dict: name, dtype, shape and bytes), its configuration (every field, the
attention implementation included: `scale_attn_by_inverse_layer_idx` changes the scores, not the weights), the
device type, the settings and a digest of the computing code's source files. Processes that ask for the same entry
at once compute it once: the first holds a lock (`fcntl.flock`, POSIX), the others wait for it and then read the
file. An entry is written to a temporary file and renamed (never seen half-written); an entry that cannot be read
(truncated, corrupt, missing an array) is recomputed and replaced, with a warning saying so.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

CACHE_ENV = "IHLIB_SCORE_CACHE"

CONFIG_FIELDS_IGNORED = ("_name_or_path", "transformers_version", "architectures")  # where it came from, not what it is


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


def config_description(model: torch.nn.Module) -> dict[str, object]:
    """Every field of the model's configuration that can change its forward pass (all but where it was loaded from
    and which transformers wrote it), with the attention implementation in use."""
    config = model.config.to_dict()
    fields = {name: value for name, value in config.items() if name not in CONFIG_FIELDS_IGNORED}
    return {**fields, "attn_implementation": getattr(model.config, "_attn_implementation", None)}


def code_digest(*sources: str | Path) -> str:
    """Return the SHA-256 (hex) of the given source files' bytes: the version of the code that computes an entry."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def entry_key(model: torch.nn.Module, kind: str, settings: dict[str, object], *, code: str = "") -> str:
    """Return the key of an entry: a SHA-256 of the weights, the configuration, the model's device type, `kind`,
    `settings` and `code` (a digest of the computing code, see `code_digest`)."""
    device = next(model.parameters()).device.type
    described = json.dumps(
        {"kind": kind, "device": device, "settings": settings, "config": config_description(model), "code": code},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(f"{weights_digest(model)}|{described}".encode()).hexdigest()


UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def cached_arrays(
    folder: Path, key: str, compute: Callable[[], dict[str, np.ndarray]], *, names: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Return the arrays stored under `key` in `folder` (at least `names`), computing and storing them first when
    absent or unreadable (locked)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npz"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        arrays = _read_entry(path, names)
        if arrays is None:
            arrays = compute()
            _write_entry(path, arrays)
    return arrays


def _read_entry(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays of the entry at `path`; None when there is none, or when it is unreadable (then it is removed and a
    warning says so)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as file, np.load(file) as stored:
            arrays = {name: stored[name] for name in stored.files}
        missing = sorted(set(names) - set(arrays))
        if missing:
            raise KeyError(f"arrays {', '.join(missing)} missing")
    except UNREADABLE as err:
        warnings.warn(
            f"Head-score cache entry {path} was unreadable ({type(err).__name__}: {err}); recomputing and replacing "
            "it.",
            stacklevel=3,
        )
        path.unlink(missing_ok=True)
        return None
    return arrays


def _write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` atomically: into a temporary file, flushed to disk, then renamed."""
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    with open(partial, "wb") as file:
        np.savez(file, **arrays)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
