"""Planning benchmark: a rerun's plan over N done videos on S3 (a moto server on 127.0.0.1), the
requests it makes and its seconds. Prints one line per archive size:

    vidtrack-bench --plan                      (10,000 and 100,000 done videos)
    python -m bench.plan_bench --videos 10000
    plan: 10000 done videos: 12 requests besides 10 listing the input (1 GET index, 10 LIST _done,
      1 LIST _failed); 10.7 s

Simulated objects, said plainly: the moto server runs in a child process whose S3 backend is filled
in memory before it listens (moto's own `put_object`, no HTTP): N source objects of a few bytes
under raw/, their `_done` markers exactly as jobs/worker/publish.py writes them (identity: size and
the ETag the server lists), and the marker index as the previous run left it (each marker's ETag as
its version). What is timed is real: `jobs.plan.plan_run` over HTTP against that server, every
request counted from the server's own request log. Not a timed test: the numbers go to README.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

PARAMS_ID = "bench0000plan"
BUCKET = "plan-bench"


def _source_key(i: int) -> str:
    return f"cam{i % 50:02d}/2026-11-{1 + i % 28:02d}/clip{i:07d}.mp4"


def _populate(n: int) -> None:
    """Fill moto's in-memory backend as a done run over n videos leaves it (this process only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from moto.s3.models import s3_backends

    from jobs.dataset.index import INDEX_SCHEMA
    from jobs.dataset.markers import DoneMarker, SourceIdentity
    from jobs.plan import video_id_for

    backend = s3_backends["123456789012"]["aws"]
    backend.create_bucket(BUCKET, "us-east-1")
    now = datetime.now(UTC).isoformat()
    ids, versions, bodies = [], [], []
    for i in range(n):
        key, body = _source_key(i), b"v" * (1000 + i % 977)
        backend.put_object(BUCKET, f"raw/{key}", body)
        vid = video_id_for(key)
        marker = DoneMarker(vid, key, SourceIdentity(len(body), now, hashlib.md5(body).hexdigest()),
                            params_id=PARAMS_ID, run_id="bench", attempt=1, frames=7500, fps=25.0,
                            width=1920, height=1080, finished_at=now).to_bytes()
        backend.put_object(BUCKET, f"tracks/{PARAMS_ID}/_done/{vid}.json", marker)
        ids.append(vid)
        versions.append("etag:" + hashlib.md5(marker).hexdigest())
        bodies.append(marker)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict({"video_id": ids, "version": versions, "body": bodies}, schema=INDEX_SCHEMA),
                   sink, compression="zstd")
    backend.put_object(BUCKET, f"tracks/{PARAMS_ID}/_index/done.parquet", sink.getvalue().to_pybytes())


def _serve(port: int, n: int) -> None:
    from moto.server import ThreadedMotoServer

    _populate(n)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    print("ready", flush=True)
    while True:  # until the parent terminates it
        time.sleep(3600)


_LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (/[^ ]*) HTTP/1\.[01]"')


def _requests(log: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _LINE.finditer(log.read_text(errors="replace"))]


def _kind(method: str, path: str) -> str:
    if "list-type" in path:
        return "LIST " + ("_done" if "/_done/" in path else "_failed" if "/_failed/" in path else "other")
    return f"{method} " + ("index" if "/_index/" in path else "marker" if "/_done/" in path else "other")


def _wait_ready(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:  # moto says where it listens, then the child says "ready"
        if line.strip() == "ready":
            return
    raise RuntimeError(f"the moto server did not start: {log.read_text()[-2000:]}")


def bench(n: int) -> str:
    from jobs.dataset.layout import DatasetLayout
    from jobs.plan import DEFAULT_INCLUDE, plan_run
    from jobs.storage import S3Storage

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="vidtrack-plan-bench-") as tmp:
        log = Path(tmp) / "moto.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "bench.plan_bench", "--serve", str(port), str(n)],
                                    stdout=subprocess.PIPE, stderr=out, env=env, text=True)
        try:
            _wait_ready(proc, log)
            endpoint = f"http://127.0.0.1:{port}"
            source, dest = S3Storage(f"s3://{BUCKET}/raw/", endpoint), S3Storage(f"s3://{BUCKET}/tracks/", endpoint)
            mark = len(_requests(log))
            t0 = time.perf_counter()
            plan = plan_run(source, DatasetLayout(dest, PARAMS_ID), list(DEFAULT_INCLUDE), [])
            seconds = time.perf_counter() - t0
            time.sleep(0.5)  # the server logs a request after answering it
            made = _requests(log)[mark:]
        finally:
            proc.terminate()  # the server holds nothing worth a clean stop
            proc.wait(timeout=60)
    assert len(plan.done) == n and not plan.todo, (len(plan.done), len(plan.todo))
    inputs = sum(1 for _, p in made if "list-type" in p and "prefix=raw" in p)
    rest = Counter(_kind(m, p) for m, p in made if not ("list-type" in p and "prefix=raw" in p))
    detail = ", ".join(f"{c} {k}" for k, c in sorted(rest.items()))
    return (f"plan: {n} done videos: {sum(rest.values())} requests besides {inputs} listing the input "
            f"({detail}); {seconds:.1f} s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plan_bench", description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, action="append", help="done videos (repeat; default 10000 and 100000)")
    p.add_argument("--serve", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _serve(*args.serve)
        return 0
    for n in args.videos or [10_000, 100_000]:
        print(bench(n), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
