"""models, versions and aliases

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("next_version", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("architecture_sha256", sa.String(64), nullable=False),
        sa.Column("architecture_size", sa.BigInteger, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("weights_size", sa.BigInteger, nullable=False),
        sa.Column("weights_format", sa.String(32), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("layer_classes", sa.JSON, nullable=False),
        sa.Column("custom_objects", sa.JSON, nullable=False),
        sa.Column("keras_version", sa.String(32), nullable=False),
        sa.Column("tensorflow_version", sa.String(32), nullable=False),
        sa.Column("parameter_count", sa.BigInteger, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_id", "version"),
    )
    op.create_index("ix_versions_model_id", "versions", ["model_id"])
    op.create_index("ix_versions_architecture_sha256", "versions", ["architecture_sha256"])
    op.create_index("ix_versions_weights_sha256", "versions", ["weights_sha256"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("model_id", "alias"),
    )
    op.create_index("ix_aliases_model_id", "aliases", ["model_id"])


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_table("versions")
    op.drop_table("models")
