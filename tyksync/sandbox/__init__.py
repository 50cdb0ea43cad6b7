"""The sandbox: an emulated Tyk Dashboard (classic portal API) over real HTTP.

`Sandbox` is the server, `embedded_sandbox` the plumbing behind `--sandbox`, `Faults` the
misbehaviour it can inject. The `sandbox serve` command is in `tyksync.sandbox.cli` (not
imported here, so that `python -m tyksync.sandbox.cli` runs cleanly).
"""

from tyksync.sandbox.faults import Faults
from tyksync.sandbox.seed import SeedError, load_seed
from tyksync.sandbox.server import Sandbox, embedded_sandbox
from tyksync.sandbox.store import (
    CANARY_PREFIX,
    SandboxError,
    StateFileError,
    Store,
    StoreError,
    key_id_of,
)
from tyksync.sandbox.wire import DIALECTS, Dialect

__all__ = [
    "CANARY_PREFIX",
    "DIALECTS",
    "Dialect",
    "Faults",
    "Sandbox",
    "SandboxError",
    "SeedError",
    "StateFileError",
    "Store",
    "StoreError",
    "embedded_sandbox",
    "key_id_of",
    "load_seed",
]
