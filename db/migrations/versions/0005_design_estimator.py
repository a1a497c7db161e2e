"""runs made before the design and estimator settings keep the ones they were explained with

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:00:00

The explanation settings gained `design` (how masks are drawn) and `estimator` (how the surrogate is fitted); the
new defaults are `hadamard` and `adjusted`. Every run made before drew lime's independent masks and used lime's fit:
its params say so now, so that resuming it, or reading what it was explained with, stays true. Data only: params is
a JSON column.
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BEFORE = {'design': 'independent', 'estimator': 'lime'}


def upgrade() -> None:
    connection = op.get_bind()
    runs = sa.table('runs', sa.column('id', sa.Integer), sa.column('params', sa.JSON))
    for run_id, params in connection.execute(sa.select(runs.c.id, runs.c.params)).all():
        params = json.loads(params) if isinstance(params, str) else dict(params or {})
        if any(key not in params for key in BEFORE):
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(params={**BEFORE, **params}))


def downgrade() -> None:
    pass  # the keys are harmless to older code, which never reads them
