"""release gates: sends and send stalls in each node's server samples (a P1 gate)

Revision ID: 0010
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("release_server_samples") as batch:
        batch.add_column(sa.Column("sends", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("send_stalls", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("release_server_samples") as batch:
        batch.drop_column("send_stalls")
        batch.drop_column("sends")
