"""Step kinds, one module each, named as in the spec; importing this fills the registry."""

from engine.steps import (  # noqa: F401
    conformers,
    d3,
    dataset,
    geometry_optimisation,
    initial_data,
    initial_pool,
    label,
    md,
    molecules,
    pack,
    select,
    train,
    volume_scan,
)
