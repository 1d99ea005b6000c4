"""who made each write: versions.created_by and the writes log

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions stored before this migration were made by someone unrecorded: "".
    op.add_column("versions", sa.Column("created_by", sa.String(160), nullable=False,
                                        server_default=""))
    op.create_table(
        "writes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("alias", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(160), nullable=False),
    )
    op.create_index("ix_writes_model", "writes", ["model"])


def downgrade() -> None:
    op.drop_index("ix_writes_model", table_name="writes")
    op.drop_table("writes")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("created_by")
