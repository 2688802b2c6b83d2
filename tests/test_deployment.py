"""Deployment settings (issue 10, item 7) that need no cluster, broker or database: which
instance DAGSTER_DEPLOYMENT selects, the executor JAMMI_EXECUTOR gives the definitions, and the
deploy/ files checked against the schemas of Dagster, dagster-postgres, dagster-celery and
dagster-k8s. The real thing (PostgreSQL + Celery workers) is tests/test_production_celery.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from jammi.errors import ConfigError
from jammi_assets import deployment, executors
from jammi_assets.definitions import build_definitions
from tests.conftest import PRODUCT_COLUMNS, REPO, write_project


@pytest.fixture
def project(tmp_path, products_csv):
    return write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv), "key": "id",
                                                 "columns": PRODUCT_COLUMNS}},
                         {"products": {"source": "products", "text_columns": ["title", "body"]}})


# --- DAGSTER_DEPLOYMENT ------------------------------------------------------------------------


def test_deployment_selects_the_instance_folder():
    assert deployment.deployment_home({}) == REPO
    assert deployment.deployment_home({"DAGSTER_DEPLOYMENT": "production"}) == REPO / "deploy" / "production"
    with pytest.raises(ConfigError, match="DAGSTER_DEPLOYMENT='staging': expected one of local, production"):
        deployment.deployment_home({"DAGSTER_DEPLOYMENT": "staging"})
    env = {"DAGSTER_DEPLOYMENT": "production"}
    assert deployment.select_instance(env) == REPO / "deploy" / "production"
    assert env["DAGSTER_HOME"] == str(REPO / "deploy" / "production")
    explicit = {"DAGSTER_DEPLOYMENT": "production", "DAGSTER_HOME": "/srv/dagster"}
    assert deployment.select_instance(explicit) is None and explicit["DAGSTER_HOME"] == "/srv/dagster"


@pytest.mark.slow
@pytest.mark.parametrize("deploy, home", [("local", ""), ("production", "/deploy/production")])
def test_makefile_sets_dagster_home_from_the_deployment(deploy, home):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                          "show-home: ; @echo $$DAGSTER_HOME", "show-home", f"DAGSTER_DEPLOYMENT={deploy}"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"{REPO}{home}"


# --- the instance files ------------------------------------------------------------------------


def test_production_instance_is_valid_and_says_what_it_promises():
    assert deployment.check_instance(REPO / "deploy" / "production") == []
    doc = yaml.safe_load((REPO / "deploy" / "production" / "dagster.yaml").read_text())
    db = doc["storage"]["postgres"]["postgres_db"]
    assert {k: v["env"] for k, v in db.items() if isinstance(v, dict)} == {
        "hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT", "username": "DAGSTER_PG_USER",
        "password": "DAGSTER_PG_PASSWORD", "db_name": "DAGSTER_PG_DB"}
    assert doc["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert doc["run_retries"] == {"enabled": True, "max_retries": 2}
    assert doc["concurrency"]["pools"]["default_limit"] == 1


def test_env_example_documents_every_variable_the_deployment_reads():
    text = (REPO / ".env.example").read_text()
    for name in ["DAGSTER_DEPLOYMENT", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
                 "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", executors.EXECUTOR_ENV, executors.MAX_CONCURRENT_ENV,
                 executors.BROKER_ENV, executors.BACKEND_ENV, executors.QUEUE_ENV, executors.K8S_CONFIG_ENV,
                 "CELERY_CONCURRENCY", "JAMMI_ARTIFACT_DIR", "JAMMI_CATALOG_DSN", "JAMMI_CACHE_DIR"]:
        assert f"{name}=" in text, name


def test_k8s_instance_is_valid_without_a_cluster():
    pytest.importorskip("dagster_k8s", reason="needs the production extra: pip install -e '.[production]'")
    assert deployment.check_instance(REPO / "deploy" / "k8s") == []


def _k8s_documents() -> dict[str, list]:
    return {path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
            for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))}


def _keys_and_values(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _keys_and_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _keys_and_values(v)
    else:
        yield node


def test_k8s_pods_share_no_volume_only_the_store_and_postgres():
    docs = _k8s_documents()
    assert set(docs) == {"dagster.yaml", "executor.yaml", "jammi-env.yaml"}
    words = [str(w) for d in docs.values() for w in _keys_and_values(d)]
    for shared in ["persistent_volume_claim", "persistentVolumeClaim", "ReadWriteMany", "claim_name"]:
        assert shared not in words, shared
    env = {d["kind"]: d for d in docs["jammi-env.yaml"]}
    config, secret = env["ConfigMap"]["data"], env["Secret"]["stringData"]
    names = (env["ConfigMap"]["metadata"]["name"], env["Secret"]["metadata"]["name"])
    assert names == ("jammi-env", "jammi-secrets")
    assert config["JAMMI_ARTIFACT_DIR"].startswith("s3://") and "JAMMI_CATALOG_DSN" in secret
    # every pod Jammi starts: the run worker (the launcher) and each step (the executor)
    launcher = docs["dagster.yaml"][0]["run_launcher"]["config"]
    executor = docs["executor.yaml"][0]["execution"]["config"]
    for pod in (launcher, executor):
        assert (pod["env_config_maps"], pod["env_secrets"]) == (["jammi-env"], ["jammi-secrets"])
        assert [v["name"] for v in pod["volumes"]] == ["jammi-cache"] and "empty_dir" in pod["volumes"][0]
        assert pod["volume_mounts"] == [{"name": "jammi-cache", "mount_path": config["JAMMI_CACHE_DIR"]}]
    # the instance's PostgreSQL settings come from the same ConfigMap and Secret
    db = docs["dagster.yaml"][0]["storage"]["postgres"]["postgres_db"]
    assert {v["env"] for v in db.values() if isinstance(v, dict)} <= set(config) | set(secret)


def test_a_project_reading_the_k8s_environment_keeps_its_files_in_the_store(tmp_path, monkeypatch):
    env = {d["kind"]: d for d in _k8s_documents()["jammi-env.yaml"]}
    for name, value in {**env["ConfigMap"]["data"], **env["Secret"]["stringData"]}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JAMMI_CACHE_DIR", str(tmp_path / "cache"))   # the pod's emptyDir
    (tmp_path / "jammi.yaml").write_text(yaml.safe_dump({
        "artifact_dir": "${JAMMI_ARTIFACT_DIR}", "catalog": {"postgres": "${JAMMI_CATALOG_DSN}"},
        "sources": {}, "pipelines": {}}))
    from jammi.spec.project import load_project

    project = load_project(tmp_path / "jammi.yaml")
    assert project.artifact_url == env["ConfigMap"]["data"]["JAMMI_ARTIFACT_DIR"]
    assert project.spec.catalog is not None
    assert project.artifact_dir.is_relative_to(tmp_path / "cache")


def test_a_broken_instance_file_is_reported_naming_the_field(tmp_path):
    pytest.importorskip("dagster_k8s", reason="needs the production extra: pip install -e '.[production]'")
    doc = yaml.safe_load((REPO / "deploy" / "k8s" / "dagster.yaml").read_text())
    doc["run_launcher"]["config"]["job_namespce"] = "typo"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc))
    problems = deployment.check_instance(tmp_path)
    assert len(problems) == 1 and "run_launcher.config" in problems[0] and "job_namespce" in problems[0]
    doc["run_launcher"]["config"].pop("job_namespce")
    doc["run_retries"] = {"enabled": "yes please"}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc))
    problems = deployment.check_instance(tmp_path)
    assert len(problems) == 1 and "run_retries" in problems[0]
    missing = tmp_path / "nowhere"
    assert deployment.check_instance(missing) == [f"{missing / 'dagster.yaml'}: not found"]


# --- JAMMI_EXECUTOR ----------------------------------------------------------------------------


def test_no_executor_variable_keeps_dagsters_default(project):
    def chosen(**environ):
        return executors.executor_from_env(project, environ)

    assert chosen() is None
    assert chosen(JAMMI_EXECUTOR="in_process") is dg.in_process_executor
    assert chosen(JAMMI_EXECUTOR="multiprocess") is dg.multiprocess_executor
    assert chosen(JAMMI_EXECUTOR="multiprocess", JAMMI_MAX_CONCURRENT="2").name == "multiprocess"
    with pytest.raises(ConfigError, match="JAMMI_MAX_CONCURRENT='two'"):
        chosen(JAMMI_EXECUTOR="multiprocess", JAMMI_MAX_CONCURRENT="two")
    with pytest.raises(ConfigError, match="JAMMI_EXECUTOR='dask': expected one of in_process, multiprocess"):
        chosen(JAMMI_EXECUTOR="dask")


def test_celery_config_follows_the_broker_variables():
    assert executors.celery_config({}) == {"broker": "pyamqp://guest@localhost//", "backend": "rpc://"}
    redis = executors.celery_config({"JAMMI_CELERY_BROKER": "redis://127.0.0.1:6379/0"})
    assert redis == {"broker": {"env": "JAMMI_CELERY_BROKER"}, "backend": {"env": "JAMMI_CELERY_BROKER"}}
    both = executors.celery_config({"JAMMI_CELERY_BROKER": "redis://h/0", "JAMMI_CELERY_BACKEND": "redis://h/1",
                                    "JAMMI_CELERY_QUEUE": "jammi_staging"})
    assert both == {"broker": {"env": "JAMMI_CELERY_BROKER"}, "backend": {"env": "JAMMI_CELERY_BACKEND"},
                    "config_source": {"task_default_queue": "jammi_staging"}}


def test_celery_executor_is_the_definitions_default(project, monkeypatch):
    pytest.importorskip("dagster_celery", reason="needs the production extra: pip install -e '.[production]'")
    monkeypatch.setenv("JAMMI_EXECUTOR", "celery")
    job = build_definitions(project).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "celery"


def test_k8s_executor_takes_deploy_k8s_and_sizes_each_embedding_step(project, monkeypatch):
    pytest.importorskip("dagster_k8s", reason="needs the production extra: pip install -e '.[production]'")
    config = executors.k8s_config(project, executors.DEFAULT_K8S_CONFIG)
    embed = config["per_step_k8s_config"]["products_embeddings"]
    assert embed["container_config"]["resources"]["requests"]["memory"] == "4Gi"
    assert "JAMMI_PROJECT=/opt/jammi/jammi.yaml" in config["env_vars"]
    monkeypatch.setenv("JAMMI_EXECUTOR", "k8s")
    job = build_definitions(project).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "k8s"


def test_a_bad_k8s_executor_file_stops_the_load_naming_it(project, tmp_path):
    pytest.importorskip("dagster_k8s", reason="needs the production extra: pip install -e '.[production]'")
    doc = yaml.safe_load(executors.DEFAULT_K8S_CONFIG.read_text())
    doc["execution"]["config"]["max_concurent"] = 4
    bad = tmp_path / "executor.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="max_concurent") as err:
        executors.executor_from_env(project, {"JAMMI_EXECUTOR": "k8s", "JAMMI_K8S_EXECUTOR_CONFIG": str(bad)})
    assert str(bad) in str(err.value)
    with pytest.raises(ConfigError, match="cannot read the k8s executor config"):
        executors.executor_from_env(project, {"JAMMI_EXECUTOR": "k8s",
                                              "JAMMI_K8S_EXECUTOR_CONFIG": str(tmp_path / "missing.yaml")})


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["celery", "k8s"])
def test_dagster_definitions_validate_with_each_production_executor(executor, tmp_path):
    pytest.importorskip("dagster_k8s", reason="needs the production extra: pip install -e '.[production]'")
    pytest.importorskip("dagster_celery", reason="needs the production extra: pip install -e '.[production]'")
    dagster = Path(sys.executable).parent / "dagster"
    env = {"PATH": f"{dagster.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "DAGSTER_HOME": str(REPO),
           "JAMMI_PROJECT": str(REPO / "jammi.yaml"), "JAMMI_EXECUTOR": executor, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "All code locations passed validation" in proc.stdout + proc.stderr
