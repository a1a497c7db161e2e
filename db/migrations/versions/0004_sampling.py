"""how each explanation's samples were drawn

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 05:00:00

With `--num-samples auto` every image may use a different number of samples: each explanation records the samples
it used, the distinct masks the model predicted for them, and why sampling stopped ("fixed", "settled",
"cap"). Rows made before stay empty there (their run's params give the fixed count).
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('explanations', sa.Column('samples_used', sa.Integer(), nullable=True))
    op.add_column('explanations', sa.Column('model_calls', sa.Integer(), nullable=True))
    op.add_column('explanations', sa.Column('sampling_stop', sa.String(length=16), nullable=True))


def downgrade() -> None:
    for column in ('sampling_stop', 'model_calls', 'samples_used'):
        op.drop_column('explanations', column)
