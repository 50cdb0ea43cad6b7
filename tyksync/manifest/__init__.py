"""Manifests: strict YAML loading, the format's models, resolution against live state.

This package is the only code in tyksync that reads YAML.

    manifests = load_manifests(paths)      # offline checks; raises ManifestError
    desired = resolve(manifests, live)     # online checks; raises ManifestError
"""

from tyksync.manifest.dump import dump_manifest
from tyksync.manifest.environments import (
    check_environment_names,
    check_no_environments,
    for_environment,
)
from tyksync.manifest.loader import (
    DeclaredDeveloper,
    DeclaredRequest,
    ManifestFile,
    Manifests,
    load_manifests,
)
from tyksync.manifest.model import Defaults, ManifestDoc, RequestDecl
from tyksync.manifest.resolve import resolve
from tyksync.manifest.schema import manifest_json_schema

__all__ = [
    "DeclaredDeveloper",
    "DeclaredRequest",
    "Defaults",
    "ManifestDoc",
    "ManifestFile",
    "Manifests",
    "RequestDecl",
    "check_environment_names",
    "check_no_environments",
    "dump_manifest",
    "for_environment",
    "load_manifests",
    "manifest_json_schema",
    "resolve",
]
