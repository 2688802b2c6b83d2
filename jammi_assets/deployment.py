"""Which Dagster instance (dagster.yaml) a deployment uses, and checks of the deployment files
that need no cluster, broker or database.

$DAGSTER_DEPLOYMENT picks the instance once: `local` (default) is the project root's
dagster.yaml (SQLite under .dagster/), `production` is deploy/production/dagster.yaml
(PostgreSQL storage, queued runs, run retries). The Makefile sets DAGSTER_HOME from it;
outside make, set DAGSTER_HOME to the folder `python -m jammi_assets.deployment home` prints.

    python -m jammi_assets.deployment home                 # the DAGSTER_HOME of $DAGSTER_DEPLOYMENT
    python -m jammi_assets.deployment check [DIR ...]      # validate instance folders (default: deploy/*)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import yaml

from jammi.errors import ConfigError
from jammi_assets.dagster_private import (
    convert_dagster_submodule_name,
    dagster_instance_config,
    validate_config,
)

DEPLOYMENT_ENV = "DAGSTER_DEPLOYMENT"
REPO = Path(__file__).resolve().parents[1]
DEPLOY_DIR = REPO / "deploy"
HOMES = {"local": REPO, "production": DEPLOY_DIR / "production"}
K8S_HOME = DEPLOY_DIR / "k8s"


def deployment_home(environ: Mapping[str, str] | None = None) -> Path:
    """The DAGSTER_HOME of $DAGSTER_DEPLOYMENT (`local` when unset)."""
    environ = os.environ if environ is None else environ
    name = (environ.get(DEPLOYMENT_ENV) or "local").strip().lower()
    if name not in HOMES:
        raise ConfigError(f"${DEPLOYMENT_ENV}={name!r}: expected one of {', '.join(HOMES)}")
    return HOMES[name]


def select_instance(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Point DAGSTER_HOME at $DAGSTER_DEPLOYMENT's instance when a deployment is named and
    DAGSTER_HOME is not set (an explicit DAGSTER_HOME wins). Returns the home it set, if any."""
    environ = os.environ if environ is None else environ
    if environ.get("DAGSTER_HOME") or not environ.get(DEPLOYMENT_ENV):
        return None
    home = deployment_home(environ)
    environ["DAGSTER_HOME"] = str(home)
    return home


def _class_config_problems(section: str, data: Mapping) -> list[str]:
    """A `{module, class, config}` block: the class imports and its config fits its schema
    (checked without constructing it, so a K8sRunLauncher needs no cluster)."""
    module = convert_dagster_submodule_name(data["module"], "private")  # dagster.core -> dagster._core
    try:
        cls = getattr(importlib.import_module(module), data["class"])
    except (ImportError, AttributeError) as exc:
        return [f"{section}: cannot load {data['module']}.{data['class']} ({exc})"]
    config_type = getattr(cls, "config_type", None)
    if config_type is None:
        return []
    result = validate_config(config_type(), data.get("config") or {})
    return [] if result.success else [f"{section}.config: {e.message}" for e in result.errors]


def check_instance(home: Path) -> list[str]:
    """Problems of `home`/dagster.yaml: Dagster's instance schema (the same check the instance
    runs at start-up) and every pluggable class's own config schema. Empty when it is valid."""
    path = home / "dagster.yaml"
    if not path.is_file():
        return [f"{path}: not found"]
    try:
        dagster_instance_config(str(home))
    except Exception as exc:  # DagsterInvalidConfigError and friends: report, don't raise
        return [f"{path}: {exc}"]
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = []
    for section, value in doc.items():
        if isinstance(value, Mapping) and {"module", "class"} <= set(value):
            problems += [f"{path}: {p}" for p in _class_config_problems(section, value)]
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["home"]:
        print(deployment_home())
        return 0
    if argv[:1] == ["check"]:
        homes = [Path(a) for a in argv[1:]] or [HOMES["production"], K8S_HOME]
        failed = False
        for home in homes:
            problems = check_instance(home)
            failed |= bool(problems)
            print("\n".join(problems) if problems else f"{home / 'dagster.yaml'}: valid")
        return 1 if failed else 0
    print(__doc__.strip().splitlines()[-2:][0].strip(), file=sys.stderr)
    print("usage: python -m jammi_assets.deployment home | check [DIR ...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
