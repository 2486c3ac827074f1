"""Captions: where a photo's caption came from, and the sidecar files' mtime to notice edits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("caption_source", sa.String(16)))
        batch.add_column(sa.Column("sidecar_mtime", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("sidecar_mtime")
        batch.drop_column("caption_source")
