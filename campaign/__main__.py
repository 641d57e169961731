"""``python -m ilcampaign.campaign`` is the ``campaign`` command."""

from ilcampaign.campaign.cli import app

app(prog_name="campaign")
