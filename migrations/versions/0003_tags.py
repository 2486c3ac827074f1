"""Tags: zero-shot (or user) labels per content hash and model, with their scores.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="zeroshot"),
        sa.UniqueConstraint("content_hash", "model", "label", name="uq_tags_hash_model_label"),
    )
    op.create_index("ix_tags_content_hash", "tags", ["content_hash"])
    op.create_index("ix_tags_label", "tags", ["label"])


def downgrade() -> None:
    op.drop_table("tags")
