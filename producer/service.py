"""The producer's work as importable functions: choose the model, create the run, send one task per image.

The producer never imports TensorFlow: it reads the model archive's config as JSON and sends tasks by
name, so it starts fast and runs where TensorFlow is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import delete, exists
from sqlalchemy.orm import Session

from db import jobs, reads, runs
from db.models import Image, Run, RunImage
from models.artifacts import ModelFileError, ModelMetadata, default_model_path, inspect_model_file
from models.contract import ContractError, InputContract, decide_contract, parse_value_range
from producer.sources import LoadedSource, Rejected, SourceError
from worker.engine import ExplainParams
from worker.input_check import sample_positions


class EnqueueError(RuntimeError):
    """The run could not be created or sent; nothing of it is left behind."""


class BadFilesError(EnqueueError):
    """Some images of the source cannot be explained: all of them are listed, nothing is stored."""

    def __init__(self, bad: list[Rejected], total: int):
        self.bad, self.total = bad, total
        super().__init__(f"{len(bad)} of {total} images cannot be explained (nothing was stored)")


@dataclass
class ModelChoice:
    path: Path
    sha256: str
    content: bytes
    metadata: ModelMetadata
    contract: InputContract


def ensure_demo_model(dataset: str, echo=print) -> Path:
    """The demo model for a built-in data set, trained first (in a subprocess) if it is missing."""
    path = default_model_path(dataset)
    if not path.exists():
        echo(f"no demo model at {path}: training it (about half a minute)...")
        done = subprocess.run(
            [sys.executable, "-m", "models", "train", "--dataset", dataset, "--out", str(path)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise EnqueueError(f"training the demo model failed: {done.stderr.strip().splitlines()[-1:]}")
    return path


def choose_model(
    path: Path, *, value_range: tuple[float, float] | None = None, preprocess: str | None = None
) -> ModelChoice:
    """Read and check a model file without running it (a Keras archive, no Lambda layer, an image input), and
    decide its input contract: the options first, then the metadata file, then the model's own layers."""
    try:
        found = inspect_model_file(path)
    except ModelFileError as error:
        raise EnqueueError(str(error)) from None
    if found.summary.has_lambda:
        raise EnqueueError(f"{path.name} holds a Lambda layer (arbitrary Python code); refused, nothing was executed")
    try:
        contract = decide_contract(found.summary, found.metadata, value_range=value_range, preprocess=preprocess)
    except ContractError as error:
        raise EnqueueError(str(error)) from None
    return ModelChoice(path, found.sha256, found.content, found.metadata, contract)


def run_class_names(model: ModelChoice, source: LoadedSource) -> list[str]:
    """The run's class names, and each source label re-indexed to them (folders are matched by name)."""
    names = list(model.metadata.class_names)
    if source.class_names is None or source.class_names == names:
        return names
    generic = names == [str(i) for i in range(len(names))]
    if generic and len(source.class_names) <= len(names):
        # a model without class names: the folder names stand for its outputs, in sorted order
        return list(source.class_names) + names[len(source.class_names) :]
    unknown = [name for name in source.class_names if name not in names]
    if unknown:
        raise EnqueueError(f"source classes {unknown} are not among the model's classes {names}")
    for image in source.images:
        if image.true_label is not None:
            image.true_label = names.index(source.class_names[image.true_label])
    return names


def prepare_run(
    *, dataset: str | None = None, folder: Path | None = None, npz: Path | None = None, model: Path | None = None,
    num_samples: int | str | None = None, design: str | None = None, estimator: str | None = None,
    segmentation: str | None = None, n_segments: int | None = None,
    hide: str | None = None, preset: str | None = None, stability: int = 0, top_labels: int | None = None,
    seed: int = 0, limit: int | None = None, resize: bool = False, value_range: str | None = None,
    preprocess: str | None = None, skip_bad: bool = False, echo=print,
) -> "PreparedRun":
    """A run from the producer's options, ready to store: the explanation settings (a preset, then the options
    given), the model (the demo one trained if missing) and its input contract, the source read and fitted.

    Raises EnqueueError, SourceError, ContractError or ValueError (bad settings) with a one-line message, or
    BadFilesError listing every image that cannot be explained.
    """
    from models.datasets import DATASET_NAMES
    from producer import sources
    from worker.engine import ARTICLE_PRESET, AUTO

    if sum(x is not None for x in (dataset, folder, npz)) > 1:
        raise EnqueueError("give one source: --dataset, --folder or --npz")
    if limit is not None and limit < 1:
        raise EnqueueError(f"--limit must be at least 1, got {limit}")
    if dataset is not None and dataset not in DATASET_NAMES:
        raise EnqueueError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if preset not in (None, "article"):
        raise EnqueueError(f"unknown --preset {preset!r}; the one preset is article")
    if num_samples is not None and num_samples != AUTO:
        try:
            num_samples = int(num_samples)
        except ValueError:
            raise EnqueueError(f"--num-samples must be a whole number or {AUTO}, got {num_samples!r}") from None
    given = {"num_samples": num_samples, "design": design, "estimator": estimator, "segmentation": segmentation,
             "n_segments": n_segments, "hide": hide}
    params = ExplainParams(**{
        **(ARTICLE_PRESET if preset == "article" else {}), **{k: v for k, v in given.items() if v is not None},
        "top_labels": top_labels, "seed": seed, "stability_seeds": stability,
    })
    wanted_range = parse_value_range(value_range) if value_range is not None else None
    if folder is None and npz is None:
        dataset = dataset or "rectangles"
        model = model or ensure_demo_model(dataset, echo=echo)
    elif model is None:
        raise EnqueueError("--model is required with --folder or --npz")
    choice = choose_model(Path(model), value_range=wanted_range, preprocess=preprocess)
    if folder is not None:
        source = sources.from_folder(folder, limit)
    elif npz is not None:
        source = sources.from_npz(npz, limit)
    else:
        source = sources.from_builtin(dataset, choice.metadata, limit)
    return prepare(choice, source, params, resize=resize, skip_bad=skip_bad)


@dataclass
class PreparedRun:
    """A run checked and ready to store: the model, the images that can be explained, their class names."""

    model: ModelChoice
    source: LoadedSource
    params: ExplainParams
    class_names: list[str]
    resized: int = 0


def prepare(
    model: ModelChoice, source: LoadedSource, params: ExplainParams, *, resize: bool = False, skip_bad: bool = False
) -> PreparedRun:
    """Fit the source to the model: resize (when asked), match class names, and set aside every image that
    cannot be explained. Raises BadFilesError listing all of them, unless `skip_bad` (then they are recorded
    on the run); raises EnqueueError when no image is left."""
    height, width = model.metadata.input_shape[:2]
    resized = 0
    if resize:
        from producer.sources import resize as resize_image

        for i, image in enumerate(source.images):
            if image.pixels.shape[:2] != (height, width):
                source.images[i] = resize_image(image, height, width)
                resized += 1
    class_names = run_class_names(model, source)
    fitting = []
    for image in source.images:
        h, w = image.pixels.shape[:2]
        if (h, w) != (height, width):
            source.bad.append(Rejected(image.source, f"{image.name} is {h}x{w}, the model wants {height}x{width} (--resize scales it)"))
        elif image.true_label is not None and not 0 <= image.true_label < len(class_names):
            source.bad.append(Rejected(image.source, f"{image.name}: label {image.true_label} is not one of {len(class_names)} classes"))
        else:
            fitting.append(image)
    source.images = fitting
    if source.bad and not skip_bad:
        raise BadFilesError(source.bad, len(source.images) + len(source.bad))
    if not source.images:
        raise EnqueueError(f"{source.description} holds no images that can be explained")
    return PreparedRun(model, source, params, class_names, resized)


def _metadata_dict(metadata: ModelMetadata) -> dict:
    from dataclasses import asdict

    return asdict(metadata)


def check_broker(app, timeout: float = 5.0) -> None:
    """Fail fast, before anything is stored, when no broker answers."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:
        raise EnqueueError(f"cannot reach the broker at {_safe_url(app.conf.broker_url)}: {error}") from None


def discard_run(session: Session, run_id: int, new_image_ids: list[int]) -> None:
    """Remove a run that could not be sent, and the images only it had brought."""
    session.execute(delete(Run).where(Run.id == run_id))
    if new_image_ids:
        session.execute(
            delete(Image).where(
                Image.id.in_(new_image_ids), ~exists().where(RunImage.image_id == Image.id)
            )
        )
    session.commit()


ENQUEUE_CHUNK = 32  # images stored and committed before their tasks go out: workers start early


def enqueue(session_factory, app, prepared: PreparedRun, *, name: str | None = None) -> tuple[int, int]:
    """Create the run, store its images and send their tasks, chunk by chunk; all or nothing.

    The images of the input check go first, and the check's task before theirs, so a worker tells within
    seconds whether the model takes the images as the run feeds them. Returns (run id, images sent).
    If anything fails on the way (the broker, the database, Ctrl-C), the run and the images only it
    brought are removed again; tasks already sent for it then find no run and do nothing.
    """
    from worker.messages import send_explain_tasks, send_input_check

    check_broker(app)
    model, source, contract = prepared.model, prepared.source, prepared.model.contract
    with session_factory() as session:
        runs.store_model_file(session, model.sha256, model.content, _metadata_dict(model.metadata))
        run = runs.create_run(
            session, name=name or default_run_name(source), model_path=str(model.path.resolve()),
            model_sha256=model.sha256, class_names=prepared.class_names, params=prepared.params.to_dict(),
            source=source.description, value_range=list(contract.value_range), preprocess=contract.preprocess,
            outputs=contract.outputs, contract_notes=contract.notes, skipped=[bad.as_dict() for bad in source.bad],
        )
        session.commit()
        run_id, sent, created = run.id, 0, []
        checked = sample_positions([image.true_label for image in source.images])
        rest = sorted(set(range(len(source.images))) - set(checked))
        chunks = [checked] + [rest[start : start + ENQUEUE_CHUNK] for start in range(0, len(rest), ENQUEUE_CHUNK)]
        try:
            with app.producer_or_acquire() as producer:
                for number, positions in enumerate(chunks):
                    chunk = [(position, source.images[position].as_new_image()) for position in positions]
                    to_send, new = runs.add_images(session, run, chunk)
                    session.commit()
                    created += new
                    if number == 0:
                        send_input_check(app, run_id, to_send, producer)
                    send_explain_tasks(app, run_id, to_send, producer)
                    sent += len(to_send)
            run.status = "running"
            session.commit()
            jobs.finish_run_if_complete(session, run_id)  # in case the workers were faster than us
            session.commit()
        except BaseException as error:
            session.rollback()
            discard_run(session, run_id, created)
            if isinstance(error, Exception):
                raise EnqueueError(f"enqueueing failed, run {run_id} discarded: {error}") from None
            raise
    return run_id, sent


def resume(session_factory, app, run_ref: str) -> tuple[int, int]:
    """Send again every image of the run that has no finished result, and its input check if that never
    finished. Returns (run id, images sent)."""
    from worker.messages import send_explain_tasks, send_input_check

    check_broker(app)
    with session_factory() as session:
        run = reads.find_run(session, run_ref)
        missing = runs.images_without_result(session, run.id)
        if missing or run.status != "done":  # also completes a run whose producer died after sending
            run.status = "running"
            run.finished_at = None
            session.commit()
        if run.input_check is None:
            members = runs.run_labels(session, run.id)
            checked = sample_positions([label for _, label in members])
            send_input_check(app, run.id, [members[position][0] for position in checked])
        send_explain_tasks(app, run.id, missing)
        jobs.finish_run_if_complete(session, run.id)
        session.commit()
        return run.id, len(missing)


def default_run_name(source: LoadedSource) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{source.description.split()[0]}-{stamp}"


def _safe_url(url: str) -> str:
    """A broker URL without its password, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def wait_for_run(session_factory, run_id: int, on_progress, poll_s: float = 0.5) -> reads.RunCounts:
    """Poll the run until every image is finished, calling on_progress(counts, input check or None) each time."""
    while True:
        with session_factory() as session:
            counts = reads.run_counts(session, run_id)
            check = session.get(Run, run_id).input_check
        on_progress(counts, check)
        if counts.remaining == 0:
            return counts
        time.sleep(poll_s)


__all__ = [
    "BadFilesError", "EnqueueError", "SourceError", "choose_model", "enqueue", "ensure_demo_model", "prepare",
    "prepare_run", "resume", "wait_for_run",
]
