"""`python -m models`: train the demo CNNs, describe a user's model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from core.cli import Output, fail, failing_on
from core.settings import reload_settings
from models.artifacts import default_model_path
from models.cnn import PRESETS
from models.contract import PREPROCESS_FAMILIES
from models.datasets import DATASET_NAMES

app = typer.Typer(help="Demo data sets and the article's CNN.", no_args_is_help=True, add_completion=False)
console = Output()


@app.callback()
def main() -> None:
    """Demo data sets and the article's CNN."""
    reload_settings()


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


@app.command()
def describe(
    model: Path = typer.Argument(..., help="A .keras model file."),
    class_names: Optional[str] = typer.Option(None, help="The model's classes in output order, comma-separated."),
    class_names_file: Optional[Path] = typer.Option(
        None, help="The classes in output order: a text file, one per line (ImageNet's LOC_synset_mapping.txt), or "
        "a JSON list or index object (imagenet_class_index.json)."),
    value_range: Optional[str] = typer.Option(
        None, metavar="LOW,HIGH", help="Pixel values the model wants, e.g. 0,255 (default: inferred from the model, else 0,1).",
    ),
    preprocess: Optional[str] = typer.Option(None, help=f"keras.applications preprocessing: {' | '.join(PREPROCESS_FAMILIES)}."),
    outputs: Optional[str] = typer.Option(None, help="probabilities | logits (default: inferred from the last layer)."),
) -> None:
    """Write the metadata file beside a model (MODEL.json): class names, input shape, the input contract and
    the file's sha256, so that every run of it is fed right without options. Reads the file as JSON, runs nothing."""
    from dataclasses import replace

    from models.artifacts import (
        ClassNamesError, ModelFileError, ModelMetadata, file_sha256, read_class_names, read_metadata,
        summarise_keras_file, write_metadata,
    )
    from models.contract import ContractError, decide_contract, parse_value_range

    if class_names is not None and class_names_file is not None:
        fail("give --class-names or --class-names-file, not both")
    with failing_on(ModelFileError, ContractError, ClassNamesError, OSError):
        summary = summarise_keras_file(model)
        if summary.has_lambda:
            fail(f"{model.name} holds a Lambda layer (arbitrary Python code); it cannot be explained here")
        if summary.input_shape is None or len(summary.input_shape) != 3 or None in summary.input_shape:
            fail(f"{model.name}: cannot tell its image input shape (H, W, C) from its config")
        wanted_range = parse_value_range(value_range) if value_range is not None else None
        names = None
        if class_names is not None:
            names = [name.strip() for name in class_names.split(",")]
        elif class_names_file is not None:
            names = read_class_names(class_names_file)
        previous = read_metadata(model)
        contract = decide_contract(summary, previous, value_range=wanted_range, preprocess=preprocess, outputs=outputs)
    classes = max(2, summary.outputs or 2)
    if names is None:
        names = previous.class_names if previous else [str(i) for i in range(classes)]
    if summary.outputs is not None and len(names) != classes:
        fail(f"{model.name} has {classes} classes, but {len(names)} class names were given")
    if len(set(names)) != len(names) or not all(names):
        fail("class names must be distinct and not empty")
    metadata = replace(
        previous or ModelMetadata(class_names=names, input_shape=summary.input_shape),
        class_names=names, input_shape=summary.input_shape, value_range=list(contract.value_range),
        preprocess=contract.preprocess, outputs=contract.outputs, sha256=file_sha256(model),
    )
    path = write_metadata(model, metadata)
    console.print(f"wrote {path}")
    console.print(f"  classes: {', '.join(names)}", markup=False, highlight=False)
    console.print(f"  input: {metadata.input_shape[0]}x{metadata.input_shape[1]}x{metadata.input_shape[2]}")
    for note in contract.notes:
        console.print(f"  {note}", markup=False, highlight=False)
