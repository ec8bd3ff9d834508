"""Load GPT-2-architecture models: the embedded default, a hub name, or a local directory."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model, PretrainedConfig, PreTrainedModel

from ihlib.model.errors import ModelLoadError, ParameterError
from ihlib.model.finite import check_finite_weights
from ihlib.model.planted import planted_model, planted_name

EMBEDDED_DIR = Path(__file__).parents[1] / "training" / "data"  # the embedded models' weights and training records
EMBEDDED_MODELS: dict[str, Path] = {
    "ihlib-copy": EMBEDDED_DIR / "copy_model",
    "ihlib-language": EMBEDDED_DIR / "language_model",
}
DEFAULT_EMBEDDED = "ihlib-language"
DEFAULT_MODEL_NAME = "ihlib-default"
DEFAULT_MODEL_DIR = EMBEDDED_MODELS[DEFAULT_EMBEDDED]
COPY_MODEL_DIR = EMBEDDED_MODELS["ihlib-copy"]

AnyGPT2 = GPT2Model | GPT2LMHeadModel


SUPPORTED_MODEL_TYPES = ("gpt2",)
WEIGHTS_UNREADABLE = (SafetensorError, pickle.UnpicklingError, EOFError)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a torch device; "auto" picks CUDA when available, else CPU; CUDA without CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ParameterError(f"Unknown device={device!r}: use 'auto', 'cpu' or 'cuda[:N]'.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            f"device={str(device)!r} but this torch has no CUDA (torch.cuda.is_available() is False): "
            "use device='auto' or device='cpu', or install a CUDA build of torch."
        )
    return resolved


def load_model(name: str | Path | None = None, device: str | torch.device = "auto") -> GPT2LMHeadModel:
    """Load a GPT-2 language model with eager attention, in eval mode, on `device`.

    `name=None` (or "ihlib-default") gives the embedded default model, "ihlib-language"; the embedded models are
    "ihlib-language" (learned a synthetic language, with copying mixed in; induction heads in two layers among
    other heads) and "ihlib-copy" (learned only to copy repeated random tokens). Otherwise a hub name such as
    "gpt2" or a local directory holding `config.json` and the weights. Other architectures, and checkpoints with
    missing or unexpected tensors or weights that are not finite, raise `ModelLoadError` naming them.
    """
    target = resolve_device(device)
    planted = planted_name(str(name)) if name is not None else None
    if planted is not None:
        return planted_model(planted[0], shape=planted[1]).to(target).eval()
    source = str(embedded_dir(name) or name)
    check_local_source(source)
    check_architecture(source, _config_dict(source, str(name)))
    try:
        model, info = GPT2LMHeadModel.from_pretrained(source, attn_implementation="eager", output_loading_info=True)
    except WEIGHTS_UNREADABLE as err:
        raise ModelLoadError(
            f"Could not read {_weights_files(source)} of model {source!r}: truncated or corrupt "
            f"({type(err).__name__}: {err}). Save the model again with model.save_pretrained(DIR)."
        ) from err
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError(_load_failure_message(str(name), err)) from err
    check_loading_info(source, info)
    check_finite_weights(source, model)
    return model.to(target).eval()


def embedded_dir(name: str | Path | None) -> Path | None:
    """Return the folder of the embedded model called `name` (None and "ihlib-default": the default), else None."""
    if name is None or str(name) == DEFAULT_MODEL_NAME:
        return DEFAULT_MODEL_DIR
    return EMBEDDED_MODELS.get(str(name))


def check_local_source(source: str) -> None:
    """Raise when `source` is a local file, or a local directory without `config.json` (hub names pass)."""
    path = Path(source)
    if path.is_file():
        raise ModelLoadError(
            f"Model path {source!r} is a file: pass the directory that holds it ({str(path.parent)!r}), "
            "with config.json and the weights as written by model.save_pretrained(DIR)."
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"Model directory {source!r} has no config.json: pass a directory written by "
            "model.save_pretrained(DIR), which holds config.json and model.safetensors."
        )


def check_local_model(path: str | Path) -> None:
    """Raise a ModelLoadError unless `path` is a directory whose `config.json` is a GPT-2's (weights not read)."""
    check_local_source(str(path))
    check_architecture(str(path), _config_dict(str(path), str(path)))


def _config_dict(source: str, name: str) -> dict:
    """Return the raw `config.json` of a local directory or hub model, or raise a ModelLoadError."""
    try:
        return PretrainedConfig.get_config_dict(source)[0]
    except (OSError, ValueError) as err:
        raise ModelLoadError(_load_failure_message(name, err)) from err


def check_architecture(source: str, config: dict) -> None:
    """Raise when the `config.json` of `source` describes another architecture than GPT-2, naming both."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        classes = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise ModelLoadError(
            f"Model {source!r} has architecture {model_type!r} ({classes}); ihlib supports only GPT-2 "
            f"(model_type {', '.join(map(repr, SUPPORTED_MODEL_TYPES))}: GPT2LMHeadModel or GPT2Model), "
            "because it reads GPT-2's fused c_attn and c_proj weights. Pass a GPT-2 checkpoint."
        )


def check_loading_info(source: str, info: dict[str, object]) -> None:
    """Raise when loading `source` left tensors missing, unexpected or of the wrong shape, naming them."""
    problems = [
        f"{label}: {', '.join(sorted(map(str, info.get(key) or ())))}"
        for key, label in (
            ("missing_keys", "missing tensors"),
            ("unexpected_keys", "unexpected tensors"),
            ("mismatched_keys", "tensors of the wrong shape"),
        )
        if info.get(key)
    ]
    if problems:
        raise ModelLoadError(
            f"Model {source!r} does not match GPT-2's layout ({'; '.join(problems)}). A missing tensor would be "
            "random weights; save the complete model with model.save_pretrained(DIR) and pass DIR."
        )


def _load_failure_message(name: str, err: Exception) -> str:
    """Explain why loading `name` failed and what to use instead."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"Could not load model {name!r}: {first_line}\n"
        "It is neither a local directory with config.json and weights, nor a hub model that is "
        "cached or reachable (the Hugging Face hub may be offline).\n"
        "Use the embedded default with load_model(None) (book parameter model: null), or download "
        "the model where the hub is reachable, save it with model.save_pretrained(DIR), and pass DIR."
    )


def _weights_files(source: str) -> str:
    """Name the weight files of a local directory (`model.safetensors`, ...), or say "the weights" for a hub name."""
    path = Path(source)
    files = sorted(p.name for p in path.glob("*") if p.suffix in (".safetensors", ".bin")) if path.is_dir() else []
    return ", ".join(files) or "the weights"


def new_model(config: GPT2Config) -> GPT2LMHeadModel:
    """Build a randomly initialised GPT-2 language model with eager attention from `config`."""
    return GPT2LMHeadModel._from_config(config, attn_implementation="eager")


def transformer_of(model: AnyGPT2 | PreTrainedModel) -> GPT2Model:
    """Return the `GPT2Model` body of a `GPT2Model` or `GPT2LMHeadModel`."""
    if isinstance(model, GPT2LMHeadModel):
        return model.transformer
    if isinstance(model, GPT2Model):
        return model
    raise TypeError(
        f"Expected a GPT2Model or GPT2LMHeadModel, got {type(model).__name__}; load one with ihlib.load_model(name)."
    )


def unembedding(model: AnyGPT2) -> torch.Tensor:
    """Return the unembedding matrix `(vocab, d_model)`: `lm_head` or the tied `wte`."""
    if isinstance(model, GPT2LMHeadModel):
        return model.lm_head.weight
    return transformer_of(model).wte.weight


def model_label(model: AnyGPT2) -> str:
    """Return a short human-readable name for `model`: its embedded name, else its path or hub name."""
    path = str(getattr(model.config, "_name_or_path", "") or "")
    if not path:
        return DEFAULT_EMBEDDED
    for name, folder in EMBEDDED_MODELS.items():
        if Path(path).resolve() == folder.resolve():
            return name
    return path
