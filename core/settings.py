"""The one settings object, read from the environment (and an optional `.env` file).

Defaults work on a laptop with nothing but Redis running: results in a SQLite file under `DATA_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


CELERY_HEARTBEAT_S = 2.0  # how often a Celery worker sends its heartbeat event (Celery's default)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Where trained demo models, the worker's model cache and the default SQLite database live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the results database; empty means sqlite:///DATA_DIR/results.db.",
    )
    celery_broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker (Redis) URL.")
    worker_concurrency: int = Field(default=0, description="Worker processes per worker; 0 means one per core.")
    tf_threads: int = Field(
        default=0, description="TensorFlow CPU threads per worker process; 0 means cores / worker processes."
    )
    visibility_timeout_s: int = Field(
        default=3600,
        description="Redis visibility timeout: an unacknowledged task is redelivered after this long.",
    )
    task_soft_time_limit_s: int = Field(default=600, description="Per-image soft time limit (stored as failed).")
    task_time_limit_s: int = Field(default=660, description="Per-image hard time limit (the process is killed).")
    sweep_interval_s: int = Field(
        default=60,
        description="How often a worker looks for images whose task the broker lost, once its queue is empty.",
    )
    lost_worker_after_s: int = Field(
        default=120,
        description="A worker that sent no heartbeat for this long is lost: the tasks it held are sent again.",
    )
    database_retry_max_s: int = Field(
        default=60, ge=1,
        description="While the database is unreachable a task tries again after 2 s, doubling up to this (12 tries).",
    )
    max_attempts: int = Field(
        default=3, description="Deliveries of one image before it is stored as failed (poison images end here)."
    )
    max_queued: int = Field(
        default=1000, ge=1,
        description="The most image tasks waiting in the broker at once (the window); the rest of a job waits in the "
        "database. At least a few seconds of the fleet's throughput: 1000 is 10 s of 100 processes at 1 image/s.",
    )
    feed_interval_s: float = Field(
        default=1.0, gt=0, description="How often a worker tops the broker's queue up to MAX_QUEUED from the database."
    )
    broker_ca_certs: str = Field(
        default="",
        description="rediss:// brokers: the CA certificate file the broker's certificate must be signed by (empty: the "
        "system's trusted CAs). The certificate and the host name are always checked.",
    )
    broker_certfile: str = Field(default="", description="rediss:// brokers: this client's certificate, if asked for.")
    broker_keyfile: str = Field(default="", description="rediss:// brokers: this client's private key, if asked for.")

    @model_validator(mode="after")
    def _limits_below_the_visibility_timeout(self) -> "Settings":
        if not self.task_soft_time_limit_s < self.task_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "time limits must satisfy TASK_SOFT_TIME_LIMIT_S < TASK_TIME_LIMIT_S < VISIBILITY_TIMEOUT_S, "
                "otherwise Redis redelivers a task that is still running"
            )
        if self.lost_worker_after_s < 3 * CELERY_HEARTBEAT_S:
            raise ValueError(
                f"LOST_WORKER_AFTER_S must be at least {3 * CELERY_HEARTBEAT_S:g} s (three of Celery's heartbeats), "
                "or a worker that is only busy would be taken for lost"
            )
        return self

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    @property
    def openvino_cache_dir(self) -> Path:
        """Models converted to OpenVINO, one folder per model file and contract (models.runtimes)."""
        return self.model_cache_dir / "openvino"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'results.db').resolve()}"

    def worker_processes(self) -> int:
        return self.worker_concurrency or cpu_count()

    def threads_per_process(self) -> int:
        return self.tf_threads or max(1, cpu_count() // self.worker_processes())


def is_redis_url(url: str) -> bool:
    """Whether a broker URL names Redis (the embedded broker of `producer local` does not)."""
    return url.split("://", 1)[0] in ("redis", "rediss")


def redis_tls(url: str) -> dict:
    """For a rediss:// URL, the TLS options of every Redis client (Celery's, the sweeper's): the broker's certificate
    is checked against BROKER_CA_CERTS (or the system's CAs), and its host name too. Empty for redis:// URLs."""
    if not url.startswith("rediss://"):
        return {}
    import ssl

    options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if settings.broker_ca_certs:
        options["ssl_ca_certs"] = settings.broker_ca_certs
    if settings.broker_certfile:
        options["ssl_certfile"] = settings.broker_certfile
    if settings.broker_keyfile:
        options["ssl_keyfile"] = settings.broker_keyfile
    return options


def redis_client(url: str, **options):
    """A redis-py client for the broker URL, with its TLS options."""
    import redis

    return redis.Redis.from_url(url, **redis_tls(url), **options)


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0))


settings = Settings()


def reload_settings() -> Settings:
    """Read the environment into the one settings object again, in place (modules hold references to it). Every
    command line does this as it starts, so that a command run in-process (typer's CliRunner, in the tests) sees
    the environment it was given."""
    settings.__init__()
    return settings
