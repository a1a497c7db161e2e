"""the runtime a run's model is predicted through

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:00:00

A run records the runtime it asked for (`auto`, `keras`, `openvino`; runs from before ran on Keras) and each
explanation the runtime that computed it (empty for rows from before: Keras). Which runtime `auto` chose, and why,
is part of the run's input check (its `runtime` entry).
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('runtime', sa.String(length=20), nullable=False, server_default='keras'))
    op.add_column('explanations', sa.Column('runtime', sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column('explanations', 'runtime')
    op.drop_column('runs', 'runtime')
