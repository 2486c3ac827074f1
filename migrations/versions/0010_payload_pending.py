"""payload_pending: points whose store payload an unfinished operation (tagging, a root's relocation,
forgetting photos) may have left out of step with the catalog; the next writer rewrites them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payload_pending",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("model_id", sa.String(512), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("payload_pending")
