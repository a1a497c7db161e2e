"""The one settings object, read from the environment (and an optional `.env` file).

Defaults work on a laptop with nothing running: results in a SQLite file under `DATA_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Where trained demo models and the embedded SQLite database live.",
    )
    tf_threads: int = Field(
        default=0,
        description="TensorFlow CPU threads per process; 0 means cores / worker processes.",
    )

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0))


settings = Settings()
