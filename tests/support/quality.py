"""Quality numbers as a test reads them: one window's tallies, as GetQualityReport reads its
window (and its baseline) in the service."""

from __future__ import annotations

from datetime import datetime

from humanline.domain.quality import Dimension, Tallies
from humanline.service.quality import rolled_up
from humanline.store.port import UnitOfWork


async def window_tallies(
    uow: UnitOfWork,
    since: datetime,
    until: datetime,
    by: Dimension,
    interaction_type: str | None = None,
) -> tuple[datetime, datetime, Tallies]:
    """The tallies of the handoffs created in [since, until), each end moved up to a bucket
    boundary, and the window they are of."""
    window = rolled_up(uow, since, until, by)
    (found,) = await uow.rollups.tallies([window], by, interaction_type)
    return window.start, window.end, found
