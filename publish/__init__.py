"""Depositing a campaign in a Dataverse repository (e.g. DaRUS, https://darus.uni-stuttgart.de).

``metadata`` builds the dataset's metadata from the archive's manifest, ``dataverse`` is a small
client for the Dataverse native API, and ``deposit.publish`` exports the campaign and uploads it,
resumably. This package reads archives only (never the engine or the spec loader).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ilcampaign.publish.deposit import Deposit


def publish(*args: Any, **kwargs: Any) -> Deposit:
    """Export the campaign and deposit it in a Dataverse collection; see ilcampaign.publish.deposit.publish."""
    from ilcampaign.publish.deposit import publish as _publish

    return _publish(*args, **kwargs)
