"""docker-compose.yml, proven without a Docker engine: the Compose specification's schema, the
security of what it publishes, and every service's command and environment run on this machine
against local Redis and PostgreSQL (service host names mapped to 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.services import REPO, postgres_database, spare_port
from tests.waiting import wait_until
from tests.deploy import compose


def test_the_compose_file_follows_the_compose_specification():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(compose.COMPOSE_FILE)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_flower_is_published_and_secrets_come_from_the_environment():
    services = compose.load()["services"]
    assert set(services) == {"redis", "postgres", "pgbouncer", "migrate", "trainer", "worker", "worker-gpu", "flower",
                             "producer"}
    # the GPU worker starts only when asked for (`--profile gpu`), with the GPU reserved and TensorFlow's CUDA in its image
    gpu = compose.service("worker-gpu", {name: "x" for name in compose.secret_variables()})
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"] == {"EXTRAS": "gpu"}
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["command"] == services["worker"]["command"] and gpu["environment"]["WORKER_CONCURRENCY"] == "1"
    assert [name for name, s in services.items() if "ports" in s] == ["flower"]
    redis_command = services["redis"]["command"]
    assert "--requirepass" in redis_command and redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert compose.secret_variables() >= {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "FLOWER_PASSWORD"}
    example = compose.env_example()
    assert compose.variables_used() <= set(example)  # .env.example names every variable
    assert all(example[name] == "" for name in compose.secret_variables())  # and commits no secret
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert "service_healthy" in str(services["migrate"]["depends_on"])
    pooled = compose.service("worker", {name: "x" for name in compose.secret_variables()})["environment"]
    assert "@pgbouncer:6432/" in pooled["DATABASE_URL"]  # workers share PgBouncer's few server connections
    assert "@postgres:5432/" in compose.service("migrate", {name: "x" for name in compose.secret_variables()})[
        "environment"]["DATABASE_URL"]
    assert "healthcheck" in services["postgres"] and "volumes" in services["postgres"]
    built = [name for name, s in services.items() if "build" in s]
    assert built and all(services[name].get("pull_policy") == "build" for name in built)  # never pulled
    flower = compose.service("flower", {name: "x" for name in compose.secret_variables()})
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # Flower's plain HTTP stays on this machine by default


def test_every_service_command_runs_here(tmp_path, rectangles_model):
    redis_port = spare_port()
    with postgres_database("limebatch_compose") as database_url:
        database = database_url.rsplit("/", 1)[1]
        variables = {
            "REDIS_PASSWORD": "redis-secret", "POSTGRES_PASSWORD": "unused-with-trust-auth",
            "POSTGRES_USER": "postgres", "POSTGRES_DB": database, "FLOWER_PASSWORD": "flower-secret",
        }
        bouncer_port = spare_port()
        hosts = {"postgres:5432": "127.0.0.1:5432", "redis:6379": f"127.0.0.1:{redis_port}",
                 "pgbouncer:6432": f"127.0.0.1:{bouncer_port}"}
        data = tmp_path / "data"

        def env_of(name: str) -> dict[str, str]:
            spec = compose.service(name, variables)
            # the image's `python` and `celery` are this virtual environment's here
            path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
            return {**os.environ, "PATH": path, **compose.localise(spec.get("environment", {}), hosts, data)}

        def command_of(name: str) -> tuple[list[str], dict[str, str]]:
            env = env_of(name)
            command = compose.service(name, variables)["command"]
            return [shutil.which(command[0], path=env["PATH"]), *command[1:]], env

        def run(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
            command, env = command_of(name)
            command = [*command, *extra]
            result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
            return result

        def start(name: str) -> subprocess.Popen:
            command, env = command_of(name)
            log = open(tmp_path / f"{name}.log", "wb")
            return subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        # redis: the compose command itself, on a spare port, with its password and append-only file
        redis_spec = compose.service("redis", variables)
        redis_server = subprocess.Popen(
            [*redis_spec["command"], "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        processes = [redis_server]
        try:
            ping = redis_spec["healthcheck"]["test"][1:]
            healthy = lambda: subprocess.run(  # noqa: E731
                [ping[0], "-p", str(redis_port), *ping[1:]], env={**os.environ, **redis_spec["environment"]},
                capture_output=True, text=True,
            ).stdout.strip() == "PONG"
            wait_until(healthy, "redis healthcheck")
            postgres_check = compose.service("postgres", variables)["healthcheck"]["test"][1:]
            assert subprocess.run([*postgres_check, "-h", "127.0.0.1"]).returncode == 0

            # pgbouncer: compose's script, as the image's user (it refuses root), in front of the local PostgreSQL
            command, env = command_of("pgbouncer")
            as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            processes.append(subprocess.Popen(
                [*as_user, "env", f"PATH={env['PATH']}:/usr/sbin", *(f"{k}={v}" for k, v in env.items() if k != "PATH"),
                 f"PGBOUNCER_PORT={bouncer_port}", *command],
                cwd=REPO, stdout=open(tmp_path / "pgbouncer.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            ))
            check = compose.service("pgbouncer", variables)["healthcheck"]["test"][1:]
            wait_until(lambda: subprocess.run([*check[:-1], check[-1].replace("6432", str(bouncer_port))],
                                              env=env).returncode == 0, "pgbouncer healthcheck")

            run("migrate")
            (data / "models").mkdir(parents=True)  # trainer: a model already in the volume is kept
            shutil.copy(rectangles_model, data / "models" / "rectangles.keras")
            shutil.copy(rectangles_model.with_suffix(".json"), data / "models" / "rectangles.json")
            assert "already there" in run("trainer").stdout

            # Flower first (it waits for Redis alone), the worker second: Flower's list shows it, without ?refresh
            processes.append(flower := start("flower"))
            auth = ("admin", "flower-secret")
            wait_until(lambda: _get("http://127.0.0.1:5555/api/workers", auth) == 200, "flower")
            processes.append(start("worker"))
            wait_until(lambda: requests.get("http://127.0.0.1:5555/api/workers", auth=auth, timeout=10).json(),
                       "the worker in Flower's list", timeout=120)

            # compose's producer command as written, on the first 40 images of the demo set at 500 samples: the wiring
            # is the point here, and all 400 at the default settings take minutes (../shared/compose-real runs them)
            summary = run("producer", "--limit", "40", "--num-samples", "500").stdout
            assert "accuracy" in summary and "misclassified" in summary
            # Flower takes the task events as they come: wait for the last of them, do not assume they are all in
            wait_until(lambda: len(requests.get("http://127.0.0.1:5555/api/tasks", auth=auth, timeout=10).json()) >= 40,
                       "the run's 40 tasks in Flower", timeout=60)
            assert _get("http://127.0.0.1:5555/api/tasks", None) == 401
            assert flower.poll() is None
        finally:
            for process in reversed(processes):
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _get(url: str, auth) -> int:
    return requests.get(url, auth=auth, timeout=10).status_code
