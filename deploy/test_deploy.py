"""Offline checks of every deployment manifest: Kubernetes schemas (kubernetes-validate), the
IoT Edge manifest's structure, and no drift from what the services accept and compose uses.

    python3 -m pytest deploy/     (scripts/test runs it; needs kubectl, kubernetes-validate, pyyaml)
"""

import functools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["device", "simulator"]
BINARIES = {"led-service": "led-service", "button-service": "button-service", "simulator": "simulator"}


def render(overlay):
    output = subprocess.run(["kubectl", "kustomize", str(KUBE / "overlays" / overlay)],
                            capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@functools.cache
def settings(binary):
    """Every setting of a service, as its own command line describes it (`print-config`)."""
    output = subprocess.run(["cargo", "run", "--quiet", "--locked", "-p", binary, "--", "print-config"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = {setting["env"]: setting for setting in json.loads(output)}
    assert found, f"{binary} print-config listed nothing"
    return found


def env_vars(binary):
    """The env vars a service reads."""
    return set(settings(binary))


def default_port(binary, variable):
    return int(settings(binary)[variable]["default"].rsplit(":", 1)[1])


def compose_images():
    images = set()
    for name in ("docker-compose.yml", "docker-compose.override.yml"):
        for service in yaml.safe_load((ROOT / name).read_text())["services"].values():
            if "image" in service:
                images.add(service["image"].split(":")[0])
    return images


def containers(docs):
    found = [(doc, doc["spec"]["template"]["spec"], container)
             for doc in docs if doc.get("kind") in ("DaemonSet", "Deployment")
             for container in doc["spec"]["template"]["spec"]["containers"]]
    assert found, "the manifests have no workload with containers"
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_schemas(overlay, tmp_path):
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run(["kubernetes-validate", "--strict", "-k", "1.30.0", str(rendered)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_least_privilege(overlay):
    for doc, spec, container in containers(render(overlay)):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532 and pod["runAsGroup"] == 65532
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security.get("privileged", False) is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert "limits" in container["resources"] and "requests" in container["resources"]


def test_the_device_overlay_maps_only_the_bus_with_the_i2c_group():
    docs = render("device")
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"qwiic.io/button": "true"}
    assert spec["volumes"] == [{"name": "i2c", "hostPath": {"path": "/dev/i2c-1", "type": "CharDevice"}}]
    assert all(isinstance(g, int) for g in spec["securityContext"]["supplementalGroups"])
    for container in spec["containers"]:
        assert container["volumeMounts"] == [{"name": "i2c", "mountPath": "/dev/i2c-1"}]
        assert {"name": "BUS", "value": "/dev/i2c-1"} in container["env"]


def test_the_simulator_overlay_needs_no_hardware():
    docs = render("simulator")
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert "qwiic.io/button" not in spec["nodeSelector"]
    assert "volumes" not in spec
    for container in spec["containers"]:
        assert {"name": "BUS", "value": "tcp://qwiic-simulator:7070"} in container["env"]
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "qwiic-simulator")
    assert {p["port"] for p in service["spec"]["ports"]} == {7070, 8081}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_drift_from_the_services_and_compose(overlay):
    images = compose_images()
    for doc, spec, container in containers(render(overlay)):
        repository = container["image"].split(":")[0]
        assert repository in images, f"{repository} is not an image compose uses"
        binary = BINARIES[repository.split("/")[-1]]
        accepted = env_vars(binary)
        for variable in container.get("env", []):
            assert variable["name"] in accepted, f"{binary} does not read {variable['name']}"
        env = {v["name"]: v["value"] for v in container.get("env", [])}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if binary == "simulator":
            assert set(ports.values()) == {default_port("simulator", "TCP_LISTEN"), default_port("simulator", "HTTP_LISTEN")}
        else:
            listen = int(env.get("LISTEN_ADDR", f":{default_port(binary, 'LISTEN_ADDR')}").rsplit(":", 1)[1])
            assert listen in ports.values(), f"{binary} listens on {listen}, the manifest exposes {ports}"
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/healthz"
            assert container[probe]["httpGet"]["port"] in ports
    # The button reaches the LED service where it listens.
    daemonset = next(d for d in render(overlay) if d["kind"] == "DaemonSet")
    by_name = {c["name"]: c for c in daemonset["spec"]["template"]["spec"]["containers"]}
    led_url = next(v["value"] for v in by_name["button"]["env"] if v["name"] == "LED_URL")
    assert led_url.endswith(f":{by_name['led']['ports'][0]['containerPort']}")


def iotedge():
    return json.loads((ROOT / "deploy" / "iotedge" / "deployment.template.json").read_text())


def test_iotedge_manifest_structure():
    manifest = iotedge()
    agent = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]
    assert agent["schemaVersion"] == "1.1"
    assert set(agent["systemModules"]) == {"edgeAgent", "edgeHub"}
    assert "$edgeHub" in manifest["modulesContent"]
    modules = agent["modules"]
    assert set(modules) == {"led", "button"}
    for name, module in modules.items():
        assert module["type"] == "docker" and module["status"] == "running"
        assert module["restartPolicy"] in ("always", "on-unhealthy", "on-failure")
        assert re.fullmatch(r"\$\{[A-Z_]+_IMAGE\}", module["settings"]["image"]), "images are parameters"
        options = json.loads(module["settings"]["createOptions"])
        host = options["HostConfig"]
        assert options["User"] == "65532:65532"
        assert host.get("Privileged", False) is False
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["Devices"] == [{"PathOnHost": "${I2C_DEVICE}", "PathInContainer": "/dev/i2c-1", "CgroupPermissions": "rw"}]
        assert host["GroupAdd"] == ["${I2C_GID}"]
    led = json.loads(modules["led"]["settings"]["createOptions"])
    assert led["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostPort": "${LED_PORT}"}]}
    assert "PortBindings" not in json.loads(modules["button"]["settings"]["createOptions"])["HostConfig"]


def test_iotedge_env_matches_the_services_and_its_parameters_are_documented():
    modules = iotedge()["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    for name, binary in (("led", "led-service"), ("button", "button-service")):
        for variable in modules[name]["env"]:
            assert variable in env_vars(binary), f"{binary} does not read {variable}"
    assert modules["button"]["env"]["LED_URL"]["value"] == "http://led:8080"
    template = (ROOT / "deploy" / "iotedge" / "deployment.template.json").read_text()
    example = (ROOT / "deploy" / "iotedge" / ".env.example").read_text()
    for parameter in set(re.findall(r"\$\{([A-Z_]+)\}", template)):
        assert f"{parameter}=" in example, f"{parameter} is missing from .env.example"
