"""payload_pending: points whose store payload an unfinished operation (tagging, a root's relocation,
forgetting photos) may have left out of step with the catalog; the next writer rewrites them. And an
index on photos.missing_since: every search asks which photos are pending removal (hidden).

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
        sa.Column("token", sa.String(32), primary_key=True),
    )
    op.create_index("ix_photos_missing_since", "photos", ["missing_since"])


def downgrade() -> None:
    op.drop_index("ix_photos_missing_since", "photos")
    op.drop_table("payload_pending")
