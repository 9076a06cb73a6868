"""demands keep what was read from their text; one match per asset; buyers read their feed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Demands stored before this revision are read again when they are next matched ({}).
    op.add_column(
        "demands",
        sa.Column(
            "reading",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        schema="matching",
    )
    # One match per asset (a right offered on three exchanges was three matches): the best
    # offer's row is kept, ties to the smaller listing id, as the matcher chooses.
    op.execute(
        """
        DELETE FROM matching.matches AS m USING matching.matches AS n
        WHERE m.demand_id = n.demand_id AND m.asset_id = n.asset_id
          AND (m.score < n.score OR (m.score = n.score AND m.listing_id > n.listing_id))
        """
    )
    op.drop_constraint(
        "matches_demand_id_listing_id_key", "matches", schema="matching", type_="unique"
    )
    op.create_unique_constraint(
        "matches_demand_id_asset_id_key", "matches", ["demand_id", "asset_id"], schema="matching"
    )
    # Match events carry the listing as the catalogue shows it (shared/contracts/search.py
    # SearchHit): the summary older events carried lacks some of its fields; they are added
    # empty (it was searchable when it was matched).
    op.execute(
        """
        UPDATE matching.match_events
        SET payload = jsonb_set(
            payload,
            '{listing}',
            '{"publication_number": null, "abstract": {"zh": null, "en": null},
              "holders": [], "ipc": [], "legal_status": null, "status": "published",
              "score": null, "highlight": {}, "offers": []}'::jsonb || (payload -> 'listing')
        )
        WHERE payload ? 'listing' AND NOT (payload -> 'listing') ? 'holders'
        """
    )
    # A buyer's match feed: its organisation's events in cursor order.
    op.create_index(
        "ix_matching_match_events_org_xid_seq",
        "match_events",
        ["organization_id", "xid", "seq"],
        schema="matching",
    )


def downgrade() -> None:
    op.drop_constraint(
        "matches_demand_id_asset_id_key", "matches", schema="matching", type_="unique"
    )
    op.create_unique_constraint(
        "matches_demand_id_listing_id_key",
        "matches",
        ["demand_id", "listing_id"],
        schema="matching",
    )
    op.drop_index("ix_matching_match_events_org_xid_seq", "match_events", schema="matching")
    op.drop_column("demands", "reading", schema="matching")
