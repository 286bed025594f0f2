"""A fault-injecting BigQuery proxy on 127.0.0.1, in front of the emulator (tests/bqemu.py).

Everything the real ``google-cloud-bigquery`` client sends goes through it, so tests can make
BigQuery misbehave the ways it does in production and count what runbook asked for:

* **Errors**: answer chosen requests (by kind: ``insert`` = jobs.insert, ``get`` = jobs.get,
  ``results`` = jobs.getQueryResults, ``cancel``, ``insertAll``, or ``any`` request; optionally
  only those whose SQL contains a text) with 403 ``rateLimitExceeded`` / ``jobRateLimitExceeded``,
  429, 500, 503, a daily quota error (403 ``quotaExceeded``, "Quota exceeded: Your project exceeded
  quota for query usage per day"), or anything else, in BigQuery's error envelope (REST reference,
  "Error messages": ``{"error": {"code", "message", "errors": [{"reason", "message"}]}}``).
* **Holding a job in RUNNING**: a held ``jobs.insert`` is answered as BigQuery answers an accepted
  job (the job resource, ``status.state = RUNNING``) but not forwarded; jobs.get says RUNNING and
  jobs.getQueryResults says ``jobComplete: false`` until :meth:`BigQueryProxy.release`, which
  forwards the insert to the emulator (the job "runs" then, and only then writes its rows).
* **Counting**: every jobs.insert is recorded with its job id, SQL, labels and dry-run flag.

Where the emulator (bqemulator 1.4.0) lacks an API, the proxy answers per BigQuery's REST reference:

* ``jobs.cancel`` (``POST .../jobs/{jobId}/cancel``): ``{"kind": "bigquery#jobCancelResponse",
  "job": <job resource>}``; a held job becomes DONE with ``errorResult.reason = "stopped"`` ("Job
  execution was cancelled: User requested cancellation") and never reaches the emulator.
* Dry runs (``configuration.dryRun = true``): a DONE job resource without a job id whose
  ``statistics.totalBytesProcessed`` and ``statistics.query.totalBytesProcessed`` are what
  ``dry_run_bytes(sql)`` says.
* Job statistics the emulator leaves out or reports as 0 (``totalBytesProcessed``,
  ``totalBytesBilled`` with BigQuery's 10 MiB minimum, ``totalSlotMs`` under ``statistics.query``):
  answered from ``job_bytes(sql)`` when set.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

DAILY_QUOTA_MESSAGE = "Quota exceeded: Your project exceeded quota for query usage per day."
RATE_LIMIT_MESSAGE = "Exceeded rate limits: too many api requests per user per method for this user_method."
JOB_RATE_LIMIT_MESSAGE = "Exceeded rate limits: too many table update operations for this table."
_JOB_PATH = re.compile(r"/projects/([^/]+)/(jobs|queries)(?:/([^/?]+))?(/cancel)?")


@dataclass
class Rule:
    """Answer ``count`` requests of ``kind`` (``"any"``: every request; and, for inserts, whose SQL
    contains ``sql``) with ``status``/``reason``/``message``. With ``after_forwarding`` the request
    reaches the emulator first (an answer lost on the way back)."""

    kind: str
    count: int
    status: int
    reason: str
    message: str
    sql: str = ""
    after_forwarding: bool = False


@dataclass
class Insert:
    """One jobs.insert the proxy saw."""

    job_id: str
    sql: str
    labels: dict[str, str]
    dry_run: bool
    status: int = 0
    timeout_ms: int | None = None  # configuration.jobTimeoutMs


@dataclass
class Held:
    """A job held in RUNNING: the insert it came from, and what became of it."""

    job_id: str
    project: str
    location: str | None
    body: bytes
    headers: dict[str, str]
    resource: dict[str, Any]
    state: str = "held"  # held, released, cancelled


@dataclass
class BigQueryProxy:
    upstream: str
    endpoint: str = ""
    rules: list[Rule] = field(default_factory=list)
    inserts: list[Insert] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    hold_sql: list[str] = field(default_factory=list)
    dry_run_bytes: Callable[[str], int] | None = None
    job_bytes: Callable[[str], int] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _sql_of: dict[str, str] = field(default_factory=dict)
    _created: set[str] = field(default_factory=set)

    # -- what tests ask for ----------------------------------------------------------------------

    def fail(
        self,
        kind: str,
        *,
        count: int = 1,
        status: int = 403,
        reason: str = "rateLimitExceeded",
        message: str | None = None,
        sql: str = "",
        after_forwarding: bool = False,
    ) -> None:
        """Answer the next ``count`` requests of ``kind`` with an error (see :class:`Rule`)."""
        text = message or {
            "rateLimitExceeded": RATE_LIMIT_MESSAGE,
            "jobRateLimitExceeded": JOB_RATE_LIMIT_MESSAGE,
            "quotaExceeded": DAILY_QUOTA_MESSAGE,
        }.get(reason, f"injected {status} {reason}")
        with self.lock:
            self.rules.append(Rule(kind, count, status, reason, text, sql, after_forwarding))

    def daily_quota(self, *, count: int = 1, sql: str = "") -> None:
        """The next ``count`` jobs.insert answer that the project's daily query quota is used up."""
        self.fail("insert", count=count, status=403, reason="quotaExceeded", sql=sql)

    def hold(self, sql: str = "") -> None:
        """Hold every later jobs.insert whose SQL contains ``sql`` in RUNNING."""
        with self.lock:
            self.hold_sql.append(sql)

    def release(self, job_id: str | None = None) -> None:
        """Stop holding (all jobs, or one): forward the held inserts so the jobs run and finish."""
        with self.lock:
            if job_id is None:
                self.hold_sql.clear()
            targets = [h for h in self.held.values() if h.state == "held" and job_id in (None, h.job_id)]
            for held in targets:
                held.state = "released"
        for held in targets:
            self._created.add(held.job_id)
            self._send("POST", f"/bigquery/v2/projects/{held.project}/jobs", held.body, held.headers)

    def insert_count(self, prefix: str = "", *, dry_run: bool = False) -> int:
        with self.lock:
            return sum(1 for i in self.inserts if i.job_id.startswith(prefix) and i.dry_run == dry_run)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy: condition not met in {timeout}s; inserts={self.inserts}")
            time.sleep(0.05)

    # -- the requests ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        match = _JOB_PATH.search(urlsplit(path).path)
        kind, job_id, project, sql = "other", "", "", ""
        request: dict[str, Any] = {}
        if "/insertAll" in path:
            kind = "insertAll"
        elif match:
            project, collection, job_id, cancel = (
                match.group(1),
                match.group(2),
                match.group(3) or "",
                match.group(4),
            )
            if cancel:
                kind = "cancel"
            elif collection == "jobs" and method == "POST" and not job_id:
                kind = "insert"
                request = json.loads(body or b"{}")
                job_id = request.get("jobReference", {}).get("jobId", "")
                sql = request.get("configuration", {}).get("query", {}).get("query", "")
            elif collection == "jobs" and method == "GET" and job_id:
                kind = "get"
            elif collection == "queries" and method == "GET" and job_id:
                kind = "results"
        with self.lock:
            if kind == "insert":
                configuration = request.get("configuration", {})
                self.inserts.append(
                    Insert(
                        job_id,
                        sql,
                        dict(configuration.get("labels") or {}),
                        bool(configuration.get("dryRun")),
                        timeout_ms=int(configuration["jobTimeoutMs"])
                        if configuration.get("jobTimeoutMs")
                        else None,
                    )
                )
                if job_id:
                    self._sql_of[job_id] = sql
            sql = sql or self._sql_of.get(job_id, "")
            rule = next(
                (r for r in self.rules if r.count > 0 and r.kind in (kind, "any") and r.sql in sql), None
            )
            if rule is not None:
                rule.count -= 1
        status, payload = self._answer(kind, method, path, body, headers, request, job_id, project, rule)
        with self.lock:
            self.seen.append((method, path, status))
            if kind == "insert":
                self.inserts[-1].status = status
        return status, payload

    def _answer(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        request: dict[str, Any],
        job_id: str,
        project: str,
        rule: Rule | None,
    ) -> tuple[int, bytes]:
        if rule is not None and not rule.after_forwarding:
            return _error(rule)
        if kind == "insert" and request.get("configuration", {}).get("dryRun"):
            return 200, json.dumps(self._dry_run(request, project)).encode()
        with self.lock:
            held = self.held.get(job_id)
            if (
                kind == "insert"
                and held is None
                and any(part in self._sql_of.get(job_id, "") for part in self.hold_sql)
            ):
                held = self.held[job_id] = Held(
                    job_id, project, request.get("jobReference", {}).get("location"), body, headers,
                    _running_resource(request, project),
                )  # fmt: skip
                return 200, json.dumps(held.resource).encode()
            if kind == "insert" and (held is not None or job_id in self._created):
                # BigQuery refuses a second job with the same id (the emulator would run it again).
                return _error(Rule("insert", 1, 409, "duplicate", f"Already Exists: Job {project}:{job_id}"))
            if held is not None and held.state != "released":
                return self._held_answer(kind, held)
        if kind == "cancel":
            return self._cancel_forwarded(project, job_id, headers)
        status, payload = self._send(method, path, body, headers)
        if kind == "insert" and status == 200:
            with self.lock:
                self._created.add(job_id)
        if rule is not None:
            return _error(rule)
        if kind in ("get", "insert") and status == 200 and self.job_bytes is not None:
            payload = self._with_statistics(payload)
        return status, payload

    def _held_answer(self, kind: str, held: Held) -> tuple[int, bytes]:
        if kind == "cancel":
            self.cancels.append(held.job_id)
            if held.state == "held":
                held.state = "cancelled"
                held.resource["status"] = {
                    "state": "DONE",
                    "errorResult": {"reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"},
                }  # fmt: skip
            return 200, json.dumps({"kind": "bigquery#jobCancelResponse", "job": held.resource}).encode()
        if kind == "results":
            if held.state == "cancelled":
                return _error(Rule("results", 1, 400, "stopped", "Job execution was cancelled"))
            answer = {"kind": "bigquery#getQueryResultsResponse", "jobReference": held.resource["jobReference"],
                      "jobComplete": False}  # fmt: skip
            time.sleep(0.2)  # as a getQueryResults with timeoutMs would wait a while
            return 200, json.dumps(answer).encode()
        return 200, json.dumps(held.resource).encode()

    def _cancel_forwarded(self, project: str, job_id: str, headers: dict[str, str]) -> tuple[int, bytes]:
        # The emulator has no jobs.cancel: a job it knows has finished (it runs them to the end at
        # once), and cancelling a finished job is allowed and changes nothing (REST reference).
        self.cancels.append(job_id)
        status, payload = self._send("GET", f"/bigquery/v2/projects/{project}/jobs/{job_id}", b"", headers)
        if status != 200:
            return status, payload
        return 200, json.dumps({"kind": "bigquery#jobCancelResponse", "job": json.loads(payload)}).encode()

    def _dry_run(self, request: dict[str, Any], project: str) -> dict[str, Any]:
        sql = request["configuration"]["query"]["query"]
        scanned = str(self.dry_run_bytes(sql) if self.dry_run_bytes else 0)
        return {
            "kind": "bigquery#job",
            "jobReference": {"projectId": project, "location": request.get("jobReference", {}).get("location") or "US"},
            "configuration": request["configuration"],
            "status": {"state": "DONE"},
            "statistics": {
                "creationTime": str(int(time.time() * 1000)),
                "totalBytesProcessed": scanned,
                "query": {"totalBytesProcessed": scanned, "totalBytesBilled": "0", "cacheHit": False,
                          "estimatedBytesProcessed": scanned},
            },
        }  # fmt: skip

    def _with_statistics(self, payload: bytes) -> bytes:
        job = json.loads(payload)
        job_id = job.get("jobReference", {}).get("jobId", "")
        if job.get("status", {}).get("state") != "DONE":
            return payload
        assert self.job_bytes is not None
        scanned = self.job_bytes(self._sql_of.get(job_id, ""))
        billed = max(scanned, 10 * 1024 * 1024) if scanned else 0  # BigQuery's 10 MiB minimum
        # The emulator reports 0 (or nothing): these replace its numbers.
        query = job.setdefault("statistics", {}).setdefault("query", {})
        query.update(
            totalBytesProcessed=str(scanned),
            totalBytesBilled=str(billed),
            totalSlotMs=str(scanned // 1000 + 7),
        )
        job["statistics"]["totalBytesProcessed"] = str(scanned)
        return json.dumps(job).encode()

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        host, port = self.upstream.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def _running_resource(request: dict[str, Any], project: str) -> dict[str, Any]:
    reference = dict(request.get("jobReference", {}))
    reference.setdefault("projectId", project)
    reference.setdefault("location", "US")
    now = str(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    return {
        "kind": "bigquery#job",
        "id": f"{project}:{reference['location']}.{reference.get('jobId')}",
        "jobReference": reference,
        "configuration": request.get("configuration", {}),
        "status": {"state": "RUNNING"},
        "statistics": {"creationTime": now, "startTime": now},
    }


def _error(rule: Rule) -> tuple[int, bytes]:
    error = {
        "code": rule.status,
        "message": rule.message,
        "status": "PERMISSION_DENIED" if rule.status == 403 else "",
    }
    error["errors"] = [{"reason": rule.reason, "message": rule.message, "domain": "global"}]
    return rule.status, json.dumps({"error": error}).encode()


def _handler(proxy: BigQueryProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            skip = {"host", "connection", "content-length", "accept-encoding"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            status, payload = proxy.handle(self.command, self.path, body, headers)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    return Handler


@contextmanager
def bigquery_proxy(upstream: str) -> Iterator[BigQueryProxy]:
    """Run a :class:`BigQueryProxy` to ``upstream`` on a free 127.0.0.1 port for the block."""
    proxy = BigQueryProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="bigquery-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
