"""The library's model: the active one (its collection answers queries) and, while a switch runs, the
target being built in the background (indexing/switch.py); plus the `model` setting last acted on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("active_model", sa.String(4096), nullable=False),
        sa.Column("target_model", sa.String(4096)),
        sa.Column("model_setting", sa.String(4096)),
        sa.Column("switch_started", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("model_state")
