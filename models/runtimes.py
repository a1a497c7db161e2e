"""The runtimes a model is predicted through, and the choice between them.

Keras/TensorFlow is the reference. OpenVINO computes the same graph (the model with its keras.applications
preprocessing and its softmax, as models.classifier.Classifier.forward builds it), converted once per model file and
contract and kept on disk, at f32 (its CPU plugin would compute in bf16 on CPUs that have it, unless told). A
converted model is used only where it reproduces Keras on the run's own images (every probability within
EXACT_WITHIN, the same predicted class for each image); `auto` then takes the faster of the two, each timed at the
engine's batch sizes, and serves it at its best batch.
A conversion that fails, or is not exact, leaves the model on Keras with a line saying why: never a wrong prediction,
never a failed run.

Imports TensorFlow and OpenVINO: for a worker's child process, a benchmark or a test, never a producer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.batching import MIN_BATCH, batch_buckets
from models.classifier import Classifier
from models.contract import RUNTIMES

EXACT_WITHIN = 1e-5  # the largest probability difference to Keras that still counts as the same model
CLOSE_RATIO = 1.25  # timings nearer than this are taken again, and the best of both counted
# Bump when what is converted changes (the graph, the export path, the save options): old conversions are not reused.
CONVERSION_FORMAT = 1


class ConversionError(RuntimeError):
    """The model could not be converted; the message is one line."""


@dataclass(frozen=True)
class RuntimeChoice:
    """Which runtime a model is predicted through, and why, in one line (`line`); the figures behind it."""

    requested: str
    runtime: str
    line: str
    max_prob_diff: float | None = None
    speedup: float | None = None  # Keras' seconds per image over OpenVINO's, each at its best batch
    images: int = 0  # the images the conversion was checked on
    batch_size: int | None = None  # the chosen runtime's best batch, where it was timed

    def as_dict(self) -> dict:
        return asdict(self)


class OpenVinoRuntime:
    """A converted model compiled for the CPU at f32, on `threads` threads that are not pinned to cores (two
    worker processes would otherwise pin theirs to the same ones)."""

    name = "openvino"

    def __init__(self, model_xml: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(model_xml), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY",
        })
        self._request = self._compiled.create_infer_request()

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        # a copy: the request's output buffer is overwritten by the next call
        return np.array(self._request.infer({0: batch})[0], copy=True)


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def conversion_key(classifier: Classifier) -> str:
    """What a conversion depends on: the model file, its preprocessing and output activation, the converter."""
    import tensorflow as tf

    parts = (classifier.sha256, classifier.preprocess, classifier.logits, openvino_version(), tf.__version__,
             CONVERSION_FORMAT)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def convert_to_openvino(classifier: Classifier, cache_dir: Path) -> Path:
    """The classifier's graph as OpenVINO IR (`model.xml` and its weights), converted once per conversion_key and
    kept under cache_dir. Written whole: converted into a folder of its own, then renamed into place, so that
    processes (or machines sharing the folder) converting at once never see half a model; on one machine a lock
    makes the others wait for the first instead of converting too. A failure is kept too (`<key>.failed`, its
    reason), so that every process does not try again. Raises ConversionError."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = conversion_key(classifier)
    final, failed = cache_dir / key, cache_dir / f"{key}.failed"
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "model.xml").exists():
            return final / "model.xml"
        if failed.exists():
            raise ConversionError(failed.read_text().strip())
        partial = cache_dir / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
        try:
            _convert(classifier, partial)
            try:
                os.rename(partial, final)
            except OSError:  # another machine's conversion is in place: it is the same model
                shutil.rmtree(partial)
        except Exception as error:
            shutil.rmtree(partial, ignore_errors=True)
            reason = one_line(error)
            marker = failed.with_name(f"{failed.name}.{os.getpid()}.partial")
            marker.write_text(reason + "\n")
            os.replace(marker, failed)
            raise ConversionError(reason) from error
    return final / "model.xml"


def one_line(error: BaseException) -> str:
    """The telling line of a converter's error: its summary (`No conversion rule found for operations: DenseBincount`)
    rather than the source position of the check that failed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = ([line.removeprefix("-- ") for line in lines if line.startswith("-- ")]
               or [line for line in lines if not line.startswith("Check '")] or lines or [""])
    return f"{type(error).__name__}: {telling[0]}"[:300]


def _convert(classifier: Classifier, folder: Path) -> None:
    """OpenVINO's documented path for Keras 3: a SavedModel export (here of the whole forward graph), converted, and
    saved at full precision (save_model would compress the weights to f16 by default)."""
    import keras
    import openvino as ov
    import tensorflow as tf

    folder.mkdir(parents=True)
    archive = keras.export.ExportArchive()
    archive.track(classifier.model)
    archive.add_endpoint("serve", classifier.forward,
                         input_signature=[tf.TensorSpec([None, *classifier.input_shape], tf.float32)])
    saved = folder / "saved_model"
    archive.write_out(str(saved), verbose=False)
    converted = ov.convert_model(str(saved))
    ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
    shutil.rmtree(saved)


def seconds(classifier: Classifier, runtime, images: np.ndarray) -> float:
    started = time.perf_counter()
    classifier.predict(images, runtime)
    return time.perf_counter() - started


def choose_runtime(
    classifier: Classifier, requested: str, images: np.ndarray, *, cache_dir: Path, threads: int,
) -> Classifier:
    """The classifier served by the runtime `requested` asks for (auto, keras or openvino), checked on `images`
    (float32, in the run's value range: the input check's), with its RuntimeChoice as `.choice`.

    Chosen once per model, machine, thread count and request: the first process to ask measures (`measure_choice`)
    and keeps the choice beside the conversion; the machine's other processes wait for it and take the same, so
    that one run's explanations on one machine come from one runtime."""
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r}; choose one of {', '.join(RUNTIMES)}")
    if requested == "keras":
        return classifier.served_by(classifier.keras, RuntimeChoice(requested, "keras",
                                                                    "runtime keras: as asked (--runtime keras)"))
    if not len(images):
        return classifier.served_by(classifier.keras, RuntimeChoice(
            requested, "keras", "runtime keras: no image of the run could be read to check OpenVINO against"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    kept = cache_dir / f"{conversion_key(classifier)}.{socket.gethostname()}.{threads}-threads.{requested}.json"
    with open(kept.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if kept.exists():
            choice = RuntimeChoice(**json.loads(kept.read_text()))
            if choice.runtime == "keras":
                return serve(classifier, classifier.keras, choice)
            return serve(classifier, OpenVinoRuntime(convert_to_openvino(classifier, cache_dir), threads), choice)
        served = measure_choice(classifier, requested, np.asarray(images, np.float32), cache_dir, threads)
        partial = kept.with_name(f"{kept.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(served.choice.as_dict()) + "\n")
        os.replace(partial, kept)
    return served


def measure_choice(classifier: Classifier, requested: str, images: np.ndarray, cache_dir: Path, threads: int) -> Classifier:
    """OpenVINO converted (or found converted) and its probabilities compared with Keras' on every image; where it
    is exact, the runtimes in question timed at the engine's batch sizes (`best_batches`): both under `auto`,
    OpenVINO alone when asked for. `decide` makes the choice from the figures, and the chosen runtime serves at its
    best batch. A conversion that fails or a runtime that cannot compile leaves the model on Keras, the line saying
    why."""

    def on_keras(line: str) -> Classifier:
        return classifier.served_by(classifier.keras, RuntimeChoice(requested, "keras", line))

    try:
        openvino = OpenVinoRuntime(convert_to_openvino(classifier, cache_dir), threads)
    except ImportError:
        return on_keras("runtime keras: OpenVINO is not installed (pip install openvino)")
    except ConversionError as error:
        return on_keras(f"runtime keras: the OpenVINO conversion failed ({error})")
    except RuntimeError as error:  # OpenVINO read the model but cannot compile it for this CPU
        return on_keras(f"runtime keras: OpenVINO cannot compile the model ({one_line(error)})")

    reference, converted = classifier.predict(images, classifier.keras), classifier.predict(images, openvino)
    comparison = Comparison(len(images), float(np.abs(reference - converted).max()),
                            int((reference.argmax(axis=1) != converted.argmax(axis=1)).sum()))
    if comparison.exact:
        timed = [classifier.keras, openvino] if requested == "auto" else [openvino]
        comparison.batches = best_batches(classifier, timed, images)
    choice = decide(requested, comparison)
    return serve(classifier, openvino if choice.runtime == "openvino" else classifier.keras, choice)


def serve(classifier: Classifier, runtime, choice: RuntimeChoice) -> Classifier:
    """The classifier served by `runtime`, in batches of the size the choice found best (where it timed one)."""
    served = classifier.served_by(runtime, choice)
    served.batch_size = choice.batch_size or classifier.batch_size
    return served


def best_batches(classifier: Classifier, runtimes: list, images: np.ndarray) -> dict[str, tuple[int, float]]:
    """Each runtime's best batch of the engine's sizes (the powers of two from MIN_BATCH up to the classifier's batch,
    made from `images`) and its seconds per image there. Every size is warmed first (a new shape costs more than a
    batch on a small model), unless the comparison just fed it; the runtimes are timed in turn, and once more at
    their best where they are close."""
    sizes = [size for size in batch_buckets(classifier.batch_size) if size >= MIN_BATCH and not size & (size - 1)]
    batches = {size: np.resize(images, (size, *images.shape[1:])) for size in sizes}
    for size, batch in batches.items():
        for runtime in runtimes if size != len(images) else ():
            classifier.predict(batch, runtime)
    timings = {(runtime.name, size): seconds(classifier, runtime, batch) / size
               for size, batch in batches.items() for runtime in runtimes}
    best = {runtime.name: min(((size, timings[runtime.name, size]) for size in sizes), key=lambda found: found[1])
            for runtime in runtimes}
    if len(best) == 2 and 1 / CLOSE_RATIO < best["keras"][1] / best["openvino"][1] < CLOSE_RATIO:
        for runtime in runtimes:
            size, per_image = best[runtime.name]
            best[runtime.name] = (size, min(per_image, seconds(classifier, runtime, batches[size]) / size))
    return best


@dataclass
class Comparison:
    """OpenVINO against Keras on the same images: the largest probability difference, the images whose predicted
    class differs, and the runtimes timed: each one's best batch and seconds per image there."""

    images: int
    max_prob_diff: float
    differing: int
    batches: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.max_prob_diff <= EXACT_WITHIN and not self.differing

    @property
    def speedup(self) -> float | None:
        """Keras' seconds per image over OpenVINO's, each at its best batch (where both were timed)."""
        if "keras" not in self.batches or "openvino" not in self.batches:
            return None
        return self.batches["keras"][1] / self.batches["openvino"][1]


def decide(requested: str, comparison: Comparison) -> RuntimeChoice:
    """OpenVINO where it is exact and asked for, or exact and faster under auto; else Keras. The line says which and
    why: `runtime openvino: 2.8x keras, max |dp| 3.2e-10 on 64 images; batches of 16`."""
    checked = f"max |dp| {comparison.max_prob_diff:.1e} on {comparison.images} images"
    speedup = comparison.speedup
    figures = dict(max_prob_diff=comparison.max_prob_diff, speedup=speedup, images=comparison.images)

    def chosen(runtime: str, line: str) -> RuntimeChoice:
        batch = comparison.batches.get(runtime, (None,))[0]
        return RuntimeChoice(requested, runtime, line + (f"; batches of {batch}" if batch else ""), batch_size=batch,
                             **figures)

    if not comparison.exact:
        classes = f", {comparison.differing} predicted classes differ" if comparison.differing else ""
        return chosen("keras", f"runtime keras: OpenVINO is not exact ({checked}{classes}; {EXACT_WITHIN:g} allowed)")
    if requested == "openvino":
        return chosen("openvino", f"runtime openvino: as asked (--runtime openvino), {checked}")
    if speedup > 1:
        return chosen("openvino", f"runtime openvino: {speedup:.1f}x keras, {checked}")
    return chosen("keras", f"runtime keras: {1 / speedup:.1f}x openvino (OpenVINO exact: {checked})")
