"""A module that cannot be imported: the service-start tests' broken entry."""

raise RuntimeError("broken at import")
