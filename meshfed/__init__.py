"""meshfed: multi-zone service-mesh federation (shared core)."""

__version__ = "0.1.0"
PRODUCT = "meshfed"
