"""Flower, as compose runs it: `python -m worker.monitor [Flower's options]` is `celery -A worker flower [options]`,
except that Flower's worker list (`/api/workers`, the Workers page) also shows the workers that start after it.

Flower 2.x fills that list by inspecting the workers once, when it starts, and again only when asked with
`?refresh=1` (mher/flower#1139): opened before the workers, it shows none. Its event stream sees every worker's
heartbeat all along, so here a periodic callback inspects each worker that the events show alive and the list
lacks, once."""

from __future__ import annotations

import sys

NEW_WORKER_CHECK_S = 1.0


def follow_new_workers(flower_app) -> None:
    """Every NEW_WORKER_CHECK_S, inspect the live workers that Flower's worker list lacks."""
    from tornado.ioloop import PeriodicCallback

    def inspect_new_workers() -> None:
        listed = flower_app.inspector.workers
        for name, worker in list(flower_app.events.state.workers.items()):
            if worker.alive and name not in listed:
                flower_app.update_workers(workername=name)  # one inspection per worker at a time (Flower's own)

    PeriodicCallback(inspect_new_workers, NEW_WORKER_CHECK_S * 1000).start()


def main(argv: list[str]) -> None:
    import flower.command
    from celery.bin.celery import main as celery_main
    from flower.app import Flower

    class FollowingFlower(Flower):
        def start(self) -> None:
            follow_new_workers(self)
            super().start()

    flower.command.Flower = FollowingFlower  # the one name Flower's command builds its app from
    sys.argv = ["celery", "-A", "worker", "flower", *argv]
    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
