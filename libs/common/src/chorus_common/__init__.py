"""CHORUS shared core: each submodule is imported by name (``from chorus_common import tracing``)."""

# nothing is re-exported here: a submodule imported from the package needs no entry
__all__: list[str] = []
