"""Tests for the GPU work-pool templates: Prefect accepts them and the Kubernetes one asks for a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

POOLS = Path(__file__).resolve().parents[2] / "deploy" / "work-pools"


TEMPLATES = [("kubernetes-gpu.json", "kubernetes"), ("process-gpu-box.json", "process")]


@pytest.mark.parametrize(("name", "pool_type"), TEMPLATES)
def test_templates_pass_prefect_validation(name, pool_type):
    from prefect.server.schemas.actions import WorkPoolCreate

    template = json.loads((POOLS / name).read_text())
    WorkPoolCreate(name="flywheel-test", type=pool_type, base_job_template=template)
    # A planted unknown placeholder is refused by the same check, so the check has teeth.
    broken = json.loads((POOLS / name).read_text())
    broken["job_configuration"]["planted"] = "{{ no_such_variable }}"
    with pytest.raises(ValueError, match="must be present"):
        WorkPoolCreate(name="flywheel-test", type=pool_type, base_job_template=broken)


def test_kubernetes_template_requests_a_gpu_and_shared_memory():
    template = json.loads((POOLS / "kubernetes-gpu.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert template["variables"]["properties"]["gpu_count"]["default"] == 1
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
