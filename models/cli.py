"""`python -m models`: train the demo CNNs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from core.cli import fail
from core.settings import settings
from models.cnn import PRESETS
from models.datasets import DATASET_NAMES

app = typer.Typer(help="Demo data sets and the article's CNN.", no_args_is_help=True, add_completion=False)
console = Console()


def default_model_path(dataset: str) -> Path:
    """Where `train` puts a demo model unless told otherwise: DATA_DIR/models/<dataset>.keras."""
    return settings.model_dir / f"{dataset}.keras"


@app.callback()
def main() -> None:
    """Demo data sets and the article's CNN."""


@app.command()
def train(
    dataset: str = typer.Option("rectangles", help=f"Built-in data set: {' | '.join(DATASET_NAMES)}."),
    preset: str = typer.Option("default", help=f"Training recipe: {' | '.join(PRESETS)} ('seed' is the article's)."),
    seed: int = typer.Option(0, help="Seed for the data and the weights."),
    out: Optional[Path] = typer.Option(None, help="Where to save the .keras file (default DATA_DIR/models/<dataset>.keras)."),
    threads: int = typer.Option(0, help="TensorFlow CPU threads (0: all cores)."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the model file is already there."),
) -> None:
    """Train the CNN on a built-in data set, save it with its metadata, print the validation accuracy."""
    if dataset not in DATASET_NAMES:
        fail(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if threads < 0:
        fail(f"--threads must be 0 or more, got {threads}")
    from models.classifier import configure_tensorflow
    from models.cnn import train as train_model

    if threads:
        configure_tensorflow(threads)
    path = out or default_model_path(dataset)
    if if_missing and path.exists():
        console.print(f"{path} is already there; not training")
        return
    started = time.perf_counter()
    with console.status(f"training on {dataset} ({preset} preset)..."):
        result = train_model(dataset, path, preset=preset, seed=seed)
    meta = result.metadata
    console.print(
        f"validation accuracy {meta.val_accuracy:.4f} ({meta.val_errors} of {meta.val_size} wrong) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    console.print(f"saved {result.path} (sha256 {meta.sha256[:12]}...) and {result.path.with_suffix('.json')}")
