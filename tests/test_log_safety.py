"""Nothing secret and nothing forged in what a run shows (issue 16 items 3 and 4): real runs of
the `vidtrack` command in a subprocess (embedded Ray), against the moto server with a session
token, and over a local folder of real clips whose names hold newlines and terminal controls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.exits import EXIT_SOME_FAILED
from jobs.logsafe import REDACTED, redact, remember_credentials, shown
from tests.conftest import JOB_OVERRIDES, MODEL, REPO, S3_CANARY, VIDEOS, cut_video, need_shared

TOKEN = "FwoGZXIvYXdzVIDTRACKSESSIONTOKEN/x+y=z0123456789"  # the shape of an STS session token


def _vidtrack(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    sets = [a for o in JOB_OVERRIDES for a in ("--set", o)]
    return subprocess.run([sys.executable, "-m", "jobs", *args, "--no-progress", "--actors", "1", *sets],
                          env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _clip(tmp_path: Path) -> Path:
    need_shared(VIDEOS, MODEL)
    return cut_video(VIDEOS / "car-detection.mp4", tmp_path / "clip.mp4", 4)


def test_redact_covers_headers_query_strings_and_known_values() -> None:
    remember_credentials(["KNOWNSECRETVALUE42"])
    botocore_headers = ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/s3/aws4_request, "
                        "SignedHeaders=host;x-amz-security-token, Signature=0a1b2c', "
                        "'X-Amz-Security-Token': b'TOK3NTOK3N'}")
    url = "http://h/b/k?X-Amz-Credential=AKIAX%2F2026&X-Amz-Security-Token=TOK3N%2F&X-Amz-Signature=0a1b2c"
    canonical = "host:h\nx-amz-security-token:TOK3NTOK3N\n\nhost;x-amz-security-token\nSignature:\n0a1b2c"
    for text in (botocore_headers, url, canonical, "error with KNOWNSECRETVALUE42 in it"):
        out = redact(text)
        assert REDACTED in out and not any(s in out for s in ("TOK3N", "0a1b2c", "KNOWNSECRET", "AKIAX")), out


def test_shown_escapes_controls_and_keeps_what_prints() -> None:
    assert shown("a\nb\rc\x1b[31md\x1b\u202ee\tf") == "a\\nb\\rc\\x1b[31md\\x1b\\u202ee\\tf"
    assert shown("café-cam 1.mp4") == "café-cam 1.mp4"
    assert shown(os.fsdecode(b"caf\xe9.mp4")) == "caf\\xe9.mp4"
    assert shown("line\nnext", keep="\n") == "line\nnext"


@pytest.mark.slow
def test_credentials_never_reach_logs_manifest_report_or_rays_logs(s3: str, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="creds")
    client.upload_file(str(_clip(tmp_path)), "creds", "raw/cam.mp4")
    ray_tmp = Path(tempfile.mkdtemp(prefix="vtray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {**os.environ, "AWS_SESSION_TOKEN": TOKEN, "RAY_TMPDIR": str(ray_tmp)}
    # -v before and after the command: -vv, botocore's request logs (headers, signatures) included
    r = _vidtrack("-v", "run", "--input", "s3://creds/raw/", "--output", "s3://creds/tracks/",
                  "--s3-endpoint-url", s3, "-v", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "botocore" in r.stderr and REDACTED in r.stderr  # the request logs were there, redacted
    found: dict[str, bytes] = {"stdout": r.stdout.encode(), "stderr": r.stderr.encode()}
    for obj in client.list_objects_v2(Bucket="creds", Prefix="tracks/")["Contents"]:
        found[obj["Key"]] = client.get_object(Bucket="creds", Key=obj["Key"])["Body"].read()
    assert any(k.endswith("report.html") for k in found) and any("manifest" in k for k in found)
    ray_logs = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name.startswith("worker-") for p in ray_logs), "Ray's session logs were not where expected"
    found.update({str(p): p.read_bytes() for p in ray_logs})
    shutil.rmtree(ray_tmp, ignore_errors=True)
    for secret in (TOKEN, S3_CANARY):
        leaks = [name for name, data in found.items() if secret.encode() in data]
        assert not leaks, f"{secret} found in {leaks}"


FORGED = "2026-12-01 10:00:00,000 INFO vidtrack.jobs.run.driver: run FORGED: 99 ok"
NAMES = [f"a\n{FORGED}\n.mp4", "red\x1b[31mcam.mp4", "back\rspace.mp4", "lone\x1b.mp4"]


@pytest.mark.slow
def test_names_never_forge_a_line_or_reach_the_terminal_raw(tmp_path: Path) -> None:
    clip, inp, out = _clip(tmp_path), tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for name in NAMES[1:3]:
        os.link(clip, inp / name)
    for name in (NAMES[0], NAMES[3]):  # not videos: the actor logs their names (forwarded by Ray)
        (inp / name).write_bytes(b"not a video " * 100)
    env = {**os.environ, "VIDTRACK_WORK_DIR": str(tmp_path / "work")}
    r = _vidtrack("-v", "run", "--input", str(inp), "--output", str(out), env=env)
    assert r.returncode == EXIT_SOME_FAILED, r.stderr[-3000:]
    text = r.stdout + r.stderr
    forged = [line for line in text.splitlines() if "FORGED" in line
              and not ("\\n" in line and line.index("\\n") < line.index("FORGED"))]
    assert not forged and "FORGED" in text, forged  # the name was logged, escaped on its own line
    assert "\x1b" not in text and "\r" not in text
    report = next(out.rglob("report.html")).read_bytes()
    assert b"\x1b" not in report and b"\r" not in report and b"red\\x1b[31mcam" in report
    manifest = pq.read_table(next(out.glob("*/manifest/run_id=*/part-0.parquet"))).to_pylist()
    assert {row["source_key"] for row in manifest} == set(NAMES)  # the manifest keeps the real key
