"""payload_pending.caption: a caption edit's record, whose replay re-embeds the point's caption vector
from the catalog's caption as well as rewriting its payload.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "payload_pending", sa.Column("caption", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("payload_pending") as batch:
        batch.drop_column("caption")
