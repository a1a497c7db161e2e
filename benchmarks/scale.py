"""`python -m benchmarks.scale`: what the job's size costs the pipeline itself, at 2,000 and 20,000 images
(`--big`: 100,000 too).

Per size, a synthetic folder of 64x64 PNGs (two classes, made once and kept under DATA_DIR/benchmarks/scale), a fresh
PostgreSQL database and a redis-server of its own:
- `python -m producer enqueue --folder ...` as a subprocess: images stored per second (checking and storing, to the
  first window sent), and its peak RSS;
- one worker of 2 processes, warmed up on a small run (8 synthetic images of their own), with a deliberately cheap
  explanation (lime's independent masks and fit, 10 samples, about 4 superpixels) so the pipeline's own cost shows;
  it consumes only once the whole run is stored. `overhead_ms`: the wall time per image less the engine's own time
  per image as the two processes share it (engine seconds / images / processes): what the pipeline adds to each
  image's share of the wall clock; `overhead_process_ms`: the same in process time (wall x processes less the
  engine's seconds, per image), which also holds the database's, Redis' and Celery's work on the same two cores;
- Redis' peak memory over the run (its own server, so the peak is the run's), and the database's growth per image;
  the smaller size once more with `--images reference`.
The last line is JSON. `--quick`: the same at 10 and 40 images on a worker of one process, in well under a minute:
to keep the benchmark working, not to measure (no --save).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.figures import finish, run_sizes

SIZES = (2_000, 20_000)
QUICK_SIZES = (10, 40)
BIG = 100_000
CHEAP = ("--design", "independent", "--estimator", "lime", "--num-samples", "10", "--n-segments", "4")
PROCESSES = 2  # the worker's (--quick: 1)
WARM_UP = 8  # images of the warm-up run, seeded apart from the measured folders' (stored images are kept once)


def synthetic_folder(root: Path, count: int, folder_name: str | None = None, seed: int = 0) -> Path:
    """`count` 64x64 rectangle PNGs in a class-per-folder tree, made in chunks seeded `seed` + their start (and once:
    kept for later runs, in root/`folder_name`, by default the count)."""
    from PIL import Image

    from models.datasets import make_rectangles

    folder = root / (folder_name or f"{count}")
    done = folder / ".complete"
    if done.exists():
        return folder
    names = ("rectangle", "no_rectangle")
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for start in range(0, count, 1000):
        images, labels = make_rectangles(min(1000, count - start), seed=seed + start)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / names[label] / f"{start + i:07d}.png")
    done.touch()
    return folder


def run_producer(env: dict, *args: str) -> tuple[float, float, str]:
    """`python -m producer` as a subprocess: (seconds, peak RSS in MB, its output)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "producer", *args], env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"producer failed: {output[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def database_bytes(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.scalar(text("SELECT pg_database_size(current_database())"))


def measure(count: int, folder: Path, model: Path, images_mode: str = "copy", processes: int = PROCESSES) -> dict:
    """One size: enqueue, then explain, on a fresh database and redis-server, with a worker of `processes`."""
    import redis
    from celery import Celery
    from sqlalchemy import func, select, text
    from sqlalchemy.orm import sessionmaker

    from db.migrate import upgrade
    from db.models import Explanation
    from db.session import make_engine
    from producer.local import Worker
    from producer.service import wait_for_run
    from benchmarks.services import RedisServer, postgres_database, run_id_of
    import tempfile

    figures = {}
    with tempfile.TemporaryDirectory() as tmp, postgres_database("limebatch_scale") as database_url:
        broker = RedisServer(Path(tmp) / "redis").start()
        worker = None
        try:
            upgrade(database_url)
            engine = make_engine(database_url)
            session = sessionmaker(engine, expire_on_commit=False)
            env = {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker.url, "DATA_DIR": str(Path(tmp) / "data"),
                   "WORKER_CONCURRENCY": str(processes), "TF_THREADS": "1"}
            client = redis.Redis.from_url(broker.url)
            app = Celery(broker=broker.url)
            # warmed up (each process loads the model), then told to take no tasks while the run is stored
            worker = Worker(env, concurrency=processes, log=Path(tmp) / "worker.log").start(ready_timeout=None)
            warm_up = synthetic_folder(folder.parent, WARM_UP, "warm-up", seed=1)
            warm = run_id_of(run_producer(env, "enqueue", "--folder", str(warm_up), "--model", str(model), *CHEAP)[2])
            worker.wait_ready(120)  # started while the warm-up run was stored
            wait_for_run(session, warm, lambda *_: None, poll_s=0.2)
            app.control.cancel_consumer("celery", reply=True, limit=1)  # the one worker's reply, not a second's wait
            baseline_redis = client.info("memory")["used_memory"]
            before = database_bytes(engine)
            seconds, rss, output = run_producer(env, "enqueue", "--folder", str(folder), "--model", str(model),
                                                "--images", images_mode, *CHEAP)
            run_id = run_id_of(output)
            figures["enqueue_per_s"] = count / seconds
            figures["producer_peak_mb"] = rss
            started = time.perf_counter()
            app.control.add_consumer("celery", reply=True)
            wait_for_run(session, run_id, lambda *_: None, poll_s=1.0)
            wall = time.perf_counter() - started
            with session() as s:
                engine_s = s.scalar(select(func.sum(text("(timings->>'total_s')::float"))).select_from(Explanation)
                                    .where(Explanation.run_id == run_id))
                ok = s.scalar(select(func.count()).select_from(Explanation)
                              .where(Explanation.run_id == run_id, Explanation.status == "ok"))
            figures["overhead_ms"] = (wall - engine_s / processes) / count * 1000
            figures["overhead_process_ms"] = (wall * processes - engine_s) / count * 1000
            figures["engine_ms"] = engine_s / count * 1000
            figures["explained_per_s"] = count / wall
            figures["ok"] = ok
            worker.stop()
            figures["redis_peak_mb"] = (client.info("memory")["used_memory_peak"] - baseline_redis) / 2**20
            figures["db_kb_per_image"] = (database_bytes(engine) - before) / count / 1024
            client.close()
            app.close()
            engine.dispose()
        finally:
            if worker is not None:  # a failure midway leaves no worker processes behind
                worker.stop()
            broker.stop()
    return figures


def label(count: int) -> str:
    """A size in the figures' names: 2k, 20k, 100k (20, 200 for --quick)."""
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help=f"Also {BIG:,} images.")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SIZES[0]:,} and {QUICK_SIZES[1]:,} images on a worker of 1 process instead: "
                        "every figure, well under a minute.")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/scale.json (the docs).")
    args = parser.parse_args()
    if args.quick and args.big:
        parser.error("--big and --quick contradict each other: choose one")
    chosen = run_sizes(parser, args, {"sizes": SIZES, "processes": PROCESSES}, {"sizes": QUICK_SIZES, "processes": 1})
    base, processes = chosen["sizes"], chosen["processes"]

    from core.settings import settings
    from producer.service import ensure_demo_model

    model = ensure_demo_model("rectangles")
    root = settings.data_dir / "benchmarks" / "scale"
    sizes = base + ((BIG,) if args.big else ())
    result = {}
    print("| images | enqueue images/s | producer peak MB | Redis peak MB | database KB/image | overhead ms/image "
          "(wall) | overhead ms/image (process) | engine ms/image |\n|---|---|---|---|---|---|---|---|", flush=True)
    for count in sizes:
        folder = synthetic_folder(root, count)
        figures = measure(count, folder, model, processes=processes)
        assert figures["ok"] == count, figures
        print(f"| {count:,} | {figures['enqueue_per_s']:.0f} | {figures['producer_peak_mb']:.0f} | "
              f"{figures['redis_peak_mb']:.2f} | {figures['db_kb_per_image']:.1f} | {figures['overhead_ms']:.1f} | "
              f"{figures['overhead_process_ms']:.1f} | {figures['engine_ms']:.1f} |", flush=True)
        name = label(count)
        result |= {f"producer_peak_mb_{name}": round(figures["producer_peak_mb"], 1),
                   f"redis_peak_mb_{name}": round(figures["redis_peak_mb"], 3),
                   f"overhead_ms_{name}": round(figures["overhead_ms"], 2),
                   f"overhead_process_ms_{name}": round(figures["overhead_process_ms"], 2),
                   f"enqueue_per_s_{name}": round(figures["enqueue_per_s"], 1),
                   f"db_kb_per_image_{name}": round(figures["db_kb_per_image"], 2)}
    reference = measure(base[0], synthetic_folder(root, base[0]), model, images_mode="reference", processes=processes)
    print(f"\n--images reference, {base[0]:,} images: {reference['db_kb_per_image']:.2f} KB per image in the database "
          f"(explained), {reference['enqueue_per_s']:.0f} images/s stored, overhead {reference['overhead_ms']:.1f} ms "
          f"per image (reading and checking each file in the worker)")
    small, large = label(base[0]), label(base[1])
    result["enqueue_per_s"] = min(result[f"enqueue_per_s_{small}"], result[f"enqueue_per_s_{large}"])
    result["db_kb_per_image"] = result[f"db_kb_per_image_{large}"]
    result["db_kb_per_image_reference"] = round(reference["db_kb_per_image"], 2)
    for key in ("producer_peak_mb", "redis_peak_mb", "overhead_ms"):
        ratio = result[f"{key}_{large}"] / result[f"{key}_{small}"]
        result[f"{key}_ratio"] = round(ratio, 3)
        print(f"{key}: {result[f'{key}_{small}']} at {small}, {result[f'{key}_{large}']} at {large} "
              f"(ratio {ratio:.2f}; target within 20%)")
    finish("scale", result, args.save)


if __name__ == "__main__":
    main()
