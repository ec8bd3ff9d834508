"""Load GPT-2-architecture models: the embedded default, a hub name, or a local directory."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model, PreTrainedModel

from ihlib.errors import ModelLoadError

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
DEFAULT_MODEL_NAME = "ihlib-default"

AnyGPT2 = GPT2Model | GPT2LMHeadModel


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a torch device; "auto" picks CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(f"Unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'.") from err


def load_model(name: str | Path | None = None, device: str | torch.device = "auto") -> GPT2LMHeadModel:
    """Load a GPT-2 language model with eager attention, in eval mode, on `device`.

    `name=None` (or "ihlib-default") gives the embedded default model; otherwise a hub name
    such as "gpt2" or a local directory holding `config.json` and the weights.
    """
    source = DEFAULT_MODEL_DIR if name is None or str(name) == DEFAULT_MODEL_NAME else name
    try:
        model = GPT2LMHeadModel.from_pretrained(str(source), attn_implementation="eager")
    except (OSError, ValueError) as err:
        raise ModelLoadError(_load_failure_message(str(name), err)) from err
    return model.to(resolve_device(device)).eval()


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
    """Return a short human-readable name for `model` (its path or hub name)."""
    path = str(getattr(model.config, "_name_or_path", "") or "")
    if not path or Path(path).resolve() == DEFAULT_MODEL_DIR.resolve():
        return DEFAULT_MODEL_NAME
    return path
