"""what produced each version, and what it is estimated to need in memory

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions stored before this migration have no recorded producer ({}) and no estimate
    # (NULL): they load as before, and admission counts them by their weights' size.
    op.add_column("versions", sa.Column("provenance", sa.JSON, nullable=False,
                                        server_default="{}"))
    op.add_column("versions", sa.Column("memory_estimate", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("memory_estimate")
        batch.drop_column("provenance")
