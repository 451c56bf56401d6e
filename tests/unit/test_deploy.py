"""The deploy files (deploy/Dockerfile, deploy/compose.yaml, deploy/k8s) and `humanline health`.

The Kustomize base is rendered by loading the files its kustomization lists (no kustomize
binary needed) and every document is validated against the Kubernetes API schemas bundled in
kubernetes-validate, strictly (unknown fields are errors), for KUBERNETES_VERSION. Where
kubectl is installed, its built-in kustomize renders the base too. The image itself is not
built here: the Dockerfile is checked for its shape only.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2

from humanline import cli
from humanline.config import Settings
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import SERVICE_NAMES, Tls
from humanline.service.app import DRAIN_TIMEOUT
from tests.conftest import Served, serve
from tests.support.certs import Authority

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
PORT = 50051
METRICS_PORT = 9464


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


def _rendered() -> list[dict[str, Any]]:
    """The base's resources, in the kustomization's order."""
    return [
        doc
        for name in _kustomization()["resources"]
        for doc in _documents((K8S / name).read_text())
    ]


def _one(kind: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = [d for d in (docs or _rendered()) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _validate(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")


# -- Kubernetes -----------------------------------------------------------------------------


def test_the_base_lists_every_kind_and_leaves_the_secret_out() -> None:
    kinds = sorted(d["kind"] for d in _rendered())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]
    assert "secret.example.yaml" not in _kustomization()["resources"]
    assert (K8S / "secret.example.yaml").exists()


@pytest.mark.parametrize(
    "name", [*_kustomization()["resources"], "secret.example.yaml"] if K8S.exists() else []
)
def test_every_manifest_is_valid_kubernetes(name: str) -> None:
    docs = _documents((K8S / name).read_text())
    assert docs, f"{name} is empty"
    for doc in docs:
        _validate(doc)


def test_the_validation_refuses_what_kubernetes_would() -> None:
    # The strict schemas catch misspelled fields, which a lenient check would let through.
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_valid_kubernetes() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    docs = _documents(rendered)
    assert sorted(d["kind"] for d in docs) == sorted(d["kind"] for d in _rendered())
    for doc in docs:
        _validate(doc)
    container = _one("Deployment", docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("humanline:")


def test_the_deployment_runs_three_probed_non_root_replicas() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": PORT, "metrics": METRICS_PORT}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == PORT, probe
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    # A graceful stop: room for the preStop pause, the drain and the server's shutdown grace.
    grace = pod["terminationGracePeriodSeconds"]
    config = _one("ConfigMap")["data"]
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert grace > pause + DRAIN_TIMEOUT + float(config["HUMANLINE_SHUTDOWN_GRACE_SECONDS"])
    # The metrics the annotations point at are served, on that port.
    assert config["HUMANLINE_METRICS_LISTEN"].endswith(f":{METRICS_PORT}")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)


def test_the_deployment_takes_its_secrets_from_a_secret_by_name() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env["HUMANLINE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "humanline", "key": "database-url"}
    keys = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert keys["secret"]["secretName"] == "humanline"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "keys")
    config = _one("ConfigMap")
    assert config["data"]["HUMANLINE_AUTH_KEYS"].startswith(mount["mountPath"] + "/")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    # No secret value sits in the ConfigMap, and the example Secret has what is referenced.
    assert not {"HUMANLINE_DATABASE_URL"} & config["data"].keys()
    example = _documents((K8S / "secret.example.yaml").read_text())[0]
    assert example["metadata"]["name"] == "humanline"
    assert {"database-url", "keys.json"} <= example["stringData"].keys()


def test_the_autoscaler_budget_service_and_job_fit_the_deployment() -> None:
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    for kind in ("PodDisruptionBudget", "Service"):
        spec = _one(kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    job = _one("Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    assert job["securityContext"]["runAsNonRoot"] is True


# -- compose --------------------------------------------------------------------------------


def test_compose_runs_two_replicas_after_a_successful_migration() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["migrate"]["command"] == ["migrate"]
    replicas = [s for s in services.values() if s.get("command") == ["serve"]]
    assert len(replicas) == 2
    for replica in replicas:
        deps = replica["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
        assert deps["postgres"]["condition"] == "service_healthy"
        assert replica["environment"]["HUMANLINE_DATABASE_URL"].startswith("postgresql+asyncpg://")
        # The shared keyring, made once by the keygen one-shot.
        assert deps["keygen"] == {"condition": "service_completed_successfully"}
        assert any(v.startswith("keys:/etc/humanline/keys") for v in replica["volumes"])
    assert len({tuple(r["ports"]) for r in replicas}) == 2
    assert "humanline token keygen" in " ".join(services["keygen"]["command"])
    # Each replica's metrics reachable from the host.
    for replica in replicas:
        assert replica["environment"]["HUMANLINE_METRICS_LISTEN"].endswith(f":{METRICS_PORT}")
        assert any(p.endswith(f":{METRICS_PORT}") for p in replica["ports"])


def test_the_deploy_settings_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the ConfigMap and compose set is what the server accepts at start."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for environment in (
        _one("ConfigMap")["data"],
        compose["services"]["humanline-1"]["environment"],
    ):
        for name, value in environment.items():
            monkeypatch.setenv(name, str(value))
        Settings(_env_file=None)  # type: ignore[call-arg]
        for name in environment:
            monkeypatch.delenv(name)


# -- Dockerfile -----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_is_multi_stage_slim_non_root_and_health_checked() -> None:
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("python:3.11-slim") for f in froms)
    assert any(op == "COPY" and arg.startswith("--from=") for op, arg in steps)
    users = [arg for op, arg in steps if op == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    final = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    assert any(op == "USER" for op, _ in steps[final:]), "USER must be in the final stage"
    checks = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert '"humanline", "health"' in checks[0] or "humanline health" in checks[0]
    installs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "-c deploy/requirements.lock" in installs
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "**" in ignore.split()


def test_the_lock_pins_the_validator_and_what_it_needs() -> None:
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (DEPLOY / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert {"kubernetes-validate", "pyyaml", "jsonschema", "referencing"} <= pins


# -- humanline health -----------------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The embedded store only: these tests are about the health command."""
    return f"sqlite+aiosqlite:///{tmp_path / 'humanline.db'}"


async def _health(*args: str) -> int:
    # The command is synchronous; the server runs on this test's event loop.
    return await asyncio.to_thread(cli.main, ["health", "--timeout", "5", *args])


async def test_health_exits_0_when_the_server_is_serving(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _health("--target", served.target) == 0
    assert "SERVING" in capsys.readouterr().out
    assert await _health("--target", served.target, "--service", SERVICE_NAMES[0]) == 0


async def test_health_exits_1_when_not_serving_or_unknown(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _health("--target", served.target, "--service", "no.such.Service") == 1
    assert "NOT_FOUND" in capsys.readouterr().out
    await served.running.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert await _health("--target", served.target) == 1
    assert "NOT_SERVING" in capsys.readouterr().out


@pytest.fixture
def closed_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound, never listening: connections are refused


async def test_health_exits_1_when_nothing_answers(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _health("--target", f"127.0.0.1:{closed_port}", "--timeout", "2") == 1
    assert "UNAVAILABLE" in capsys.readouterr().out


@pytest.fixture
async def tls_served(
    tmp_path: Path, policy: DispatchPolicy, authority: Authority
) -> AsyncIterator[Served]:
    pem = authority.issue("localhost", server=True)
    served = await serve(
        f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}", policy, tls=Tls(pem.cert, pem.key)
    )
    yield served
    await served.stop()


@pytest.fixture
def authority() -> Authority:
    return Authority()


async def test_health_verifies_a_tls_listener_with_its_ca(
    tls_served: Served, authority: Authority, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(authority.cert)
    assert await _health("--target", tls_served.target, "--tls-ca", str(ca)) == 0
    # Plain text against a TLS listener, or another CA, is not healthy.
    assert await _health("--target", tls_served.target, "--timeout", "2") == 1
    other = tmp_path / "other.pem"
    other.write_bytes(Authority().cert)
    assert (
        await _health("--target", tls_served.target, "--tls-ca", str(other), "--timeout", "2") == 1
    )


def test_health_refuses_an_unreadable_ca(tmp_path: Path) -> None:
    assert cli.main(["health", "--tls-ca", str(tmp_path / "missing.pem")]) == 2


def test_the_healthcheck_command_parses_as_the_cli_expects() -> None:
    (check,) = [arg for op, arg in _instructions() if op == "HEALTHCHECK"]
    command = check.split("CMD", 1)[1].strip()
    argv = yaml.safe_load(command) if command.startswith("[") else shlex.split(command)
    assert argv[:2] == ["humanline", "health"]
    args = cli.parser().parse_args(argv[1:])
    assert args.func is cli._health
    assert args.target.endswith(f":{PORT}")
