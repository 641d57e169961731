"""``analyses``: what is computed from the production runs and the trained models, each a named
entry picked by ``kind:`` (one step each), compared with ``references`` where given. A new
analysis is a module here whose settings class ``ANALYSES.register`` decorates, a step module of
the same kind in ``engine/steps/`` and, if it is drawn, one figure function in reports/figures.py
(docs/development/extending.md)."""

from ilcampaign.campaign.spec.registry import ANALYSES

ANALYSES.discover(__name__, __path__)

Analysis = ANALYSES.union()
