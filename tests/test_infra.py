"""infra/ files parse, and the cluster config validates against Ray's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"


def test_ray_cluster_config_validates_against_rays_schema() -> None:
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())
    validate_config(cfg)  # raises on a schema violation
    assert cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"]["CPU"] == 0


def test_schema_check_is_real() -> None:
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["not_a_field"] = 1
    with pytest.raises(jsonschema.ValidationError, match="not_a_field"):
        validate_config(cfg)


def test_rayjob_runs_the_job_module() -> None:
    job = yaml.safe_load((INFRA / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["entrypoint"].startswith("python -m jobs run --address auto")
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"
    text = (INFRA / "rayjob.yaml").read_text().lower()
    assert "secret" not in text and "aws_access_key" not in text


def test_iam_policy_is_least_privilege() -> None:
    policy = json.loads((INFRA / "iam-policy.json").read_text())
    writes = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    for st in policy["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        assert st["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in actions)
        assert all(r != "*" for r in resources)
        if writes & set(actions):
            assert all(r.endswith("/tracks/*") for r in resources), st
        if "s3:ListBucket" in actions:
            assert "Condition" in st, st  # listing restricted to prefixes
    assert not any("s3:DeleteObject" in json.dumps(st) for st in policy["Statement"])


def test_dockerfile_installs_the_locked_environment() -> None:
    lines = [ln.strip() for ln in (INFRA / "Dockerfile").read_text().splitlines() if ln.strip()]
    assert lines[[ln.startswith("FROM") for ln in lines].index(True)].startswith("FROM nvidia/cuda:")
    text = "\n".join(lines)
    assert "--no-deps -r requirements.lock" in text and "pip install --no-cache-dir --no-deps -e ." in text
    assert "YOLO_AUTOINSTALL=false" in text
    installs = [ln for ln in lines if "pip install" in ln]
    assert all("--no-deps" in ln for ln in installs), installs  # nothing resolved afresh: ray[default] is locked
