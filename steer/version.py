"""The library version, written into every artifact's provenance."""

__version__ = "0.3.1"
