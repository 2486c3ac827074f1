"""Offline roots and mass deletions: each root's device and mount point when last seen online, and
rows kept (pending removal) when a scan finds too many files gone at once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("roots") as batch:
        batch.add_column(sa.Column("device", sa.BigInteger))
        batch.add_column(sa.Column("mount", sa.String(4096)))
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("missing_since", sa.DateTime))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("missing_since")
    with op.batch_alter_table("roots") as batch:
        batch.drop_column("mount")
        batch.drop_column("device")
