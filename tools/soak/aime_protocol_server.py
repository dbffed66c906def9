"""An AIME API Server stand-in for the worker soak: the worker side of the 0.9.6 protocol
(shared/aime-protocol.md §2–§5: login, long-poll job requests with `max_job_batch`, progress
lists that stop at the first rejected item, results) for one endpoint (`mixtral_chat`, job type
`mixtral`), with jobs in memory and exact bookkeeping of what the worker sent for each job.

It is a test double, not the real server: the real one (Sanic, from its repository) loses count
of nothing the soak needs, but cannot tell "a second result" from "a result for a job it
forgot", and cannot cancel a running job (0.9.6 never sends `canceled`). Here a client can
cancel a job two ways, both of which the worker must obey by sending no result:
- `canceled`: the next progress item for it is answered `{"job_id", "canceled": true}` (how
  servers before 0.9.6 cancelled);
- `lapse`: the job is taken off the worker, so its next progress gets `{}` (0.9.6's answer for a
  job that lapsed or that the server no longer runs on this worker).
"""
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTH_KEY = "5b07e305b50505ca2b3284b4ae5f65d1"
JOB_TYPE = "mixtral"


class Job:
    def __init__(self, job_id: str, data: dict):
        self.id = job_id
        self.data = data
        self.state = "queued"            # queued, processing, done, lapsed, canceled
        self.worker: str | None = None
        self.progress: list[dict] = []   # progress_data of every accepted item
        self.results: list[dict] = []
        self.late_progress = 0           # progress items after the result (must not happen)
        self.cancel_mode: str | None = None
        self.cancel_delivered = False    # the worker was told (canceled / {})
        self.cancelled_queued = False    # cancelled before it was handed out (the worker never saw it)
        self.results_after_cancel = 0    # results that arrived after it was told (must not happen)
        self.results_raced_cancel = 0    # results for a job cancelled before the worker heard it
        self.finished = threading.Event()  # a result arrived or the cancel was delivered
        self.submitted = time.time()


class AIMEProtocolServer:
    def __init__(self, poll_seconds: int = 10):
        self.poll_seconds = poll_seconds
        self.lock = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.workers: dict[str, str] = {}
        self.counter = 0
        self.requests: dict[str, int] = {}
        self.max_handed_out = 0

    # ---- client side ----------------------------------------------------------------------
    def submit(self, fields: dict) -> Job:
        with self.lock:
            self.counter += 1
            job_id = f"{uuid.uuid4()}#{self.counter}"
            data = {"prompt_input": "", "chat_context": None, "top_k": 40, "top_p": 0.9, "temperature": 0.8,
                    "max_gen_tokens": 2000, **fields, "job_id": job_id, "start_time": time.time()}
            job = Job(job_id, data)
            self.jobs[job_id] = job
            self.queue.append(job_id)
            self.lock.notify_all()
            return job

    def cancel(self, job: Job, mode: str):
        """Marks a job cancelled; the worker hears it on the job's next progress item."""
        with self.lock:
            if job.results or job.cancel_mode:
                return
            job.cancel_mode = mode
            if job.state == "queued":  # never handed out: the worker never sees it
                self.queue.remove(job.id)
                job.state = mode
                job.cancel_delivered = job.cancelled_queued = True
                job.finished.set()
            elif mode == "lapse":
                job.state, job.worker = "lapsed", None

    def in_flight(self) -> int:
        with self.lock:
            return sum(1 for j in self.jobs.values() if j.state in ("queued", "processing") and not j.results)

    # ---- routes ---------------------------------------------------------------------------
    def handle(self, path: str, body: bytes) -> tuple[int, object]:
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
        try:
            json_body = json.loads(body)
        except ValueError:
            return 400, {"description": "Bad Request", "status": 400, "message": "Failed when parsing body as json"}
        if path == "/worker_login":
            return self.login(json_body)
        if path == "/worker_check_server_status":
            return 200, {"logged_in": json_body.get("auth") in self.workers, "job_type_present": json_body.get("job_type") == JOB_TYPE,
                         "key_valid": json_body.get("auth_key") == AUTH_KEY}
        if path == "/worker_job_request":
            return self.job_request(json_body)
        if path == "/worker_job_progress":
            return self.progress(json_body)
        if path == "/worker_job_result":
            return self.result(json_body)
        return 404, {"description": "Not Found", "status": 404, "message": f"Requested URL {path} not found"}

    def login(self, body: dict) -> tuple[int, object]:
        params = body.get("worker_parameters") or {}
        if not params.get("auth") or params.get("job_type") != JOB_TYPE:
            return 500, {"description": "Internal Server Error", "status": 500, "message": "Internal Server Error"}
        if params.get("auth_key") != AUTH_KEY:
            return 200, {"success": False, "error_msg": f"Worker not authorized on job type {JOB_TYPE}"}
        with self.lock:
            self.workers[params["auth"]] = "waiting"
        return 200, {"success": True, "request_timeout": self.poll_seconds, "api_server_version": "0.9.6"}

    def auth_failure(self, item: dict) -> dict | None:
        auth = item.get("auth") or (item.get("progress_data") or {}).get("auth") or ""
        if auth not in self.workers:
            return {"success": False, "error_msg": f"Worker {auth} not authorized"}
        if item.get("auth_key") != AUTH_KEY:
            return {"success": False, "error_msg": f"Worker {auth} not authorized on job type {JOB_TYPE}"}
        return None

    def job_request(self, body: dict) -> tuple[int, object]:
        auth = body.get("auth", "")
        deadline = time.time() + self.poll_seconds
        with self.lock:
            if auth not in self.workers or body.get("auth_key") != AUTH_KEY:
                return 200, {"cmd": "error", "msg": f"Worker {auth} needs to login before being allowed to make job requests"}
            max_batch = body.get("max_job_batch")
            if not isinstance(max_batch, int) or max_batch < 1:
                return 500, {"description": "Internal Server Error", "status": 500, "message": "Internal Server Error"}
            while not self.queue:
                left = deadline - time.time()
                if left <= 0:
                    return 200, {"cmd": "no_job"}
                self.lock.wait(left)
            ids = self.queue[:max_batch]
            del self.queue[:len(ids)]
            self.max_handed_out = max(self.max_handed_out, len(ids))
            entries = []
            now = time.time()
            for i, job_id in enumerate(ids):
                job = self.jobs[job_id]
                job.state, job.worker = "processing", auth
                entries.append({**job.data, "start_time_compute": now if i == 0 else None})
            self.workers[auth] = "processing"
            return 200, {"cmd": "job", "endpoint_name": "mixtral_chat", "job_data": entries}

    def progress(self, body) -> tuple[int, object]:
        items = body if isinstance(body, list) else [body]
        replies = []
        with self.lock:
            for item in items:
                failure = self.auth_failure(item)
                if failure:
                    return 200, failure
                job = self.jobs.get(item.get("job_id"))
                if job is None:
                    return 500, {"description": "Internal Server Error", "status": 500, "message": "Internal Server Error"}
                if job.results:
                    job.late_progress += 1
                if job.state != "processing" or job.worker != item.get("auth"):
                    if job.cancel_mode == "lapse" and not job.results:
                        job.cancel_delivered = True
                        job.finished.set()
                    return 200, {}
                job.progress.append(item.get("progress_data") or {})
                if job.cancel_mode == "canceled":
                    job.state = "canceled"
                    job.cancel_delivered = True
                    job.finished.set()
                    replies.append({"job_id": job.id, "canceled": True, "progress_input_params": []})
                else:
                    replies.append({"success": True})
        return 200, replies

    def result(self, body: dict) -> tuple[int, object]:
        with self.lock:
            failure = self.auth_failure(body)
            if failure:
                return 200, failure
            job = self.jobs.get(body.get("job_id"))
            if job is None:
                return 200, {"cmd": "warning", "msg": f"Job with job id {body.get('job_id')} not found in worker {body.get('auth')}!"}
            if job.cancel_delivered:
                job.results_after_cancel += 1
                return 200, {"cmd": "warning", "msg": f"Job with job id {job.id} not found in worker {body.get('auth')}!"}
            if job.cancel_mode:
                job.results_raced_cancel += 1
            job.results.append(body)
            second = len(job.results) > 1
            job.state = "done"
            job.finished.set()
            if second:
                return 500, {"description": "Internal Server Error", "status": 500, "message": "Internal Server Error"}
            return 200, {"cmd": "ok"}

    # ---- HTTP -----------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                status, reply = state.handle(self.path, self.rfile.read(length))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer((host, port), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd
