"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 22:37:35.442356

Tables for runs, images, explanations and segment weights, and the two views users query:
`misclassifications` and `confusion` (plain SQL, the same in SQLite and PostgreSQL).
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

MISCLASSIFICATIONS = """
CREATE VIEW misclassifications AS
SELECT e.run_id, e.image_id, i.source,
       t.name AS true_label, p.name AS predicted_label,
       e.confidence, e.score, e.deletion_auc
FROM explanations e
JOIN images i ON i.id = e.image_id
JOIN run_classes t ON t.run_id = e.run_id AND t.label = e.true_label
JOIN run_classes p ON p.run_id = e.run_id AND p.label = e.predicted_label
WHERE e.status = 'ok' AND e.predicted_label <> e.true_label
"""

CONFUSION = """
CREATE VIEW confusion AS
SELECT e.run_id, t.name AS true_label, p.name AS predicted_label, COUNT(*) AS n
FROM explanations e
JOIN run_classes t ON t.run_id = e.run_id AND t.label = e.true_label
JOIN run_classes p ON p.run_id = e.run_id AND p.label = e.predicted_label
WHERE e.status = 'ok'
GROUP BY e.run_id, t.name, p.name
"""


def upgrade() -> None:
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('true_label', sa.String(length=200), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('channels', sa.Integer(), nullable=False),
    sa.Column('png', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_table('model_files',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('model_path', sa.Text(), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('class_names', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_sha256'], ['model_files.sha256'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('explanations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('predicted_label', sa.Integer(), nullable=True),
    sa.Column('true_label', sa.Integer(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('probabilities', sa.JSON(), nullable=True),
    sa.Column('correct', sa.Boolean(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('deletion_auc', sa.Float(), nullable=True),
    sa.Column('n_segments', sa.Integer(), nullable=True),
    sa.Column('segments', sa.LargeBinary(), nullable=True),
    sa.Column('timings', sa.JSON(), nullable=True),
    sa.Column('worker_host', sa.String(length=255), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'image_id', name='uq_explanations_run_image')
    )
    op.create_table('run_classes',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'label')
    )
    op.create_table('run_images',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('true_label', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'image_id')
    )
    op.create_table('segment_weights',
    sa.Column('explanation_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('segment', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('area', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['explanation_id'], ['explanations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('explanation_id', 'label', 'segment')
    )
    op.create_index('ix_explanations_run_status', 'explanations', ['run_id', 'status'])
    op.execute(MISCLASSIFICATIONS)
    op.execute(CONFUSION)


def downgrade() -> None:
    op.execute("DROP VIEW confusion")
    op.execute("DROP VIEW misclassifications")
    op.drop_index('ix_explanations_run_status', 'explanations')
    op.drop_table('segment_weights')
    op.drop_table('run_images')
    op.drop_table('run_classes')
    op.drop_table('explanations')
    op.drop_table('runs')
    op.drop_table('model_files')
    op.drop_table('images')
