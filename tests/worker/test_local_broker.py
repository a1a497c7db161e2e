"""The embedded broker of `producer local` (worker.local_broker) when several processes open a new broker file at
the same moment, as the producer and its workers do at the start of every local run."""

from __future__ import annotations

import multiprocessing

from kombu import Connection

from worker import local_broker

PROCESSES = 4
ROUNDS = 5


def publish_on_fresh_files(folder: str, barrier) -> None:
    local_broker.register()
    for round_ in range(ROUNDS):
        barrier.wait(timeout=20)  # all processes on the same new file at once
        with Connection(local_broker.url_for(f"{folder}/broker-{round_}.db")) as connection:
            queue = connection.SimpleQueue("celery")
            queue.put({"round": round_})
            queue.close()


def test_processes_opening_a_new_broker_file_at_once_all_publish(tmp_path):
    # kombu's own channel raised IntegrityError (UNIQUE kombu_queue.name) in one round of three here
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES)
    processes = [spawn.Process(target=publish_on_fresh_files, args=(str(tmp_path), barrier)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    local_broker.register()
    for round_ in range(ROUNDS):
        with Connection(local_broker.url_for(tmp_path / f"broker-{round_}.db")) as connection:
            queue = connection.SimpleQueue("celery")
            assert len(queue) == PROCESSES  # one message from each, none lost
            queue.close()
