"""Run the book: execute every chapter with papermill, then build the static HTML site with Jupyter Book.

Usage (from the repository root)::

    python -m ihlib.book [--model NAME_OR_DIR] [--models A,B] [--no-embedded] [--jobs N]
                         [--params F.yml] [--param name=value ...]
                         [--only CHAPTER ...] [--build-dir _build] [--root .] [--no-site]

Conventions every chapter follows:

- `_toc.yml` and `_config.yml` sit at the repository root and every page lives in `book/`: `book/intro.md`,
  the chapters `book/NN_short_name.ipynb` (`00_finding_heads`, `01_diagonal`, `02_common_subspace`,
  `03_shuffling`, `04_projection`), and the gathering pages `book/across_models.ipynb` (the claims per model) and
  `book/conclusion.ipynb` (the saved verdicts). The runner executes the notebooks the toc lists and copies
  everything else in `book/` (markdown pages, figures).
- A chapter is stored without outputs and has one cell tagged `parameters` declaring the shared names
  `model_name = None` (None: the embedded default; a hub name such as "gpt2"; or a local directory),
  `device = "auto"`, `seed = 0` and `output_dir = "results/NN_short_name"`, then its own names.
  It runs alone: `papermill book/03_shuffling.ipynb out.ipynb -p model_name gpt2 -p n_exp 20`.
  A page that declares no `model_name` gathers what the chapters saved: it runs after all of them.
- Models: the chapters run on the site's model (`--model`, default the embedded default) and their pages make the
  site; the numbered chapters (the claims, `NN_*`) also run on every other embedded model (unless `--no-embedded`) and
  on each model of `--models a,b` (embedded names, hub names or local directories; repeatable), each in its own
  folder `models/<label>/` (no site pages), for the across-models page.
- Shared parameters: `--params F.yml` (a YAML mapping), then `--param name=value` (value parsed as YAML,
  repeatable), then `--model X` (sets `model_name`), later ones winning. Each notebook receives only the
  names it declares; a name that no chapter declares is an error (typo protection). `output_dir` is per
  chapter and cannot be shared. The other models get the same parameters with their own `model_name`.
- Parallel: `--jobs N` chapters run at once (default: the number of cores), each kernel's torch with
  cores / N threads; the chapters that the last run timed start longest first, the others chapter by chapter,
  each on every model.
  Kernels get `TQDM_DISABLE=1`, `PYTHONWARNINGS=ignore` and `TRANSFORMERS_VERBOSITY=error`: no progress bar or
  warning reaches a page (the runner shows its own progress), and `IHLIB_SCORE_CACHE=_build/cache`, so that the
  chapters compute the head scores of one model and setting once (`ihlib.heads.score_cache`).
- Layout under the build folder (`_build` by default); `book/` is never written to:

      _build/source/                   the Jupyter Book source: _config.yml, _toc.yml, book/ pages and assets
      _build/source/book/NN_*.ipynb    the executed chapters, each with a provenance cell after its title (date,
                                       model, parameters; download links to its saved JSON and NPZ files and to
                                       the executed notebook); moved here only when the chapter succeeds
      _build/source/results/NN_*/      what each chapter saves: notebooks run with cwd = _build/source,
                                       as they would from the repository root (so `../results/...` works
                                       from a page in book/); emptied before the chapter runs
      _build/source/results/model.json the site model's label and model_name (one per model's results/)
      _build/models/<label>/           another model: book/NN_*.ipynb executed, results/NN_*/ saved, failed/
      _build/failed/NN_*.ipynb         the executed notebook of a chapter whose last run failed, with the error
      _build/cache/                    head scores keyed by the model's weights, configuration, the options and the
                                       scoring code (kept between runs; an unreadable entry is recomputed)
      _build/html/index.html           the site; figures under _build/html/_images, data under _build/html/_downloads
      _build/timings.json              seconds per chapter (alone), for the site, and the wall-clock total
      _build/run.json                  per executed page: status, date, model and parameters of the run that built it

- The build folder is the runner's own (`ihlib.book.guard`): it writes `.ihlib-book-build` into a folder it
  creates, adopts an empty folder or one an earlier runner built (it holds `run.json`), and refuses any other
  non-empty folder, so that it never deletes someone's files. A lock (`.ihlib-book.lock`, `fcntl.flock`) stops a
  second runner on the same build folder, naming the first (pid, start time).
- A run without `--only` first removes what a previous run left (`source/`, `models/`, `html/`, `failed/`, the
  records). With `--only` (repeatable), the other chapters keep their previous executed version (a chapter never
  executed is shown without outputs, with a warning); the pages without `model_name` (conclusion, across models)
  run again whenever a chapter runs, so that they never show a verdict older than a chapter's.
- Parameters are data and are checked before anything runs (`ihlib.book.params`, `ihlib.book.declarations`): YAML
  builds only null, booleans, numbers, strings, lists and mappings (`!!binary`, dates and other tags are refused);
  a value must have the type of the chapter's default (`n_exp=1e3` becomes 1000 where the default is an int) and
  satisfy its rule in `ihlib.book.declarations.PARAMETER_RULES` (counts at least 1, seeds at least 0, fractions in
  (0, 1], ...), which each page also applies in the cell after its parameters when run alone with papermill; a
  local `--model` or `--models` directory must hold a GPT-2 (it is passed to the chapters as an absolute path).
- SIGINT and SIGTERM (`ihlib.book.interrupts`) kill the running kernels at once; each chapter cut short loses its
  partial notebook and results, its results folder holds only `FAILED.json` saying "interrupted", `run.json` records
  it, the site is removed, and the runner exits with 128 + the signal's number and one line.
- A chapter failing on the site's model stops the run: no further chapter starts (those running finish), its name
  and error are printed, the executed notebooks and results of the other chapters stay, the site is not built and
  a previous `html/` is removed, and the exit status is 1. The failed chapter keeps its last good executed
  notebook; its results folder loses `verdict.json` and gets `FAILED.json`, so the conclusion shows "failed" for
  it instead of an old verdict. A chapter failing on another model gets the same marker in that model's folder
  (the across-models page shows "failed"); the run goes on and builds the site, and the exit status is 1.
- A claim chapter run on a model without the heads it is about stops at its gate
  (`ihlib.claims.testability.require_heads` raises `ClaimNotTested` after saving the verdict "not tested"): that
  chapter has finished, not failed; its page keeps the reason and ends with a note instead of the experiments.
- Parameters are parsed and typed by `ihlib.book.params`; executed pages are tidied and get their provenance
  cell from `ihlib.book.pages`.
"""
