"""the window, counted results, images by reference

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00

Runs get `next_position` (images below it have been sent to the broker: the rest wait in the database),
`finished_count` (finished images, counted at each save: no count over the run per image); images get `path`
(stored by reference, their PNG left empty); explanations may be "queued" (sent, not
yet claimed), and the unfinished ones of a run are found through a partial index. Runs made before had every task
sent: their cursor is at the end, and their finished images are counted once here.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UNFINISHED_ROWS = sa.text("status NOT IN ('ok', 'failed')")


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy of a table (on SQLite a copy of `runs` would cascade to its explanations).
    op.add_column('runs', sa.Column('next_position', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('runs', sa.Column('finished_count', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('images', sa.Column('path', sa.Text(), nullable=True))
    op.create_index('ix_run_images_position', 'run_images', ['run_id', 'position'], unique=True)
    op.create_index('ix_explanations_unfinished', 'explanations', ['run_id', 'updated_at'],
                    sqlite_where=UNFINISHED_ROWS, postgresql_where=UNFINISHED_ROWS)
    op.execute(
        "UPDATE runs SET next_position = image_count, finished_count = (SELECT count(*) FROM explanations "
        "WHERE explanations.run_id = runs.id AND explanations.status IN ('ok', 'failed'))"
    )


def downgrade() -> None:
    op.drop_index('ix_explanations_unfinished', table_name='explanations')
    op.drop_index('ix_run_images_position', table_name='run_images')
    op.drop_column('images', 'path')
    for column in ('finished_count', 'next_position'):
        op.drop_column('runs', column)
