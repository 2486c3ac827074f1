"""One name per idea: photos.indexed_model (the model whose collection holds the photo's vector) is
renamed model_id, the name the rest of photoman gives a model's identity (model_state, encoders, the
store's collection names). Data and type unchanged; on SQLite an ALTER TABLE ... RENAME COLUMN (3.25+),
not a copy of the whole table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos", recreate="never") as batch:
        batch.alter_column("indexed_model", new_column_name="model_id")


def downgrade() -> None:
    with op.batch_alter_table("photos", recreate="never") as batch:
        batch.alter_column("model_id", new_column_name="indexed_model")
