"""the audit: relevance maps, evidence, class maps, strategies

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00

Explanations get `relevance` (their maps on the run's common grid) and, against the user's evidence, `pointing` and
`evidence_share`; images get their evidence once (`image_evidence`); a run's audit keeps its class and confusion maps
and its strategy groups with their members. Two views: `strategies` (each member with its group, image and labels)
and `reasons` (pointing and evidence share per explanation, labels by name).
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

STRATEGIES = """
CREATE VIEW strategies AS
SELECT m.run_id, p.name AS label, m.strategy, g.size AS group_size, g.error_rate AS group_error_rate,
       g.class_error_rate, g.location, g.suspected, m.image_id, i.source, t.name AS true_label,
       p.name AS predicted_label, e.correct, m.distance
FROM strategy_members m
JOIN strategy_groups g ON g.run_id = m.run_id AND g.label = m.label AND g.strategy = m.strategy
JOIN explanations e ON e.run_id = m.run_id AND e.image_id = m.image_id
JOIN images i ON i.id = m.image_id
JOIN run_classes p ON p.run_id = m.run_id AND p.label = m.label
LEFT JOIN run_classes t ON t.run_id = e.run_id AND t.label = e.true_label
"""

REASONS = """
CREATE VIEW reasons AS
SELECT e.run_id, e.image_id, i.source, t.name AS true_label, p.name AS predicted_label, e.correct,
       e.pointing, e.evidence_share
FROM explanations e
JOIN images i ON i.id = e.image_id
JOIN run_classes p ON p.run_id = e.run_id AND p.label = e.predicted_label
LEFT JOIN run_classes t ON t.run_id = e.run_id AND t.label = e.true_label
WHERE e.status = 'ok' AND e.pointing IS NOT NULL
"""


def upgrade() -> None:
    op.add_column('explanations', sa.Column('relevance', sa.LargeBinary(), nullable=True))
    op.add_column('explanations', sa.Column('pointing', sa.Boolean(), nullable=True))
    op.add_column('explanations', sa.Column('evidence_share', sa.Float(), nullable=True))
    op.create_table('image_evidence',
    sa.Column('image_id', sa.Integer(), sa.ForeignKey('images.id', ondelete='CASCADE'), primary_key=True),
    sa.Column('mask', sa.LargeBinary(), nullable=False),
    sa.Column('pixels', sa.Integer(), nullable=False),
    )
    op.create_table('run_audits',
    sa.Column('run_id', sa.Integer(), sa.ForeignKey('runs.id', ondelete='CASCADE'), primary_key=True),
    sa.Column('grid_height', sa.Integer(), nullable=False),
    sa.Column('grid_width', sa.Integer(), nullable=False),
    sa.Column('explanations', sa.Integer(), nullable=False),
    sa.Column('finished_count', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table('class_maps',
    sa.Column('id', sa.Integer(), primary_key=True),
    sa.Column('run_id', sa.Integer(), sa.ForeignKey('runs.id', ondelete='CASCADE'), nullable=False),
    sa.Column('true_label', sa.Integer(), nullable=True),
    sa.Column('predicted_label', sa.Integer(), nullable=False),
    sa.Column('images', sa.Integer(), nullable=False),
    sa.Column('mean_map', sa.LargeBinary(), nullable=False),
    sa.Column('mean_image', sa.LargeBinary(), nullable=True),
    )
    op.create_index('ix_class_maps_run', 'class_maps', ['run_id'])
    op.create_table('strategy_groups',
    sa.Column('run_id', sa.Integer(), sa.ForeignKey('runs.id', ondelete='CASCADE'), primary_key=True),
    sa.Column('label', sa.Integer(), primary_key=True),
    sa.Column('strategy', sa.Integer(), primary_key=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('labelled', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('error_rate', sa.Float(), nullable=True),
    sa.Column('class_error_rate', sa.Float(), nullable=True),
    sa.Column('location', sa.String(40), nullable=False),
    sa.Column('suspected', sa.Boolean(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('mean_map', sa.LargeBinary(), nullable=False),
    )
    op.create_table('strategy_members',
    sa.Column('run_id', sa.Integer(), sa.ForeignKey('runs.id', ondelete='CASCADE'), primary_key=True),
    sa.Column('image_id', sa.Integer(), sa.ForeignKey('images.id'), primary_key=True),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.Integer(), nullable=False),
    sa.Column('distance', sa.Float(), nullable=False),
    )
    op.create_index('ix_strategy_members_group', 'strategy_members', ['run_id', 'label', 'strategy', 'distance'])
    op.execute(STRATEGIES)
    op.execute(REASONS)


def downgrade() -> None:
    op.execute("DROP VIEW reasons")
    op.execute("DROP VIEW strategies")
    op.drop_index('ix_strategy_members_group', table_name='strategy_members')
    op.drop_table('strategy_members')
    op.drop_table('strategy_groups')
    op.drop_index('ix_class_maps_run', table_name='class_maps')
    op.drop_table('class_maps')
    op.drop_table('run_audits')
    op.drop_table('image_evidence')
    for column in ('evidence_share', 'pointing', 'relevance'):
        op.drop_column('explanations', column)
