"""Shared fixtures: small random GPT-2 models, the embedded copy model, and a tiny-book writer."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from transformers import GPT2Config

from ihlib.model.loading import load_model, new_model

torch.set_num_threads(1)  # the test shapes are tiny: one thread avoids oversubscribing 2-core machines


def random_gpt2(n_layer: int = 2, n_head: int = 4, n_embd: int = 32, vocab: int = 97, seed: int = 0, n_pos: int = 64):
    """Return a seeded, randomly initialised GPT2LMHeadModel (eager attention, no dropout, eval mode)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        vocab_size=vocab,
        n_positions=n_pos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = new_model(config).eval()
    with torch.no_grad():  # GPT-2 initialises biases to zero; random biases make the checks stricter
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="session")
def small_model():
    """A 2-layer, 4-head random GPT-2 with non-zero biases."""
    return random_gpt2()


@pytest.fixture(scope="session")
def gpt2_small_shaped():
    """A random model with GPT-2 small's attention shapes: 12 layers, 12 heads, d_model 768 (small vocab)."""
    return random_gpt2(n_layer=12, n_head=12, n_embd=768, vocab=256, seed=1, n_pos=32)


@pytest.fixture(scope="session")
def copy_model():
    """The embedded copy model, "ihlib-copy", on the CPU."""
    return load_model("ihlib-copy", device="cpu")


def write_book(root: Path, chapters: dict[str, nbformat.NotebookNode]) -> Path:
    """Write a repository root at `root`: a config that executes nothing, a toc, an intro and `book/<name>.ipynb`."""
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text(f'title: {root.name}\nexecute:\n  execute_notebooks: "off"\n')
    entries = "".join(f"  - file: book/{name}\n" for name in chapters)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    (root / "book" / "intro.md").write_text("# Intro\n")
    for name, notebook in chapters.items():
        nbformat.write(notebook, root / "book" / f"{name}.ipynb")
    return root
