"""machine links: hosts of different sources that are one machine

Revision ID: 0005_machines
Revises: 0004_stale_details
Create Date: 2026-11-24

Derived from the hosts table (inventory/machine_links.py recomputes it at each sync); a
database upgraded to this revision has it filled by its next sync.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_machines"
down_revision = "0004_stale_details"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "machine_links",
        sa.Column("host_id", _ID, nullable=False),
        sa.Column("other_id", _ID, nullable=False),
        sa.Column("rule", sa.String(length=30), nullable=False),
        sa.Column("machine_id", _ID, nullable=False),
        sa.PrimaryKeyConstraint("host_id", "other_id", name=op.f("pk_machine_links")),
    )
    with op.batch_alter_table("machine_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_machine_links_machine_id"), ["machine_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("machine_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machine_links_machine_id"))
    op.drop_table("machine_links")
