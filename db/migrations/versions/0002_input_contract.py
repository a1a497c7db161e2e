"""input contract, input check and skipped files of a run

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 01:00:00

Runs keep the model's input contract they were explained with (pixel value range, keras.applications
preprocessing, probabilities or logits), the input check of their first images, and the files that
--skip-bad left out. Runs made before this revision used their model's metadata value range (or 0..1).
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy of the table: on SQLite a copy drops `runs`, and with foreign
    # keys on, dropping it would cascade to every explanation.
    op.add_column('runs', sa.Column('value_range', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('preprocess', sa.String(length=40), nullable=True))
    op.add_column('runs', sa.Column('outputs', sa.String(length=20), nullable=False, server_default='probabilities'))
    op.add_column('runs', sa.Column('contract_notes', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('input_check', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('skipped', sa.JSON(), nullable=True))
    connection = op.get_bind()
    runs = sa.table('runs', sa.column('id', sa.Integer), sa.column('value_range', sa.JSON),
                    sa.column('model_sha256', sa.String))
    models = sa.table('model_files', sa.column('sha256', sa.String), sa.column('metadata', sa.JSON))
    for run_id, metadata in connection.execute(
        sa.select(runs.c.id, models.c.metadata).join(models, models.c.sha256 == runs.c.model_sha256)
    ).all():
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        value_range = (metadata or {}).get('value_range') or [0.0, 1.0]
        connection.execute(sa.update(runs).where(runs.c.id == run_id).values(value_range=value_range))


def downgrade() -> None:
    for column in ('skipped', 'input_check', 'contract_notes', 'outputs', 'preprocess', 'value_range'):
        op.drop_column('runs', column)
