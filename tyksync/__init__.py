"""tyksync: keep a Tyk Dashboard's portal key requests in line with YAML manifests."""

__version__ = "0.1.0"
