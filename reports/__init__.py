"""Reports and paper figures, rebuilt from the archive alone (built in a later issue)."""
