"""faithfulness with a fixed reference, and stability, per explanation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 01:30:00

Every explanation gets an insertion AUC beside its deletion AUC, both measured against one fixed reference
(named in `auc_reference`, so figures of different settings and runs compare), and, when asked for, the
stability of its top superpixels across seeds. Rows made before keep a deletion AUC measured against their own
run's fill; their `auc_reference` is empty. The `misclassifications` view shows the new figures.
Runs' parameters name their fill `hide` ("mean", or a share of the value range) instead of lime's `hide_color`.
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MISCLASSIFICATIONS = """
CREATE VIEW misclassifications AS
SELECT e.run_id, e.image_id, i.source,
       t.name AS true_label, p.name AS predicted_label,
       e.confidence, e.score, e.deletion_auc{extra}
FROM explanations e
JOIN images i ON i.id = e.image_id
JOIN run_classes t ON t.run_id = e.run_id AND t.label = e.true_label
JOIN run_classes p ON p.run_id = e.run_id AND p.label = e.predicted_label
WHERE e.status = 'ok' AND e.predicted_label <> e.true_label
"""


def upgrade() -> None:
    op.add_column('explanations', sa.Column('insertion_auc', sa.Float(), nullable=True))
    op.add_column('explanations', sa.Column('stability', sa.Float(), nullable=True))
    op.add_column('explanations', sa.Column('auc_reference', sa.String(length=200), nullable=True))
    op.execute("DROP VIEW misclassifications")
    op.execute(MISCLASSIFICATIONS.format(extra=", e.insertion_auc, e.stability"))
    rename_fill(lambda params: {
        **{k: v for k, v in params.items() if k != "hide_color"},
        "hide": "mean" if params["hide_color"] is None else f"{params['hide_color']:g}",
    }, "hide_color")


def rename_fill(change, old_key: str) -> None:
    connection = op.get_bind()
    runs = sa.table('runs', sa.column('id', sa.Integer), sa.column('params', sa.JSON))
    for run_id, params in connection.execute(sa.select(runs.c.id, runs.c.params)).all():
        params = json.loads(params) if isinstance(params, str) else params
        if old_key in params:
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(params=change(params)))


def downgrade() -> None:
    rename_fill(lambda params: {
        **{k: v for k, v in params.items() if k not in ("hide", "stability_seeds")},
        "hide_color": None if params["hide"] == "mean" else float({"grey": 0.5, "black": 0.0}.get(params["hide"], params["hide"]))
        if params["hide"] != "blur" else None,
    }, "hide")
    op.execute("DROP VIEW misclassifications")
    op.execute(MISCLASSIFICATIONS.format(extra=""))
    for column in ('auc_reference', 'stability', 'insertion_auc'):
        op.drop_column('explanations', column)
