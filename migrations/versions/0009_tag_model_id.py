"""One name per idea, continued: tags.model (the model whose zero-shot scores a tag came from) is
renamed model_id, as photos.model_id in 0008. On SQLite an ALTER TABLE ... RENAME COLUMN (3.25+),
which also renames the column inside the unique constraint; PostgreSQL likewise.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tags", recreate="never") as batch:
        batch.alter_column("model", new_column_name="model_id")


def downgrade() -> None:
    with op.batch_alter_table("tags", recreate="never") as batch:
        batch.alter_column("model_id", new_column_name="model")
