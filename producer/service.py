"""The producer's work as importable functions: choose the model, check the source, store the run, send the first
window of tasks.

The producer never imports TensorFlow: it reads the model archive's config as JSON and sends tasks by name, so it
starts fast and runs where TensorFlow is not installed. It never holds a source's pixels: every image is read once
to check it and once to store it, a chunk at a time (producer.sources), and the broker gets a bounded window of the
run's tasks (worker.window): the job's size is a number only the database has to hold.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from sqlalchemy import delete, exists
from sqlalchemy.orm import Session

from core import images
from db import jobs, reads, runs
from db.models import Image, Run, RunImage
from models.artifacts import (
    ClassNamesError, ModelFileError, ModelMetadata, default_model_path, inspect_model_file, read_class_names,
)
from models.contract import RUNTIMES, ContractError, InputContract, decide_contract, parse_value_range
from producer.evidence import Evidence, EvidenceError
from producer.sources import Entry, Read, Rejected, Source, SourceError
from worker.engine import ExplainParams
from worker.input_check import sample_positions

IMAGES_MODES = ("copy", "reference")


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

    @property
    def named(self) -> bool:
        """Whether the model names its classes (its metadata file, --class-names-file), not only numbers them."""
        return self.metadata.class_names != [str(i) for i in range(len(self.metadata.class_names))]


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
    path: Path, *, value_range: tuple[float, float] | None = None, preprocess: str | None = None,
    class_names_file: Path | None = None,
) -> ModelChoice:
    """Read and check a model file without running it (a Keras archive, no Lambda layer, an image input), and
    decide its input contract: the options first, then the metadata file, then the model's own layers. The class
    names come from `class_names_file` (the model's outputs in order), else its metadata file."""
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
    metadata = found.metadata
    if class_names_file is not None:
        try:
            names = read_class_names(class_names_file)
        except ClassNamesError as error:
            raise EnqueueError(str(error)) from None
        if len(names) != len(metadata.class_names):
            raise EnqueueError(f"{class_names_file.name} names {len(names)} classes; {path.name} has "
                               f"{len(metadata.class_names)} outputs")
        metadata = replace(metadata, class_names=names)
    return ModelChoice(path, found.sha256, found.content, metadata, contract)


SHOWN_NAMES = 5  # class names quoted in a message; a thousand would bury it


def quoted(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return ", ".join(repr(name) for name in names[:SHOWN_NAMES]) + more


def run_class_names(model: ModelChoice, source: Source) -> list[str]:
    """The run's class names (the model's, in output order), with each source label re-indexed to them: folders
    (and an .npz's `class_names`) are matched to the model's class names by name. Where the model names no classes,
    its outputs can stand for the source's classes only when there are as many of each (the tutorial's case): a
    folder of 2 classes for 1000 outputs, or .npz labels 0..1, could mean any two outputs, and is refused before
    anything is stored, naming the fix. Folders named by output number (`0`, `7`) are those outputs."""
    names = list(model.metadata.class_names)
    fix = (f"give the model's class names in its output order: --class-names-file FILE (one per line), or once, "
           f"beside the model: python -m models describe {model.path} --class-names-file FILE")
    by_number = source.class_names is not None and set(source.class_names) <= set(names)  # folders 0, 1, ...: outputs
    if not model.named and not by_number:
        classes = len(source.class_names) if source.class_names is not None else source.label_span
        if classes is not None and classes != len(names):
            what = (f"{len(source.class_names)} classes ({quoted(source.class_names)})" if source.class_names is not None
                    else f"labels 0..{classes - 1}")
            raise EnqueueError(f"{source.description} has {what}, the model {len(names)} outputs and no class names: "
                               f"which output is which class cannot be told; {fix}")
        if source.class_names is None:
            return names
        return list(source.class_names)  # as many as the outputs, in sorted order
    if source.class_names is None or source.class_names == names:
        return names
    index = class_index(names)
    unknown = [name for name in source.class_names if name not in index]
    if unknown:
        raise EnqueueError(f"classes of {source.description} not among the model's {len(names)} class names "
                           f"({quoted(names)}): {quoted(unknown)}; name the folders as the model names its classes (or "
                           f"by their first word), or {fix}")
    for entry in source.entries:
        if entry.true_label is not None:
            entry.true_label = index[source.class_names[entry.true_label]]
    return names


def class_index(names: list[str]) -> dict[str, int]:
    """Each class's output by its name, and by the name's first word where that is unique (a folder named by WordNet
    id, `n01440764`, matches the class `n01440764 tench, Tinca tinca` of ImageNet's LOC_synset_mapping.txt)."""
    first_words = Counter(name.split()[0] for name in names)
    index = {name.split()[0]: i for i, name in enumerate(names) if first_words[name.split()[0]] == 1}
    index.update({name: i for i, name in enumerate(names)})
    return index


def prepare_run(
    *, dataset: str | None = None, folder: Path | None = None, npz: Path | None = None, model: Path | None = None,
    num_samples: int | str | None = None, design: str | None = None, estimator: str | None = None,
    segmentation: str | None = None, n_segments: int | None = None,
    hide: str | None = None, preset: str | None = None, stability: int = 0, top_labels: int | None = None,
    seed: int = 0, limit: int | None = None, resize: bool = False, value_range: str | None = None,
    preprocess: str | None = None, skip_bad: bool = False, images_mode: str = "copy", evidence: Path | None = None,
    boxes: Path | None = None, class_names_file: Path | None = None, runtime: str = "auto", echo=print, progress=None,
) -> "PreparedRun":
    """A run from the producer's options, ready to store: the explanation settings (a preset, then the options
    given), the model (the demo one trained if missing) and its input contract, the source listed and every image
    checked (`progress(done, total)` as they are).

    Raises EnqueueError, SourceError, ContractError or ValueError (bad settings) with a one-line message,
    BadFilesError listing every image that cannot be explained, or EvidenceError listing every unusable mask or box.
    """
    from models.datasets import DATASET_NAMES
    from producer import evidence as evidence_of, sources
    from worker.engine import ARTICLE_PRESET, AUTO

    if sum(x is not None for x in (dataset, folder, npz)) > 1:
        raise EnqueueError("give one source: --dataset, --folder or --npz")
    if limit is not None and limit < 1:
        raise EnqueueError(f"--limit must be at least 1, got {limit}")
    if dataset is not None and dataset not in DATASET_NAMES:
        raise EnqueueError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if preset not in (None, "article"):
        raise EnqueueError(f"unknown --preset {preset!r}; the one preset is article")
    if images_mode not in IMAGES_MODES:
        raise EnqueueError(f"unknown --images {images_mode!r}; choose one of {', '.join(IMAGES_MODES)}")
    if images_mode == "reference" and folder is None:
        raise EnqueueError("--images reference needs --folder: only files can be referenced")
    if runtime not in RUNTIMES:
        raise EnqueueError(f"unknown --runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    evidence_of.check_options(folder, evidence, boxes)  # before a demo model may be trained
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
    choice = choose_model(Path(model), value_range=wanted_range, preprocess=preprocess,
                          class_names_file=class_names_file)
    if folder is not None:
        source = sources.from_folder(folder, limit)
    elif npz is not None:
        source = sources.from_npz(npz, limit)
    else:
        source = sources.from_builtin(dataset, choice.metadata, limit)
    return prepare(choice, source, params, resize=resize, skip_bad=skip_bad, images_mode=images_mode,
                   evidence=evidence_of.for_source(source, evidence, boxes), runtime=runtime, progress=progress)


@dataclass
class PreparedRun:
    """A run checked and ready to store: the model, the source's images that can be explained (listed, not read),
    their class names, and how they are to be stored."""

    model: ModelChoice
    source: Source
    params: ExplainParams
    class_names: list[str]
    resized: int = 0  # images of another size that --resize scales
    images_mode: str = "copy"
    skipped: list[Rejected] = field(default_factory=list)  # with --skip-bad: the images left out, each with its reason
    evidence: Evidence | None = None  # where each image's evidence is, stored with it
    runtime: str = "auto"  # what computes the predictions (models.contract.RUNTIMES)


def prepare(
    model: ModelChoice, source: Source, params: ExplainParams, *, resize: bool = False, skip_bad: bool = False,
    images_mode: str = "copy", evidence: Evidence | None = None, runtime: str = "auto", progress=None,
) -> PreparedRun:
    """Read every image of the source once, keeping no pixels: match class names, count what --resize scales, and set
    aside every image that cannot be explained. Raises BadFilesError listing all of them, unless `skip_bad` (then
    they are recorded on the run); raises EnqueueError when no image is left, EvidenceError when any of the
    evidence cannot be used (a mask of another size than its image, a box outside it, evidence for no image)."""
    height, width = model.metadata.input_shape[:2]
    class_names = run_class_names(model, source)
    good: list[Entry] = []
    bad: list[Rejected] = []
    unusable: list[str] = []
    resized = 0
    total = len(source.entries)
    for done, read in enumerate(source.read(source.entries), start=1):
        reason = problem(source, read, (height, width), len(class_names), resize)
        if reason is not None:
            bad.append(Rejected(source.origin(read.entry), reason))
        else:
            good.append(read.entry)
            resized += read.pixels.shape[:2] != (height, width)
            if evidence is not None:
                unusable.append(evidence.problem(read.entry, read.pixels.shape[:2], (height, width)))
        if progress is not None:
            progress(done, total)
    source.entries = good
    unusable = [line for line in unusable if line is not None] + (evidence.unmatched() if evidence else [])
    if unusable:
        raise EvidenceError(f"{len(unusable)} problems with {evidence.description} (nothing was stored)", unusable)
    if bad and not skip_bad:
        raise BadFilesError(bad, total)
    if not source.entries:
        raise EnqueueError(f"{source.description} holds no images that can be explained")
    return PreparedRun(model, source, params, class_names, resized, images_mode, skipped=bad, evidence=evidence,
                       runtime=runtime)


def problem(source: Source, read: Read, size: tuple[int, int], classes: int, resize: bool) -> str | None:
    """Why an image cannot be explained, in one line, or None."""
    if read.error is not None:
        return read.error
    name, (h, w) = source.name(read.entry), read.pixels.shape[:2]
    if (h, w) != size and not resize:
        return f"{name} is {h}x{w}, the model wants {size[0]}x{size[1]} (--resize scales it)"
    label = read.entry.true_label
    if label is not None and not 0 <= label < classes:
        return f"{name}: label {label} is not one of {classes} classes"
    return None


def new_image(source: Source, read: Read, size: tuple[int, int], images_mode: str) -> runs.NewImage:
    """What is stored of one image: its content hash, and its PNG (the file's own bytes when they are that PNG
    already) or, by reference, its file's path."""
    pixels, png = read.pixels, read.png
    if pixels.shape[:2] != size:
        pixels, png = images.resize(pixels, *size), None
    height, width, channels = pixels.shape
    path = str(source.path(read.entry)) if images_mode == "reference" else None
    if path is None and png is None:
        png = images.png_bytes(pixels)
    return runs.NewImage(images.pixels_sha256(pixels), None if path else png, source.origin(read.entry), width, height,
                         channels, read.entry.true_label, path)


def evidence_masks(evidence: Evidence, reads: list[Read], stored: list[runs.NewImage]) -> dict:
    """The chunk's evidence masks at the images' stored size, by content hash; images without evidence left out."""
    masks = {}
    for read, image in zip(reads, stored):
        mask = evidence.mask(read.entry, read.pixels.shape[:2], (image.height, image.width))
        if mask is not None:
            masks[image.sha256] = mask
    return masks


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


ENQUEUE_CHUNK = 256  # images read, stored and committed at a time: what the producer holds of the source
# Tasks the producer sends itself as it finishes, so that running workers start at once; the workers' window sends
# the rest (within FEED_INTERVAL_S), and `enqueue` need not wait for a thousand sends.
FIRST_TASKS = 100


def enqueue(session_factory, app, prepared: PreparedRun, *, name: str | None = None, progress=None) -> tuple[int, int]:
    """Create the run and store its images chunk by chunk, then send the first tasks; all or nothing.

    The images of the input check are stored first (they are the run's first positions) and the check's task is sent
    at once, so a worker tells within seconds whether the model takes the images as the run feeds them. The rest of
    the tasks go out as the broker's window drains (worker.window): enqueueing ends when the images are stored.
    `progress(stored, total)` follows the storing. Returns (run id, images stored). If anything fails on the way
    (the broker, the database, Ctrl-C), the run and the images only it brought are removed again; tasks already sent
    for it then find no run and do nothing.
    """
    from worker.messages import send_input_check

    check_broker(app)
    model, source, contract = prepared.model, prepared.source, prepared.model.contract
    size = tuple(model.metadata.input_shape[:2])
    with session_factory() as session:
        runs.store_model_file(session, model.sha256, model.content, _metadata_dict(model.metadata))
        run = runs.create_run(
            session, name=name or default_run_name(source), model_path=str(model.path.resolve()),
            model_sha256=model.sha256, class_names=prepared.class_names, params=prepared.params.to_dict(),
            source=source.description, value_range=list(contract.value_range), preprocess=contract.preprocess,
            outputs=contract.outputs, contract_notes=contract.notes, skipped=[bad.as_dict() for bad in prepared.skipped],
            runtime=prepared.runtime,
        )
        session.commit()
        run_id, stored, created = run.id, 0, []
        checked = sample_positions([entry.true_label for entry in source.entries])
        in_check = set(checked)
        order = checked + [i for i in range(len(source.entries)) if i not in in_check]
        # one pass over the source (an archive is opened and read through once), taken a chunk at a time
        stream = source.read(source.entries[i] for i in order)
        try:
            for start in range(0, len(order), ENQUEUE_CHUNK):
                chunk = list(islice(stream, ENQUEUE_CHUNK))
                runs.defer_durability(session)
                stored_images = [new_image(source, read, size, prepared.images_mode) for read in chunk]
                added, new = runs.add_images(session, run, stored_images)
                if prepared.evidence is not None:
                    runs.store_evidence(session, evidence_masks(prepared.evidence, chunk, stored_images))
                session.commit()
                created += new
                if start == 0:
                    send_input_check(app, run_id, added[: len(checked)])
                stored += len(chunk)
                if progress is not None:
                    progress(stored, len(order))
            run.status = "running"
            jobs.finish_run_if_complete(session, run_id)  # in case the workers were faster than us
            session.commit()  # durable, and with it every chunk before
        except BaseException as error:
            stream.close()  # the archive, closed now rather than whenever the generator is collected
            session.rollback()
            discard_run(session, run_id, created)
            if isinstance(error, Exception):
                raise EnqueueError(f"enqueueing failed, run {run_id} discarded: {error}") from None
            raise
    send_first_window(app, session_factory)
    return run_id, stored


def send_first_window(app, session_factory) -> int:
    """Send the first FIRST_TASKS (at most MAX_QUEUED) tasks now, as the one sender of the moment; the workers'
    window sends the rest."""
    from core.settings import is_redis_url, redis_client, settings
    from worker.window import feed_lock, fill_window

    client = redis_client(app.conf.broker_url) if is_redis_url(app.conf.broker_url) else None
    try:
        with feed_lock(client, wait_s=5.0) as held:
            return fill_window(app, session_factory, limit=min(FIRST_TASKS, settings.max_queued)) if held else 0
    finally:
        if client is not None:
            client.close()


def resume(session_factory, app, run_ref: str) -> tuple[int, int]:
    """Send again every image of the run that was sent and has no finished result (the images not yet sent are the
    window's), and its input check if that never finished. Returns (run id, images sent)."""
    from worker.messages import send_explain_tasks, send_input_check_again

    check_broker(app)
    with session_factory() as session:
        run = reads.find_run(session, run_ref)
        missing = [image_id for _, image_id in jobs.sent_unfinished(session, run_id=run.id)]
        if run.status != "done":  # also completes a run whose producer died while storing
            run.status = "running"
            run.finished_at = None
            session.commit()
        if run.input_check is None:
            send_input_check_again(app, session, run.id)
        send_explain_tasks(app, run.id, missing)
        jobs.finish_run_if_complete(session, run.id)
        session.commit()
        run_id = run.id
    send_first_window(app, session_factory)
    return run_id, len(missing)


def default_run_name(source: Source) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{source.description.split()[0]}-{stamp}"


def _safe_url(url: str) -> str:
    """A broker URL without its password, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def wait_for_run(session_factory, run_id: int, on_progress, poll_s: float = 0.5) -> reads.RunProgress:
    """Poll the run until every image is finished, calling on_progress(progress, input check or None) each time."""
    while True:
        with session_factory() as session:
            counts = reads.run_progress(session, run_id)
            check = session.get(Run, run_id).input_check
        on_progress(counts, check)
        if counts.remaining == 0:
            return counts
        time.sleep(poll_s)


__all__ = [
    "BadFilesError", "EnqueueError", "EvidenceError", "SourceError", "choose_model", "enqueue", "ensure_demo_model", "prepare",
    "prepare_run", "resume", "wait_for_run",
]
