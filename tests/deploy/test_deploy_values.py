"""The chart's values of issue 20 (honorLabels, sampleLimit, the config file
ConfigMap and its checksum, podLabels, podAnnotations, extraEnv,
extraVolumes/extraVolumeMounts, the NetworkPolicy, the Pod Security note), the
systemd unit's reload and documentation, and the static `FROM scratch` image.
Rendered by tests/deploy/chart_render.py and validated like test_deploy.py's
objects (Kubernetes OpenAPI schemas, the Prometheus Operator's models)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from test_deploy import CHART, REPO, VENV_BIN, by_kind, chart_values, deep_merge, rendered_objects, unit_settings, validate_object

MONITORS = {"prometheus": {"monitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
CONFIG = 'slow_threshold = "50ms"\npath_prefix_depth = 2\n'


def endpoints(objects: dict) -> list[dict]:
    return [objects["ServiceMonitor"]["spec"]["endpoints"][0], objects["PodMonitor"]["spec"]["podMetricsEndpoints"][0]]


def pod_template(objects: dict) -> dict:
    return objects["DaemonSet"]["spec"]["template"]


def test_monitors_honor_labels_and_take_a_sample_limit():
    objects = by_kind(rendered_objects(MONITORS))
    for endpoint in endpoints(objects):
        assert endpoint["honorLabels"] is True, endpoint
    for kind in ["ServiceMonitor", "PodMonitor"]:
        assert "sampleLimit" not in objects[kind]["spec"], "0: no limit, not rendered"
    limited = deep_merge(MONITORS, {"prometheus": {"monitor": {"sampleLimit": 60000, "honorLabels": False}, "podMonitor": {"sampleLimit": 50000}}})
    objects = by_kind(rendered_objects(limited))
    for obj in objects.values():
        validate_object(obj)
    assert objects["ServiceMonitor"]["spec"]["sampleLimit"] == 60000
    assert objects["PodMonitor"]["spec"]["sampleLimit"] == 50000
    assert [e["honorLabels"] for e in endpoints(objects)] == [False, True]


def test_config_file_becomes_a_configmap_an_argument_a_mount_and_a_checksum():
    objects = by_kind(rendered_objects())
    assert "ConfigMap" not in objects
    pod = pod_template(objects)
    assert not any(a.startswith("--config.file") for a in pod["spec"]["containers"][0]["args"])
    assert "annotations" not in pod["metadata"], "no config, no annotations: nothing to roll on"

    objects = by_kind(rendered_objects({"config": CONFIG}))
    for obj in objects.values():
        validate_object(obj)
    config_map = objects["ConfigMap"]
    assert config_map["metadata"]["name"] == "badfd-config"
    assert config_map["data"]["badfd.toml"] == CONFIG.rstrip("\n")
    pod = pod_template(objects)
    container = pod["spec"]["containers"][0]
    assert "--config.file=/etc/badfd/config/badfd.toml" in container["args"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/badfd/config", "readOnly": True}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "badfd-config"
    checksum = pod["metadata"]["annotations"]["checksum/config"]
    assert checksum == hashlib.sha256(CONFIG.encode()).hexdigest()
    # Another config rolls the pods: another checksum.
    other = by_kind(rendered_objects({"config": CONFIG.replace("50ms", "80ms")}))
    assert pod_template(other)["metadata"]["annotations"]["checksum/config"] != checksum


def test_rendered_config_file_is_one_badfd_accepts(tmp_path):
    """The ConfigMap's file through badfd's own check (--config.check)."""
    badfd = REPO / "target/debug/badfd"
    assert badfd.exists(), "build first: cargo build -p badfd --bin badfd"
    data = by_kind(rendered_objects({"config": CONFIG}))["ConfigMap"]["data"]["badfd.toml"]
    path = tmp_path / "badfd.toml"
    path.write_text(data)
    ok = subprocess.run([str(badfd), "serve", f"--config.file={path}", "--config.check"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    path.write_text(data.replace("slow_threshold", "slow_treshold"))
    bad = subprocess.run([str(badfd), "serve", f"--config.file={path}", "--config.check"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "slow_treshold" in bad.stdout + bad.stderr


def test_pod_labels_annotations_env_and_extra_volumes():
    values = {
        "podLabels": {"team": "storage"},
        "podAnnotations": {"example.com/owner": "platform"},
        "config": CONFIG,
        "extraEnv": [{"name": "BADFD_LOG", "value": "debug"}],
        "extraVolumes": [{"name": "collector-ca", "configMap": {"name": "collector-ca"}}],
        "extraVolumeMounts": [{"name": "collector-ca", "mountPath": "/etc/badfd/collector-ca", "readOnly": True}],
    }
    objects = by_kind(rendered_objects(values))
    for obj in objects.values():
        validate_object(obj)
    ds = objects["DaemonSet"]
    pod = pod_template(objects)
    assert pod["metadata"]["labels"]["team"] == "storage"
    assert ds["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "badfd", "app.kubernetes.io/instance": "badfd"}, "the selector stays"
    annotations = pod["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "platform" and "checksum/config" in annotations
    container = pod["spec"]["containers"][0]
    assert container["env"][-1] == {"name": "BADFD_LOG", "value": "debug"}
    assert {"name": "collector-ca", "configMap": {"name": "collector-ca"}} in pod["spec"]["volumes"]
    assert {"name": "collector-ca", "mountPath": "/etc/badfd/collector-ca", "readOnly": True} in container["volumeMounts"]
    # The chart's own mounts are all still there.
    assert {"tracefs", "btf", "cgroup", "config"} <= {m["name"] for m in container["volumeMounts"]}


@pytest.mark.parametrize("client", [False, True])
def test_otlp_tls_secret_becomes_a_mount_and_the_otel_certificate_variables(client):
    values = {"otlp": {"endpoint": "https://collector:4317", "tlsSecret": {"name": "collector-tls", "clientCertificate": client}}}
    objects = by_kind(rendered_objects(values))
    for obj in objects.values():
        validate_object(obj)
    pod = pod_template(objects)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/etc/badfd/otlp-tls/ca.crt"
    client_env = {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/badfd/otlp-tls/tls.crt", "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/badfd/otlp-tls/tls.key"}
    if client:
        assert client_env.items() <= env.items()
    else:
        assert not set(client_env) & set(env)
    assert {"name": "otlp-tls", "mountPath": "/etc/badfd/otlp-tls", "readOnly": True} in container["volumeMounts"]
    assert {"name": "otlp-tls", "secret": {"secretName": "collector-tls", "defaultMode": 0o400}} in pod["spec"]["volumes"]
    # Without the Secret: no mount, no variable (the system's roots).
    pod = pod_template(by_kind(rendered_objects({"otlp": {"endpoint": "https://collector:4317"}})))
    container = pod["spec"]["containers"][0]
    assert "otlp-tls" not in {m["name"] for m in container["volumeMounts"]}
    assert not any(e["name"].startswith("OTEL_EXPORTER_OTLP_C") for e in container["env"])


def test_network_policy_admits_only_the_metrics_port():
    assert "NetworkPolicy" not in by_kind(rendered_objects())
    objects = by_kind(rendered_objects({"networkPolicy": {"enabled": True}}))
    policy = objects["NetworkPolicy"]
    validate_object(policy)
    assert policy["spec"]["podSelector"]["matchLabels"] == objects["DaemonSet"]["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress (API server, collector, DNS) stays open"
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    ports = objects["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert any(p["name"] == "metrics" for p in ports), "the policy's named port exists"
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    policy = by_kind(rendered_objects({"networkPolicy": {"enabled": True, "ingressFrom": peers}}))["NetworkPolicy"]
    validate_object(policy)
    assert policy["spec"]["ingress"][0]["from"] == peers


@pytest.mark.parametrize(
    "bad",
    [
        {"networkPolicy": {"enabled": "yes"}},
        {"networkPolicy": {"enabled": True, "ingresFrom": []}},
        {"prometheus": {"monitor": {"sampleLimit": -1}}},
        {"prometheus": {"podMonitor": {"honorLabels": "true"}}},
        {"config": {"slow_threshold": "50ms"}},
        {"podLabels": {"team": 1}},
        {"extraVolumeMounts": [{"name": "x"}]},
        {"extraVolumes": [{"configMap": {"name": "x"}}]},
    ],
)
def test_schema_rejects_bad_new_values(bad):
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(deep_merge(chart_values(), bad), schema)


def test_values_document_the_namespaces_pod_security_level():
    values = (CHART / "values.yaml").read_text()
    assert "pod-security.kubernetes.io/enforce=privileged" in values
    namespace = yaml.safe_load((REPO / "deploy/kubernetes/namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    # Every new key is in values.yaml, below a comment that says what it does.
    for key in ["podLabels:", "extraVolumes:", "config:", "networkPolicy:", "honorLabels:", "sampleLimit:"]:
        before = values[: values.index(key)].rstrip().rsplit("\n", 1)[-1].lstrip()
        assert before.startswith("#"), f"{key} has no comment above it"


# --- systemd --------------------------------------------------------------------------


def test_systemd_unit_reloads_with_sighup_and_names_its_documentation():
    s = unit_settings()
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    docs = s["Documentation"]
    assert any(d.endswith("/README.md") for d in docs) and any(d.endswith("/serve-and-config.md") for d in docs), docs
    # The documents it names are the repository's, installed by the unit's own instructions.
    for d in docs:
        if d.startswith("file:///usr/local/share/doc/badfd/"):
            assert (REPO / d.removeprefix("file:///usr/local/share/doc/badfd/")).is_file(), d


# --- the static image -------------------------------------------------------------------

STATIC = REPO / "deploy/container/Containerfile.static"
STATIC_IGNORE = REPO / "deploy/container/Containerfile.static.dockerignore"


def test_static_containerfile_lints_and_only_copies():
    result = subprocess.run([str(VENV_BIN / "hadolint"), str(STATIC)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [l.strip() for l in re.sub(r"\\\n", " ", STATIC.read_text()).splitlines() if l.strip() and not l.strip().startswith("#")]
    assert [l for l in lines if l.startswith("FROM ")] == ["FROM scratch AS runtime"], "no base image to pull"
    assert not any(l.startswith(("RUN ", "ADD ")) for l in lines), "nothing runs during the build"
    assert "ARG BINARY=target/x86_64-unknown-linux-musl/release/badfd" in lines
    assert "COPY ${BINARY} /usr/bin/badfd" in lines
    # The same entry point and port as the distroless image.
    distroless = (REPO / "deploy/container/Containerfile").read_text()
    for line in ['ENTRYPOINT ["/usr/bin/badfd"]', 'CMD ["serve"]', "EXPOSE 19435", "USER 0:0"]:
        assert line in lines and line in distroless, line
    # The build context is the static binaries, nothing else.
    ignore = [l for l in STATIC_IGNORE.read_text().splitlines() if l and not l.startswith("#")]
    assert ignore[0] == "*" and all(l.startswith("!target/") and "-unknown-linux-musl/" in l for l in ignore[1:])
    assert "!" + lines[lines.index("ARG BINARY=target/x86_64-unknown-linux-musl/release/badfd")].split("=", 1)[1] in ignore
    readme = (REPO / "deploy/container/README.md").read_text()
    assert "cargo build --release --locked --bin badfd --target x86_64-unknown-linux-musl" in readme
    assert "Containerfile.static" in readme


def static_binary() -> Path | None:
    for profile in ["release", "debug"]:
        p = REPO / f"target/x86_64-unknown-linux-musl/{profile}/badfd"
        if p.is_file():
            return p
    return None


def test_static_image_builds_offline_with_podman(tmp_path):
    """podman builds the scratch image from the static binary with no network
    (it cannot run containers here: the image's contents are checked by
    exporting its filesystem)."""
    podman = shutil.which("podman")
    binary = static_binary()
    if podman is None or binary is None:
        pytest.skip(f"needs podman ({podman}) and a static build ({binary}): see deploy/container/README.md")
    tag = "localhost/badfd-static-test:latest"
    build = subprocess.run(
        ["unshare", "--net", podman, "build", "--pull=never", "--layers=false", "-f", str(STATIC), "--ignorefile", str(STATIC_IGNORE),
         "--build-arg", f"BINARY={binary.relative_to(REPO)}", "-t", tag, str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        inspect = json.loads(subprocess.run([podman, "image", "inspect", tag], capture_output=True, text=True, check=True).stdout)[0]
        assert inspect["Config"]["Entrypoint"] == ["/usr/bin/badfd"] and inspect["Config"]["Cmd"] == ["serve"]
        assert len(inspect["RootFS"]["Layers"]) == 1, "one layer: the binary"
        archive = tmp_path / "image.tar"
        container = subprocess.run([podman, "create", tag], capture_output=True, text=True, check=True).stdout.strip()
        try:
            subprocess.run([podman, "export", "-o", str(archive), container], check=True)
        finally:
            subprocess.run([podman, "rm", container], capture_output=True)
        listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
        assert "usr/bin/badfd" in listing, listing
        (tmp_path / "out").mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(tmp_path / "out"), "usr/bin/badfd"], check=True)
        assert (tmp_path / "out/usr/bin/badfd").read_bytes() == binary.read_bytes()
    finally:
        subprocess.run([podman, "rmi", "-f", tag], capture_output=True)
