"""PostgreSQL: paths of any length stay unique. A btree index entry holds at most 2704 bytes, and a
path may have 4095 (more once non-UTF-8 bytes are stored as 4-byte characters, catalog/paths.py),
so on PostgreSQL the unique constraints on roots.path and photos.path become exclusion constraints
over hash indexes (any length, exact, and what equality and IN lookups use). SQLite: nothing to do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("roots", "photos")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.drop_constraint(f"{table}_path_key", table, type_="unique")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_path_key EXCLUDE USING hash (path WITH =)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.drop_constraint(f"{table}_path_key", table)
        op.create_unique_constraint(f"{table}_path_key", table, ["path"])
