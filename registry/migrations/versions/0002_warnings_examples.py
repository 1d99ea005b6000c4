"""a version's warnings and golden examples

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions stored before this migration have no warnings and no examples. The JSON
    # default is a constant, which SQLite's ADD COLUMN accepts and PostgreSQL casts.
    op.add_column("versions", sa.Column("warnings", sa.JSON, nullable=False,
                                        server_default=sa.text("'[]'")))
    op.add_column("versions", sa.Column("examples_sha256", sa.String(64), nullable=True))
    op.add_column("versions", sa.Column("examples_size", sa.BigInteger, nullable=True))
    op.create_index("ix_versions_examples_sha256", "versions", ["examples_sha256"])


def downgrade() -> None:
    op.drop_index("ix_versions_examples_sha256", table_name="versions")
    # SQLite cannot drop columns in place everywhere: batch mode copies the table there.
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("examples_size")
        batch.drop_column("examples_sha256")
        batch.drop_column("warnings")
