"""`python -m benchmarks.pipeline`: the whole pipeline against the engine alone and the article's way.

200 demo validation images, num_samples=1000, Redis + PostgreSQL, one worker of 2 processes x 1
TensorFlow thread. pipeline_s runs from the first enqueue (images stored, tasks sent) to the last
committed row. In the same run: engine_sequential_s, the engine alone on the same images in one
process pinned to one thread, and naive_s, the article's way on a few of them (per image).
The last line is one JSON object. `--quick`: the same run on 10 images at num_samples=50 on one worker process, one
of them the article's way, in well under a minute: to keep the benchmark working, not to measure (no --save).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime

import numpy as np
import redis
from sqlalchemy import func, select

from benchmarks.figures import finish, run_sizes
from benchmarks.services import postgres_database
from producer.local import Worker
from db import reads
from db.migrate import upgrade
from db.models import Explanation, Image, RunImage
from db.session import make_engine

REDIS_URL = os.environ.get("BENCHMARK_REDIS_URL", "redis://127.0.0.1:6379/12")
FULL = {"images": 200, "num_samples": 1000, "naive_images": 3, "processes": 2}
QUICK = {"images": 10, "num_samples": 50, "naive_images": 1, "processes": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="default 200 (--quick: 10)")
    parser.add_argument("--num-samples", type=int, default=None, help="default 1000 (--quick: 50)")
    parser.add_argument("--naive-images", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="10 images, 50 samples, 1 worker process, 1 the article's way: every figure, under a "
                        "minute.")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/pipeline.json (the docs).")
    args = parser.parse_args()
    for key, value in run_sizes(parser, args, FULL, QUICK).items():
        setattr(args, key, value)

    from celery import Celery
    from sqlalchemy.orm import sessionmaker

    from producer import service

    # lime's settings (the article's), as when these figures were first taken: the pipeline's overhead is the point
    settings = {"dataset": "rectangles", "preset": "article", "num_samples": args.num_samples}
    warm, benchmark = service.prepare_run(**settings, limit=4), service.prepare_run(**settings, limit=args.images)
    model_path, params = benchmark.model.path, benchmark.params
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    with postgres_database("limebatch_bench") as database_url:
        upgrade(database_url)
        engine = make_engine(database_url)
        Session = sessionmaker(engine, expire_on_commit=False)
        env = {
            "DATABASE_URL": database_url, "CELERY_BROKER_URL": REDIS_URL, "TF_THREADS": "1",
            "WORKER_CONCURRENCY": str(args.processes), "DATA_DIR": os.environ.get("DATA_DIR", "data"),
        }
        app = Celery(broker=REDIS_URL)
        worker = Worker(env, concurrency=args.processes).start()
        try:
            # Warm-up: each worker process fetches and loads the model once, as a long-lived worker has.
            warm_id, _ = service.enqueue(Session, app, warm, name="warm-up")
            service.wait_for_run(Session, warm_id, lambda counts, check: None, poll_s=0.2)

            cpu_before = cpu_seconds_by_role(worker.process.pid)
            started = datetime.now().astimezone()
            run_id, sent = service.enqueue(Session, app, benchmark, name="benchmark")
            enqueue_s = (datetime.now().astimezone() - started).total_seconds()
            print(f"pipeline: {sent} images stored and sent in {enqueue_s:.2f} s, waiting...", flush=True)
            # the end is read from the rows' commit times, so polling often would only steal CPU
            counts = service.wait_for_run(Session, run_id, lambda counts, check: None, poll_s=1.0)
            cpu_after = cpu_seconds_by_role(worker.process.pid)
            cpu_used = {role: round(cpu_after[role] - cpu_before.get(role, 0.0), 2) for role in cpu_after}
            with Session() as session:
                last = session.scalar(select(func.max(Explanation.updated_at)).where(Explanation.run_id == run_id))
                timings = session.scalars(select(Explanation.timings).where(Explanation.run_id == run_id)).all()
                pngs = session.scalars(
                    select(Image.png).join(RunImage, RunImage.image_id == Image.id)
                    .where(RunImage.run_id == run_id).order_by(RunImage.position)
                ).all()
            pipeline_s = (reads.as_utc(last) - started).total_seconds()
        finally:
            worker.stop()
            app.close()
            engine.dispose()
            broker.flushdb()
    print(f"pipeline: {counts.ok} ok, {counts.failed} failed in {pipeline_s:.1f} s", flush=True)
    print(f"CPU seconds used meanwhile, by role: {cpu_used}", flush=True)

    engine_s, naive_s = sequential_figures(model_path, pngs, params, args.naive_images)
    per_image = pipeline_s / len(pngs)
    result = {
        "images": len(pngs),
        "num_samples": args.num_samples,
        "pipeline_s": pipeline_s,
        "pipeline_per_image_s": per_image,
        "enqueue_s": enqueue_s,
        # the engine's own time per image inside the workers: the rest of pipeline time is queue and database
        "engine_in_pipeline_per_image_s": statistics.mean(t["total_s"] for t in timings),
        "engine_sequential_s": engine_s,
        "engine_per_image_s": engine_s / len(pngs),
        "naive_s": naive_s,
        "engine_sequential_over_pipeline": engine_s / pipeline_s,
        "naive_over_pipeline": naive_s / per_image,
        "cpu_s_by_role": cpu_used,
    }
    print(
        f"engine alone, sequential, 1 thread: {engine_s:.1f} s ({engine_s / len(pngs):.3f} s/image); "
        f"article's way: {naive_s:.2f} s/image; pipeline: {per_image:.3f} s/image\n"
        f"engine_sequential/pipeline {result['engine_sequential_over_pipeline']:.2f} (target >= 1.6), "
        f"naive/pipeline {result['naive_over_pipeline']:.0f} (target >= 25)",
        flush=True,
    )
    finish("pipeline", result, args.save)


def cpu_seconds_by_role(worker_pid: int) -> dict[str, float]:
    """CPU seconds so far of every process on the machine, summed by role: where the 2 cores went."""
    import psutil

    totals: dict[str, float] = {}
    for process in psutil.process_iter(["name", "ppid", "cpu_times"]):
        info = process.info
        if info["cpu_times"] is None:
            continue
        if process.pid == os.getpid():
            role = "producer (this process)"
        elif process.pid == worker_pid:
            role = "celery parent"
        elif info["ppid"] == worker_pid:
            role = "celery children"
        elif info["name"] in ("postgres", "redis-server"):
            role = info["name"]
        else:
            role = "other (kernel, ...)"
        totals[role] = totals.get(role, 0.0) + info["cpu_times"].user + info["cpu_times"].system
    return totals


def sequential_figures(model_path, pngs: list[bytes], params, naive_images: int) -> tuple[float, float]:
    """The engine on every image in this process (1 thread), and the article's way on a few."""
    from threadpoolctl import threadpool_limits

    from benchmarks.engine import naive_seconds
    from models.classifier import configure_tensorflow, load_classifier
    from worker.engine import explain
    from core.images import png_pixels

    configure_tensorflow(1)
    with threadpool_limits(1):
        classifier = load_classifier(model_path)
        images = [png_pixels(png) for png in pngs]
        classifier.warm_up()  # as each worker process does when it loads a model
        started = time.perf_counter()
        for image in images:
            explain(image, classifier.predict, params, input_shape=classifier.input_shape)
        engine_s = time.perf_counter() - started
        naive = [
            naive_seconds(image.astype(np.float32) / 255, classifier.model, params.num_samples)
            for image in images[:naive_images]
        ]
    return engine_s, statistics.mean(naive)


if __name__ == "__main__":
    main()
