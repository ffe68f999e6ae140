"""canned replies per inbox; the widget's greeting and reply-time line (issue 20)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("inboxes", sa.Column("greeting", sa.Text(), nullable=True))
    op.add_column("inboxes", sa.Column("reply_time", sa.String(length=200), nullable=True))
    op.create_table(
        "canned_replies",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("inbox_id", Id, nullable=False),
        sa.Column("shortcut", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["inbox_id"], ["inboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbox_id", "shortcut", name="uq_canned_replies_inbox_shortcut"),
    )


def downgrade() -> None:
    op.drop_table("canned_replies")
    with op.batch_alter_table("inboxes") as batch:
        batch.drop_column("reply_time")
        batch.drop_column("greeting")
