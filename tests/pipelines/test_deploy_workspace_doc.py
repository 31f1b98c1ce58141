"""docs/deploy.md's ``grpc_server`` workspace is a valid Dagster workspace that names the
location and port the same page's code-server command serves, and the location name the
repository's ``workspace.yaml`` uses (sensor state and run history are attached to it)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from dagster._core.workspace.config_schema import process_workspace_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def test_the_grpc_workspace_snippet_matches_the_code_server_command() -> None:
    [snippet] = re.findall(r"```yaml\n(load_from:\n\s+- grpc_server:.*?)```", DEPLOY, re.S)
    config = yaml.safe_load(snippet.replace("<code-server-host>", "code-server"))
    assert process_workspace_config(config).success
    [entry] = config["load_from"]
    command = re.search(r"`(dagster api grpc [^`]*)`", DEPLOY).group(1)
    assert f"-p {entry['grpc_server']['port']} " in command
    assert f'--location-name "{entry["grpc_server"]["location_name"]}"' in command
    [local] = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))["load_from"]
    assert local["python_module"]["location_name"] == entry["grpc_server"]["location_name"]
    assert "-w workspace.grpc.yaml" in DEPLOY and "dagster-webserver -w workspace.yaml" not in DEPLOY
