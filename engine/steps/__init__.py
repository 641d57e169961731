"""Step kinds, one module each, named as in the spec; importing this fills the registry."""

from ilcampaign.engine.steps import (  # noqa: F401
    conformers,
    d3,
    dataset,
    density,
    diffusion,
    dihedrals,
    geometry_optimisation,
    inference_cost,
    initial_data,
    initial_pool,
    label,
    md,
    model_errors,
    molecules,
    pack,
    production,
    rdf,
    select,
    train,
    volume_scan,
)
