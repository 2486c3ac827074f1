"""RAW+JPEG pairs: the JPEG's row names the RAW file of the same shot (the RAW has no row of its own;
indexing/pairs.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("raw_path", sa.String(4096)))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("raw_path")
