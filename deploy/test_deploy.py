"""Offline checks of every deployment manifest and of the GitHub workflows: Kubernetes schemas
(kubernetes-validate), least privilege, the device plugin's configuration, secrets as files, the
IoT Edge manifest's structure and limits, actionlint, and no drift from what the services
accept, what compose uses and what the build scripts produce.

    python3 -m pytest deploy/     (scripts/test runs it; needs kubectl, kubernetes-validate,
                                   pyyaml and actionlint, which .ci/run installs)
"""

import functools
import json
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
WORKFLOWS = ROOT / ".github" / "workflows"
OVERLAYS = ["device", "device-int", "simulator"]
BINARIES = {"led-service": "led-service", "button-service": "button-service", "simulator": "simulator"}
# The namespace of the app's Pods (base/kustomization.yaml), held to the restricted standard.
APP_NAMESPACE = "qwiic"
DEVICE_PLUGIN_IMAGE = "squat/generic-device-plugin"
# What the generic device plugin prefixes resource names with unless --domain says otherwise.
DEVICE_PLUGIN_DEFAULT_DOMAIN = "squat.ai"


def render(overlay):
    output = subprocess.run(["kubectl", "kustomize", str(KUBE / "overlays" / overlay)],
                            capture_output=True, text=True, check=True).stdout
    docs = [doc for doc in yaml.safe_load_all(output) if doc]
    assert docs, f"overlay {overlay} rendered nothing"
    return docs


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


def with_defaults(text):
    """A compose value with each ${VARIABLE:-default} replaced by its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def compose_images():
    images = set()
    for name in ("docker-compose.yml", "docker-compose.override.yml"):
        for service in yaml.safe_load((ROOT / name).read_text())["services"].values():
            if "image" in service:
                images.add(with_defaults(service["image"]).rsplit(":", 1)[0])
    assert images, "compose names no image"
    return images


def is_device_plugin(doc):
    return any(c["image"].split("@")[0].split(":")[0].removeprefix("ghcr.io/") == DEVICE_PLUGIN_IMAGE
               for c in doc["spec"]["template"]["spec"]["containers"])


def workloads(docs):
    """The app's DaemonSets and Deployments (everything but the device plugin)."""
    found = [doc for doc in docs
             if doc.get("kind") in ("DaemonSet", "Deployment") and not is_device_plugin(doc)]
    assert found, "the manifests have no workload"
    return found


def containers(docs):
    found = [(doc, doc["spec"]["template"]["spec"], container)
             for doc in workloads(docs)
             for container in doc["spec"]["template"]["spec"]["containers"]]
    assert found, "the manifests have no workload with containers"
    return found


def the_daemonset(docs):
    """The app's DaemonSet: one Pod per device with the led and button containers."""
    found = [doc for doc in workloads(docs) if doc["kind"] == "DaemonSet"]
    assert len(found) == 1, f"expected the one app DaemonSet, found {[d['metadata']['name'] for d in found]}"
    spec = found[0]["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in spec["containers"]}
    assert set(by_name) == {"led", "button"}, set(by_name)
    return spec, by_name


def device_plugins(docs):
    return [doc for doc in docs if doc.get("kind") == "DaemonSet" and is_device_plugin(doc)]


def plugin_devices(container):
    """The device types a generic-device-plugin container advertises: (resource name, spec)."""
    args = container.get("args", [])
    assert "--config" not in " ".join(args), "devices come from --device flags only, where the test reads them"
    domain = DEVICE_PLUGIN_DEFAULT_DOMAIN
    devices = []
    for flag, value in zip(args, args[1:]):
        if flag == "--domain":
            domain = value
        if flag == "--device":
            spec = yaml.safe_load(value)
            devices.append((f"{domain}/{spec['name']}", spec))
    for arg in args:
        if arg.startswith("--device=") or arg.startswith("--domain="):
            pytest.fail(f"write '{arg.split('=')[0]}' and its value as two arguments, as the test reads them")
    assert devices, "the device plugin advertises no device"
    return devices


def quantity(value):
    """A Kubernetes resource quantity as an exact number: '32Mi' → 33554432, '500m' → 1/2."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G|m)?", str(value))
    assert match, f"unsupported quantity {value!r}"
    number, unit = match.groups()
    scale = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9,
             "m": Fraction(1, 1000)}[unit]
    return Fraction(number) * scale


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
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(spec.get(f) for f in ("hostNetwork", "hostPID", "hostIPC"))
        # No host path at all: the device comes from the device plugin, the token from a Secret.
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], doc["metadata"]["name"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security.get("privileged", False) is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "limits" in container["resources"] and "requests" in container["resources"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_app_namespace_enforces_the_restricted_pod_security_standard(overlay):
    docs = render(overlay)
    namespace = next(d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == APP_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Everything of the app is in it (the device Pods find the simulator by its short name);
    # only the device plugin, which the standard would refuse, is elsewhere.
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        if doc["kind"] == "DaemonSet" and is_device_plugin(doc):
            assert doc["metadata"]["namespace"] != APP_NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == APP_NAMESPACE, f"{doc['kind']} {doc['metadata']['name']}"


def test_the_device_overlay_gets_the_bus_from_the_device_plugin():
    docs = render("device")
    spec, by_name = the_daemonset(docs)
    assert spec["nodeSelector"] == {"qwiic.io/button": "true"}
    assert spec["securityContext"]["supplementalGroups"], "the node's i2c group is missing"
    assert all(isinstance(g, int) for g in spec["securityContext"]["supplementalGroups"])
    [(resource, _)] = plugin_devices(device_plugins(docs)[0]["spec"]["template"]["spec"]["containers"][0])
    for name, container in by_name.items():
        # Both containers open the bus, so each asks for it (a device plugin adds the device to
        # the containers that ask, and only to them).
        assert quantity(container["resources"]["limits"][resource]) == 1, name
        assert {"name": "BUS", "value": "/dev/i2c-1"} in container["env"]
        assert not [m for m in container.get("volumeMounts", []) if m["mountPath"].startswith("/dev")], name
    assert "hostPath" not in json.dumps(spec)


def test_the_device_plugin_advertises_the_bus_and_nothing_more():
    docs = render("device")
    plugins = device_plugins(docs)
    assert len(plugins) == 1, "expected one device plugin DaemonSet"
    plugin = plugins[0]
    pod = plugin["spec"]["template"]["spec"]
    [container] = pod["containers"]
    devices = plugin_devices(container)
    assert len(devices) == 1, f"the plugin advertises more than the bus: {[r for r, _ in devices]}"
    [(resource, device)] = devices
    [group] = device["groups"]
    assert not group.get("usb"), "the plugin advertises USB devices"
    [path] = group["paths"]
    # Exactly /dev/i2c-1, at the same path, read and write only (no mknod), as a device.
    assert path["path"] == "/dev/i2c-1" and not re.search(r"[*?\[]", path["path"])
    assert path.get("mountPath", path["path"]) == path["path"]
    assert path.get("type", "Device") == "Device"
    assert path["permissions"] == "rw"
    # The bus the plugin hands out is the one the services open.
    spec, by_name = the_daemonset(docs)
    for container_ in by_name.values():
        assert {"name": "BUS", "value": path["path"]} in container_["env"]
    # One allocation for each container of the one Pod that asks for it, and no more.
    asking = [c for c in by_name.values() if resource in c.get("resources", {}).get("limits", {})]
    assert asking, f"no container asks for {resource}"
    assert group["count"] == sum(quantity(c["resources"]["limits"][resource]) for c in asking)
    # Only on the device nodes, as the app.
    assert pod["nodeSelector"] == spec["nodeSelector"]
    # Its own rights: root for the kubelet's folder, but not privileged, no capabilities, and
    # only two host paths: the kubelet's device-plugins folder and the bus (read-only).
    assert plugin["metadata"]["namespace"] != APP_NAMESPACE
    assert pod.get("automountServiceAccountToken") is False
    assert not any(pod.get(f) for f in ("hostNetwork", "hostPID", "hostIPC"))
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("hostPath" in v for v in volumes.values())
    assert {v["hostPath"]["path"]: v["hostPath"]["type"] for v in volumes.values()} == {
        "/var/lib/kubelet/device-plugins": "Directory", "/dev/i2c-1": "CharDevice"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/var/lib/kubelet/device-plugins", "/dev/i2c-1"}
    assert mounts["/dev/i2c-1"]["readOnly"] is True
    assert "limits" in container["resources"]


def test_the_int_overlay_gives_the_one_gpio_chip_to_the_button_alone_with_the_gpio_group():
    docs = render("device-int")
    [plugin] = device_plugins(docs)
    pod = plugin["spec"]["template"]["spec"]
    [container] = pod["containers"]
    devices = dict(plugin_devices(container))
    assert set(devices) == {"squat.ai/i2c", "squat.ai/int-gpio"}, set(devices)
    [group] = devices["squat.ai/int-gpio"]["groups"]
    [path] = group["paths"]
    assert re.fullmatch(r"/dev/gpiochip\d+", path["path"]) and path["permissions"] == "rw"
    assert path.get("type", "Device") == "Device" and not group.get("usb")
    # The plugin sees the chip read-only, as it sees the bus.
    volumes = {v["hostPath"]["path"]: v["hostPath"]["type"] for v in pod["volumes"]}
    assert volumes == {"/var/lib/kubelet/device-plugins": "Directory", "/dev/i2c-1": "CharDevice",
                       path["path"]: "CharDevice"}
    assert {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}[path["path"]] is True
    spec, by_name = the_daemonset(docs)
    button, led = by_name["button"], by_name["led"]
    # Only the button asks for the chip, once: the one allocation the plugin has.
    assert quantity(button["resources"]["limits"]["squat.ai/int-gpio"]) == group["count"] == 1
    assert "squat.ai/int-gpio" not in led["resources"]["limits"]
    # Both still get the bus, and the button is told its INT line by chip label and line.
    for container_ in (button, led):
        assert quantity(container_["resources"]["limits"]["squat.ai/i2c"]) == 1
    env = {v["name"]: v["value"] for v in button["env"]}
    assert re.fullmatch(r"[a-z0-9-]+:\d+", env["INT_GPIO"]), env["INT_GPIO"]
    assert env["BUS"] == "/dev/i2c-1"
    assert "INT_GPIO" not in {v["name"] for v in led["env"]}
    # The node's gpio group beside its i2c group, by number.
    i2c_groups = the_daemonset(render("device"))[0]["securityContext"]["supplementalGroups"]
    groups = spec["securityContext"]["supplementalGroups"]
    assert groups[:len(i2c_groups)] == i2c_groups and len(groups) == len(i2c_groups) + 1, groups
    assert all(isinstance(g, int) for g in groups)


def test_the_simulator_overlay_needs_no_hardware():
    docs = render("simulator")
    assert not device_plugins(docs)
    spec, by_name = the_daemonset(docs)
    assert "qwiic.io/button" not in spec["nodeSelector"]
    assert "hostPath" not in json.dumps(docs)
    for container in by_name.values():
        assert {"name": "BUS", "value": "tcp://qwiic-simulator:7070"} in container["env"]
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "qwiic-simulator")
    assert {p["port"] for p in service["spec"]["ports"]} == {7070, 8081}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_led_api_is_published(overlay):
    services = {d["metadata"]["name"]: d["spec"] for d in render(overlay) if d["kind"] == "Service"}
    assert "qwiic-led" in services
    published = {name for name, spec in services.items() if spec.get("type", "ClusterIP") != "ClusterIP"}
    assert published == {"qwiic-led"}, published
    for name, spec in services.items():
        if name != "qwiic-led":
            assert not [p for p in spec["ports"] if "nodePort" in p], name
            assert not spec.get("externalIPs"), name
    if overlay == "simulator":
        # The page is reached with kubectl port-forward (deploy/README.md): said, not defaulted.
        assert services["qwiic-simulator"]["type"] == "ClusterIP"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_token_is_a_read_only_secret_file(overlay):
    docs = render(overlay)
    for doc, spec, container in containers(docs):
        for variable in container.get("env", []):
            # No token in the environment: neither a value nor a secretKeyRef.
            if "TOKEN" in variable["name"]:
                assert variable["name"].endswith("_FILE"), f"{container['name']}: {variable['name']} in env"
                assert "valueFrom" not in variable
    spec, by_name = the_daemonset(docs)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for name, container in by_name.items():
        env = {v["name"]: v.get("value") for v in container["env"]}
        token_file = env["API_TOKEN_FILE"]
        assert token_file, f"{name} has no API_TOKEN_FILE"
        # The path the env names is a file of a read-only Secret mount.
        [(mount, item)] = [
            (m, i) for m in container["volumeMounts"] if "secret" in volumes[m["name"]]
            for i in volumes[m["name"]]["secret"]["items"]
            if f"{m['mountPath'].rstrip('/')}/{i['path']}" == token_file]
        assert mount["readOnly"] is True
        secret = volumes[mount["name"]]["secret"]
        # Root-owned, group fsGroup, 0440: uid 65532 reads it through its group, nobody writes.
        assert secret["defaultMode"] == 0o440 and item.get("mode", 0o440) == 0o440
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"] == 65532
        # The services refuse a missing token file: the Pod must wait for the Secret, not start
        # without the file (deploy/README.md: an empty token means no token).
        assert secret.get("optional", False) is False
        assert item["key"] == "token" and secret["secretName"] == "qwiic-api-token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_drift_from_the_services_and_compose(overlay):
    images = compose_images()
    for doc, spec, container in containers(render(overlay)):
        repository = container["image"].rsplit(":", 1)[0]
        assert repository in images, f"{repository} is not an image compose uses"
        binary = BINARIES[repository.split("/")[-1].removeprefix("qwiic-")]
        accepted = env_vars(binary)
        for variable in container.get("env", []):
            assert variable["name"] in accepted, f"{binary} does not read {variable['name']}"
        env = {v["name"]: v["value"] for v in container.get("env", [])}
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if binary == "simulator":
            assert set(ports.values()) == {default_port("simulator", "TCP_LISTEN"), default_port("simulator", "HTTP_LISTEN")}
        elif binary == "button-service":
            # Its /healthz and /metrics stay inside the Pod: nothing exposed.
            assert env["LISTEN_ADDR"].startswith("127.0.0.1:") and not ports, env
        else:
            listen = int(env.get("LISTEN_ADDR", f":{default_port(binary, 'LISTEN_ADDR')}").rsplit(":", 1)[1])
            assert listen in ports.values(), f"{binary} listens on {listen}, the manifest exposes {ports}"
        for probe in ("readinessProbe", "livenessProbe"):
            # The image's own healthcheck, from 127.0.0.1 inside the container: the per-address
            # connection share never refuses it.
            assert container[probe]["exec"]["command"] == [f"/{binary}", "healthcheck"], probe
    # The button reaches the LED service where it listens.
    _, by_name = the_daemonset(render(overlay))
    led_url = next(v["value"] for v in by_name["button"]["env"] if v["name"] == "LED_URL")
    assert led_url.endswith(f":{by_name['led']['ports'][0]['containerPort']}")


def iotedge():
    return json.loads((ROOT / "deploy" / "iotedge" / "deployment.template.json").read_text())


def iotedge_modules():
    modules = iotedge()["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    assert modules, "the IoT Edge manifest has no module"
    return modules


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
        assert "Binds" not in host, "a missing host file under Binds becomes a directory: use Mounts"
    led = json.loads(modules["led"]["settings"]["createOptions"])
    assert led["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "${LED_BIND}", "HostPort": "${LED_PORT}"}]}
    assert "PortBindings" not in json.loads(modules["button"]["settings"]["createOptions"])["HostConfig"]


def test_iotedge_env_matches_the_services_and_its_parameters_are_documented():
    modules = iotedge_modules()
    for name, binary in (("led", "led-service"), ("button", "button-service")):
        for variable in modules[name]["env"]:
            assert variable in env_vars(binary), f"{binary} does not read {variable}"
    assert modules["button"]["env"]["LED_URL"]["value"] == "http://led:8080"
    template = (ROOT / "deploy" / "iotedge" / "deployment.template.json").read_text()
    example = (ROOT / "deploy" / "iotedge" / ".env.example").read_text()
    parameters = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    assert parameters, "the template has no parameter"
    for parameter in parameters:
        assert f"\n{parameter}=" in example, f"{parameter} is missing from .env.example"


def test_iotedge_int_edits_in_the_readme_fit_the_button_module():
    """deploy/README.md's hand edits for the INT pin, applied to the template's button module."""
    readme = (ROOT / "deploy" / "README.md").read_text().split("## Azure IoT Edge")[1].split("\n## ")[0]
    device = json.loads(re.search(r'`(\{"PathOnHost":"\$\{INT_CHIP\}"[^`]*)`', readme).group(1))
    groups = json.loads(re.search(r'`(\["\$\{I2C_GID\}"[^`]*)`', readme).group(1))
    env = json.loads("{" + re.search(r'`("INT_GPIO": \{[^`]*\})`', readme).group(1) + "}")
    button = iotedge_modules()["button"]
    options = json.loads(button["settings"]["createOptions"])
    host = options["HostConfig"]
    # The chip at the same path as on the host, read and write, beside the bus; the gpio group
    # beside the i2c group; the user unchanged.
    assert device == {"PathOnHost": "${INT_CHIP}", "PathInContainer": "${INT_CHIP}", "CgroupPermissions": "rw"}
    assert device not in host["Devices"]
    assert groups == host["GroupAdd"] + ["${GPIO_GID}"]
    assert options["User"] == "65532:65532"
    # INT_GPIO is what button-service reads, and not yet in the template.
    [(name, value)] = env.items()
    assert name in env_vars("button-service") and name not in button["env"]
    assert value == {"value": "${INT_GPIO}"}
    # Each parameter the edits use is in .env.example, commented out until INT is wired.
    example = (ROOT / "deploy" / "iotedge" / ".env.example").read_text()
    for parameter in ("INT_CHIP", "GPIO_GID", "INT_GPIO"):
        assert f"\n# {parameter}=" in example, f"{parameter} is missing from .env.example"


def test_iotedge_keeps_the_token_in_a_read_only_host_file():
    for name, module in iotedge_modules().items():
        env = module["env"]
        assert not [v for v in env if "TOKEN" in v and not v.endswith("_FILE")], f"{name}: a token in the module twin"
        mounts = json.loads(module["settings"]["createOptions"])["HostConfig"]["Mounts"]
        [mount] = [m for m in mounts if m["Target"] == env["API_TOKEN_FILE"]["value"]]
        # Mounts (not Binds): a missing file fails the container's creation instead of
        # appearing as an empty directory.
        assert mount == {"Type": "bind", "Source": "${API_TOKEN_HOST_FILE}",
                         "Target": env["API_TOKEN_FILE"]["value"], "ReadOnly": True}


def test_iotedge_limits_match_kubernetes():
    _, by_name = the_daemonset(render("device"))
    pids = set()
    for name, module in iotedge_modules().items():
        host = json.loads(module["settings"]["createOptions"])["HostConfig"]
        limits = by_name[name]["resources"]["limits"]
        assert host["Memory"] == quantity(limits["memory"]), name
        # Kubernetes gives containers no swap; Docker would give as much again without this.
        assert host["MemorySwap"] == host["Memory"], name
        assert host["NanoCpus"] == quantity(limits["cpu"]) * 10**9, name
        # Kubernetes limits PIDs per Pod in the kubelet's configuration, not in the manifest.
        assert isinstance(host["PidsLimit"], int) and host["PidsLimit"] > 0, name
        pids.add(host["PidsLimit"])
    assert len(pids) == 1, f"the modules have different PID limits: {pids}"


def workflow_files():
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert files, f"no workflow in {WORKFLOWS}"
    return files


def actionlint(*arguments):
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is missing: .ci/run installs it from PyPI")
    return subprocess.run([binary, *map(str, arguments)], cwd=ROOT, capture_output=True, text=True)


def test_workflows_pass_actionlint():
    # With shellcheck on PATH (.ci/run installs it), actionlint also checks every run: script.
    assert shutil.which("shellcheck"), "shellcheck is missing: actionlint would skip the scripts"
    result = actionlint(*workflow_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [nowhere]\n"
                      "    steps:\n      - run: echo $UNQUOTED\n")
    result = actionlint(broken)
    assert result.returncode != 0, "actionlint passed a workflow that needs a job that does not exist"
    assert "[job-needs]" in result.stdout and "SC2086" in result.stdout, result.stdout


def workflow(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_the_release_builds_every_architecture_and_image_the_repository_has():
    release = workflow("release.yml")
    # PyYAML reads the key "on" as True.
    assert release[True]["push"]["tags"], "the release runs on tags"
    binaries = release["jobs"]["binaries"]
    cross = (ROOT / "scripts" / "lib" / "cross.sh").read_text()
    all_arches = re.search(r"^ALL_ARCHES=\(([^)]*)\)", cross, re.M).group(1).split()
    assert all_arches and binaries["strategy"]["matrix"]["arch"] == all_arches
    # The same Rust image as the Dockerfiles' build stages, so all build the same binaries.
    # scripts/build-images uses each runtime stage with its binary from dist/<arch>/ in place of
    # the stage "build": every runtime stage must take its binary from there and nothing else.
    stages = []
    for path in sorted(ROOT.glob("Dockerfile.*")):
        dockerfile = path.read_text()
        build_image = re.search(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS build$", dockerfile, re.M).group(1)
        if build_image.startswith("${"):  # an ARG: its default
            name = build_image.strip("${}")
            build_image = re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.M).group(1)
        assert binaries["container"] == build_image, path.name
        stages += re.findall(r"^FROM scratch AS (\S+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
    assert any("scripts/build-static --install-toolchain" in s.get("run", "") for s in binaries["steps"])
    # Compose builds where it cannot pull, from the same image unless RUST_IMAGE says otherwise.
    for compose in ("docker-compose.yml", "docker-compose.override.yml"):
        defaults = set(re.findall(r"\$\{RUST_IMAGE:-([^}]+)\}", (ROOT / compose).read_text()))
        assert defaults == {binaries["container"]}, f"{compose}: RUST_IMAGE defaults to {defaults}"
    assert sorted(name for name, _ in stages) == sorted(BINARIES)
    for name, body in stages:
        copies = re.findall(r"^COPY --from=build (.*)$", body, re.M)
        assert copies == [f"/out/{name} /{name}"], f"stage {name} copies {copies} from build"
    images = release["jobs"]["images"]
    assert images["permissions"]["packages"] == "write"
    script = "\n".join(s.get("run", "") for s in images["steps"])
    # The images the tests run and push (tests/tests/quickstart.rs), from the binaries built here.
    assert "scripts/build-images --arch all --no-compile" in script and "--source " in script
    assert "scripts/publish-images" in script and "--also latest" in script
    # Signed keyless, with the SBOMs attested, by the script the tests sign with; provenance.
    assert images["permissions"]["id-token"] == "write"
    assert "scripts/sbom" in script and "scripts/sign-images" in script and "--key" not in script
    attested = [s["with"]["subject-name"] for s in images["steps"]
                if s.get("uses", "").startswith("actions/attest-build-provenance@")]
    assert sorted(a.rsplit("/", 1)[1] for a in attested) == sorted(f"qwiic-{b}" for b in BINARIES)
    assert release["jobs"]["release"]["permissions"]["contents"] == "write"


def test_pull_requests_run_the_projects_ci():
    ci = workflow("ci.yml")
    assert "pull_request" in ci[True]
    runs = [s.get("run", "").replace("\\\n", " ") for job in ci["jobs"].values() for s in job["steps"]]
    assert any(re.search(r"^sudo .*\bbash \.ci/run$", run.strip(), re.M) for run in runs), runs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_in_the_led_api_and_keep_the_simulator_to_the_device_pods(overlay):
    policies = {doc["metadata"]["name"]: doc for doc in render(overlay) if doc.get("kind") == "NetworkPolicy"}
    app = policies["qwiic"]["spec"]
    assert app["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "qwiic"}
    assert app["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    if overlay == "simulator":
        simulator = policies["qwiic-simulator"]["spec"]
        assert simulator["ingress"] == [{
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "qwiic"}}}],
            "ports": [{"port": 7070, "protocol": "TCP"}],
        }], "the bus for the device Pods only; the page through port-forward only"


def test_the_device_plugin_is_pinned_by_digest():
    plugin = next(doc for doc in render("device") if doc.get("kind") == "DaemonSet" and is_device_plugin(doc))
    [container] = plugin["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"ghcr\.io/squat/generic-device-plugin@sha256:[0-9a-f]{64}", container["image"]), container["image"]
