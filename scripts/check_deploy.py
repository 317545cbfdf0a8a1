"""Consistency checks of deploy/ that need no Docker engine or cluster.

- deploy/compose/docker-compose.yml: parses (anchors resolved), every service has an image or a build, every
  `depends_on` names a service, `service_healthy` only on services with a healthcheck, every Aloft service
  runs a binary the Dockerfile installs, and every service binary of the workspace is deployed.
- deploy/k8s/base: every service binary has a Deployment.
- deploy/grafana/aloft-dashboard.json: parses, and charts only metrics some crate's metrics.rs declares.
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
problems = []


def problem(text):
    problems.append(text)


service_binaries = sorted(
    f"aloft-{path.parent.name}"
    for path in (ROOT / "services").glob("*/Cargo.toml")
    if path.parent.name != "cli"
)

dockerfile = (ROOT / "Dockerfile").read_text()
installed = set(re.findall(r"/src/target/release/(aloft[a-z-]*)", dockerfile))
for binary in service_binaries + ["aloft"]:
    if binary not in installed:
        problem(f"Dockerfile does not install {binary}")

if not re.search(r"^HEALTHCHECK ", dockerfile, re.M):
    problem("Dockerfile has no HEALTHCHECK")
users = re.findall(r"^USER (\S+)", dockerfile, re.M)
if not users or users[-1] in ("root", "0"):
    problem("Dockerfile's runtime image does not run as a non-root USER")

compose = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yml").read_text())
services = compose.get("services") or {}
if not services:
    problem("compose: no services")
commands_run = set()
for name, service in services.items():
    if not isinstance(service, dict):
        problem(f"compose: service {name} is not a mapping")
        continue
    if "image" not in service and "build" not in service:
        problem(f"compose: service {name} has neither image nor build")
    depends = service.get("depends_on") or {}
    for target, condition in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
        if target not in services:
            problem(f"compose: {name} depends on unknown service {target}")
            continue
        wanted = (condition or {}).get("condition", "service_started")
        if wanted not in ("service_started", "service_healthy", "service_completed_successfully"):
            problem(f"compose: {name} -> {target}: unknown condition {wanted}")
        if wanted == "service_healthy" and "healthcheck" not in services[target]:
            problem(f"compose: {name} waits for {target} to be healthy, but {target} has no healthcheck")
    command = service.get("command")
    if isinstance(command, list) and command and str(command[0]).startswith("aloft"):
        commands_run.add(command[0])
        if command[0] not in installed:
            problem(f"compose: {name} runs {command[0]}, which the Dockerfile does not install")
    for port in service.get("ports") or []:
        if not re.fullmatch(r"((\d{1,3}\.){3}\d{1,3}:)?(\d+:)?\d+(/tcp|/udp)?", str(port)):
            problem(f"compose: {name}: port {port!r} is not [IP:]HOST:CONTAINER")
for binary in service_binaries:
    if binary not in commands_run:
        problem(f"compose: no service runs {binary}")

k8s_base = ROOT / "deploy/k8s/base"
deployed = set()
for manifest in k8s_base.glob("*.yaml"):
    for document in yaml.safe_load_all(manifest.read_text()):
        if isinstance(document, dict) and document.get("kind") == "Deployment":
            for container in document["spec"]["template"]["spec"]["containers"]:
                deployed.add(container["command"][0])
for binary in service_binaries:
    if binary not in deployed:
        problem(f"k8s base: no Deployment runs {binary}")

declared = set()
for metrics_file in list(ROOT.glob("services/*/src/metrics.rs")) + list(ROOT.glob("libs/*/src/metrics.rs")):
    for kind, name in re.findall(r'Metric::(counter|gauge|histogram)\(\s*"(aloft_[a-z_]+)"', metrics_file.read_text()):
        declared.add(name)
        if kind == "histogram":
            # A histogram is exported as three series.
            declared.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
dashboard = json.loads((ROOT / "deploy/grafana/aloft-dashboard.json").read_text())
charted = set()
for panel in dashboard.get("panels", []):
    for target in panel.get("targets", []):
        charted.update(re.findall(r"aloft_[a-z_]+", target.get("expr", "")))
if not charted:
    problem("dashboard: charts no aloft metric")
for metric in sorted(charted - declared):
    problem(f"dashboard: charts {metric}, which no metrics.rs declares")

if problems:
    for text in problems:
        print(f"[check_deploy] {text}", file=sys.stderr)
    sys.exit(1)
print(
    f"[check_deploy] compose: {len(services)} services consistent; k8s base deploys {len(service_binaries)} "
    f"service binaries; dashboard charts {len(charted)} declared metrics",
    file=sys.stderr,
)
