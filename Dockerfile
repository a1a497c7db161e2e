# One image for every Python service: migrate, trainer, worker, flower, producer.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app

# PgBouncer, for compose's `pgbouncer` service (scripts/pgbouncer.sh): one image for every service
RUN apt-get -o Acquire::Check-Valid-Until=false update \
    && apt-get install -y --no-install-recommends pgbouncer \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change. EXTRAS names optional
# dependencies to add: `gpu` (TensorFlow's CUDA libraries) for compose's GPU worker (docs/deploy.md).
ARG EXTRAS=""
COPY pyproject.toml ./
RUN EXTRAS="$EXTRAS" python -c "import os, tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [name for name in os.environ['EXTRAS'].split(',') if name]; \
print('\n'.join(project['dependencies'] + [d for name in extras for d in project['optional-dependencies'][name]]))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data

USER app
VOLUME ["/data"]
CMD ["python", "-m", "producer", "--help"]
