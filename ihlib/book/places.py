"""Where each model's chapters run: the site's model and the others, with their folder labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ihlib.book.folders import (
    FAILED_DIR,
    MODELS_DIR,
    RUNNING_DIR,
    SOURCE_DIR,
)
from ihlib.book.params import (
    with_local_model_checked,
)
from ihlib.book.toc import (
    chapter_name,
)
from ihlib.model.errors import BookError
from ihlib.model.loading import (
    DEFAULT_EMBEDDED,
    DEFAULT_MODEL_NAME,
    EMBEDDED_MODELS,
    embedded_dir,
)
from ihlib.report.across_models import MODEL_RECORD


@dataclass(frozen=True)
class ModelPlace:
    """Where one model's chapters run: the folder they run in (`book/` and `results/` below it), and whether it
    is the site's model (its pages become the site) or another model (its claims feed the across-models page)."""

    label: str
    model_name: str | None
    workdir: Path
    running: Path
    failed: Path
    site: bool

    def job_name(self, notebook: Path) -> str:
        """`03_shuffling` for the site's model, `ihlib-language/03_shuffling` for another model."""
        return chapter_name(notebook) if self.site else f"{self.label}/{chapter_name(notebook)}"


def model_short_name(model_name: str | None) -> str:
    """A short name for a model, used in folder names and tables: the embedded name, a local folder's name, or the
    hub name with `/` written `--`."""
    if model_name is None or model_name == DEFAULT_MODEL_NAME:
        return DEFAULT_EMBEDDED
    if model_name in EMBEDDED_MODELS:
        return model_name
    path = Path(model_name)
    return path.name if path.is_dir() else model_name.replace("/", "--")


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names denote the same model: the same embedded folder, local folder or hub name."""
    return _model_identity(a) == _model_identity(b)


def _model_identity(name: str | None) -> str:
    """The resolved folder of an embedded or local model, else the hub name."""
    folder = embedded_dir(name) or Path(name)
    return str(folder.resolve()) if folder.is_dir() else str(name)


def model_places(build_dir: Path, site_model: str | None, others: list[str]) -> list[ModelPlace]:
    """The site's model at `build_dir/source`, then each other model (not the site's, each once) at
    `build_dir/models/<label>`; two models with one label get `-2`, `-3` appended."""
    places = [
        ModelPlace(
            model_short_name(site_model),
            site_model,
            build_dir / SOURCE_DIR,
            build_dir / RUNNING_DIR,
            build_dir / FAILED_DIR,
            site=True,
        )
    ]
    for model in others:
        if any(same_model(model, place.model_name) for place in places):
            continue
        label = _unique_label(model_short_name(model), {place.label for place in places})
        workdir = build_dir / MODELS_DIR / label
        places.append(ModelPlace(label, model, workdir, workdir / RUNNING_DIR, workdir / FAILED_DIR, site=False))
    return places


def _unique_label(label: str, taken: set[str]) -> str:
    """`label`, or `label-2`, `label-3`, ... : the first that is not `taken`."""
    candidates = [label, *(f"{label}-{i}" for i in range(2, len(taken) + 3))]
    return next(candidate for candidate in candidates if candidate not in taken)


def checked_model(model: str) -> str:
    """Return an embedded or hub name as it is, and a local directory as an absolute path after checking that it
    holds a GPT-2."""
    return str(with_local_model_checked({"model_name": model})["model_name"])


def embedded_models() -> list[str]:
    """The short names of the embedded models shipped in this checkout, the default first."""
    names = [DEFAULT_EMBEDDED, *[name for name in EMBEDDED_MODELS if name != DEFAULT_EMBEDDED]]
    return [name for name in names if (EMBEDDED_MODELS[name] / "config.json").is_file()]


def parse_models(text: str) -> list[str]:
    """Split `--models a,b` into names (empty parts dropped); an empty list is an error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise BookError(
            f"--models {text!r} names no model: give names, hub names or local directories, comma-separated."
        )
    return names


def write_model_record(place: ModelPlace) -> None:
    """Write `results/model.json` at the place: the model's label, its `model_name`, and whether it is the site's."""
    results = place.workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    record = {"label": place.label, "model_name": place.model_name, "site": place.site}
    (results / MODEL_RECORD).write_text(json.dumps(record, indent=1))
