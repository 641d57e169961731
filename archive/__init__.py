"""Campaign archives: the folder (store), its file formats, one-file exports and reading them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ilcampaign.archive.reader import Campaign


def open(path: Any, **options: Any) -> Campaign:
    """The campaign at ``path`` (work directory, archive folder or export file); see ilcampaign.archive.reader.open_campaign."""
    from ilcampaign.archive.reader import open_campaign

    return open_campaign(path, **options)
