"""The executor of the code location's jobs, chosen by $JAMMI_EXECUTOR when the definitions load.

    (unset)       Dagster's default: every step in its own process in `dagster dev` and in
                  launched runs (multiprocess), one process when run config asks for in_process
    in_process    every step in the run worker's process
    multiprocess  a process per step, at most $JAMMI_MAX_CONCURRENT at once (default: CPU count)
    celery        each step is a Celery task on the broker $JAMMI_CELERY_BROKER (default RabbitMQ
                  on localhost, `pyamqp://guest@localhost//`), results on $JAMMI_CELERY_BACKEND
                  (default `rpc://`, or the broker itself for a redis:// broker), on the queue
                  $JAMMI_CELERY_QUEUE (default `dagster`); start workers with `make
                  celery-worker` (dagster-celery worker start, the same variables)
    k8s           each step is a Kubernetes Job (dagster-k8s); the executor config is
                  deploy/k8s/executor.yaml, or $JAMMI_K8S_EXECUTOR_CONFIG (relative to the
                  repository)

The `jammi materialize` CLI runs in one process whatever is chosen here. The executor's config is
checked against its schema when the definitions load, so `dagster definitions validate` reports a
bad deploy/k8s/executor.yaml. dagster-celery and dagster-k8s come with the `production` extra
(`pip install -e '.[production]'`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import yaml

from jammi import keys
from jammi.errors import ConfigError
from jammi.spec.project import Project
from jammi_assets.dagster_private import validate_config

EXECUTOR_ENV = "JAMMI_EXECUTOR"
MAX_CONCURRENT_ENV = "JAMMI_MAX_CONCURRENT"
BROKER_ENV = "JAMMI_CELERY_BROKER"
BACKEND_ENV = "JAMMI_CELERY_BACKEND"
QUEUE_ENV = "JAMMI_CELERY_QUEUE"
K8S_CONFIG_ENV = "JAMMI_K8S_EXECUTOR_CONFIG"

DEFAULT_BROKER = "pyamqp://guest@localhost//"
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"  # dagster-celery's own
REPO = Path(__file__).resolve().parents[1]
DEFAULT_K8S_CONFIG = REPO / "deploy" / "k8s" / "executor.yaml"
EMBEDDING_STEP_KEY = "embedding_step_k8s_config"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


def _checked(executor: dg.ExecutorDefinition, config: Mapping, where: str) -> dg.ExecutorDefinition:
    """`executor` configured with `config`, refused now (not when a run starts) when the config
    does not fit the executor's schema."""
    result = validate_config(executor.config_schema.config_type, dict(config))
    if not result.success:
        problems = "; ".join(e.message for e in result.errors)
        raise ConfigError(f"{where}: {problems}")
    return executor.configured(dict(config), name=executor.name)


def celery_config(environ: Mapping[str, str]) -> dict:
    """The celery executor's config: the broker and backend variables when set (as `{env: ...}`,
    so a password in a URL stays out of run config), else RabbitMQ on localhost with `rpc://`
    results; a redis:// broker without a backend keeps its results in the same Redis. Steps go
    to the queue $JAMMI_CELERY_QUEUE (default `dagster`), which the workers must listen on."""
    broker = environ.get(BROKER_ENV)
    if environ.get(BACKEND_ENV):
        backend: str | dict = {"env": BACKEND_ENV}
    elif broker and broker.startswith(("redis://", "rediss://")):
        backend = {"env": BROKER_ENV}
    else:
        backend = DEFAULT_BACKEND
    config = {"broker": {"env": BROKER_ENV} if broker else DEFAULT_BROKER, "backend": backend}
    queue = celery_queue(environ)
    if queue != DEFAULT_QUEUE:
        config["config_source"] = {"task_default_queue": queue}
    return config


def celery_queue(environ: Mapping[str, str]) -> str:
    return (environ.get(QUEUE_ENV) or DEFAULT_QUEUE).strip()


def k8s_config(project: Project, path: Path) -> dict:
    """deploy/k8s/executor.yaml's `execution.config`, with `embedding_step_k8s_config` applied
    to each pipeline's embeddings step (`per_step_k8s_config`), unless that step is set there."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the k8s executor config ({exc.strerror})") from exc
    config = dict((doc.get("execution") or {}).get("config") or {})
    embedding_step = doc.get(EMBEDDING_STEP_KEY)
    if embedding_step:
        per_step = dict(config.get("per_step_k8s_config") or {})
        for pipeline in project.pipelines:
            per_step.setdefault(keys.embeddings(pipeline), embedding_step)
        config["per_step_k8s_config"] = per_step
    return config


def executor_from_env(project: Project, environ: Mapping[str, str] | None = None
                      ) -> dg.ExecutorDefinition | None:
    """The executor $JAMMI_EXECUTOR names; None keeps Dagster's default."""
    environ = os.environ if environ is None else environ
    name = (environ.get(EXECUTOR_ENV) or "").strip().lower().replace("-", "_")
    if not name:
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        raw = environ.get(MAX_CONCURRENT_ENV)
        if not raw:
            return dg.multiprocess_executor
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"${MAX_CONCURRENT_ENV}={raw!r}: expected a whole number of "
                              "processes, 1 or more")
        return _checked(dg.multiprocess_executor, {"max_concurrent": int(raw)}, f"${MAX_CONCURRENT_ENV}")
    if name == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError as exc:
            raise ConfigError(f"${EXECUTOR_ENV}=celery needs dagster-celery: "
                              "pip install -e '.[production]'") from exc
        return _checked(celery_executor, celery_config(environ), f"${EXECUTOR_ENV}=celery")
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ConfigError(f"${EXECUTOR_ENV}=k8s needs dagster-k8s: "
                              "pip install -e '.[production]'") from exc
        path = REPO / (environ.get(K8S_CONFIG_ENV) or DEFAULT_K8S_CONFIG)  # relative: to the repo
        return _checked(k8s_job_executor, k8s_config(project, path), str(path))
    raise ConfigError(f"${EXECUTOR_ENV}={name!r}: expected one of {', '.join(EXECUTORS)} "
                      "(or unset, for Dagster's default)")


def start_celery_worker(argv: list[str]) -> None:
    """`python -m jammi_assets.executors celery-worker [--name N] [--concurrency C]`: one
    dagster-celery worker on the broker, backend and queue the celery executor uses (the same
    environment variables, so the two cannot disagree). Replaces this process; needs
    $DAGSTER_HOME (the instance) and the environment the definitions load with (JAMMI_PROJECT)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jammi_assets.executors celery-worker")
    parser.add_argument("--name", "-n", default=None, help="worker name (default dagster-<random>)")
    parser.add_argument("--concurrency", "-c", type=int, default=1,
                        help="steps at once in this worker (each loads its own model copy)")
    parser.add_argument("--loglevel", "-l", default="INFO")
    args = parser.parse_args(argv)
    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("celery-worker: set DAGSTER_HOME to the instance folder "
                         "(make celery-worker does; deploy/production for DAGSTER_DEPLOYMENT=production)")
    folder = Path(os.environ["DAGSTER_HOME"]) / "dagster_celery"
    folder.mkdir(parents=True, exist_ok=True)
    config_yaml = folder / "worker.yaml"
    config_yaml.write_text(yaml.safe_dump({"execution": {"config": celery_config(os.environ)}}),
                           encoding="utf-8")
    bin_dir = Path(sys.executable).parent  # dagster-celery runs `celery` from PATH
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    command = [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
               "-y", str(config_yaml), "-q", celery_queue(os.environ), "-l", args.loglevel]
    if args.name:
        command += ["-n", args.name]
    command += ["--", f"--concurrency={args.concurrency}", "--without-gossip", "--without-mingle"]
    os.execv(command[0], command)


if __name__ == "__main__":
    if sys.argv[1:2] != ["celery-worker"]:
        raise SystemExit("usage: python -m jammi_assets.executors celery-worker [--name N] [--concurrency C]")
    start_celery_worker(sys.argv[2:])
