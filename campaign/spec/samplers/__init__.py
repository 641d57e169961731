"""The samplers of a learning-on-the-fly iteration, one module each, picked by ``kind:`` (or by
their name in ``samplers:``). A new sampler is a module here whose class ``SAMPLERS.register``
decorates, and a step module of the same kind in ``engine/steps/``."""

from ilcampaign.campaign.spec.registry import SAMPLERS

SAMPLERS.discover(__name__, __path__)

Sampler = SAMPLERS.union()
