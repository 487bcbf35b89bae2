"""Checking a workflow configuration against its JSON schema, every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._files import read_yaml_mapping
from .errors import TregAnalysisError

__all__ = ["config_problems"]


def config_problems(config: Mapping[str, Any], schema: str | os.PathLike | Mapping[str, Any]) -> list[str]:
    """Every way ``config`` breaks the schema, as ``key.path: what is wrong`` lines.

    Parameters
    ----------
    config : mapping
        The configuration (``config/config.yaml`` with ``--config`` on top).
    schema : path or mapping
        A JSON schema (YAML or JSON file), e.g. ``workflow/schemas/config.schema.yaml``.

    Returns
    -------
    list of str
        Sorted by key; empty when the configuration is valid. (Snakemake's ``validate`` stops at
        the first problem; a user fixing a config wants them all.)
    """
    import jsonschema

    if not isinstance(schema, Mapping):
        schema = read_yaml_mapping(schema, "JSON schema", TregAnalysisError)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}" for error in errors]
