"""machinist's ECS emulator: moto's standalone server with its ECS gaps patched.

Usage: launcher.py --host 127.0.0.1 --port PORT [--parent-pid PID]

Each patch below names the moto 5.2.5 gap it closes (measured in shared/ECS-EMULATOR.md). The patches are
tied to moto internals: keep moto pinned (requirements.txt) and re-run `cargo test --test ecs` before bumping.

Besides the patches, the launcher serves two test hooks outside moto's URL space:
  POST   /_machinist/faults  {"account", "operation" ("*" = any), "status", "code", "message", "count"}
         makes the next `count` ECS calls (-1: until cleared) of that account fail with that error;
  DELETE /_machinist/faults?account=ID  clears them.
The account is moto's `x-moto-account-id` request header (default 123456789012), so parallel tests that
use their own account never see each other's faults.
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

PINNED_MOTO = "5.2.5"
DEFAULT_ACCOUNT = "123456789012"


def warn(msg):
    print(f"ecs-emulator: {msg}", file=sys.stderr, flush=True)


import moto  # noqa: E402

if moto.__version__ != PINNED_MOTO:
    warn(f"moto {moto.__version__} is not the pinned {PINNED_MOTO}: the ECS patches may not apply")

from moto.core.utils import utcnow  # noqa: E402
from moto.ecs import models as ecs_models  # noqa: E402
from moto.ecs import responses as ecs_responses  # noqa: E402
from moto.ecs.exceptions import (  # noqa: E402
    ECSException,
    InvalidParameterException,
    ServiceNotFoundException,
)
from moto.core.responses import ActionResult  # noqa: E402

Task = ecs_models.Task
Service = ecs_models.Service
Backend = ecs_models.EC2ContainerServiceBackend


class ServiceNotActiveException(ECSException):
    def __init__(self):
        super().__init__("ServiceNotActiveException", "Service was not ACTIVE.")


_seq_lock = threading.Lock()
_seq = [0]


def _next_seq():
    with _seq_lock:
        _seq[0] += 1
        return _seq[0]


class _Container:
    """One entry of a task's `containers[]` (moto: only the first definition, always PENDING, wrong taskArn)."""

    def __init__(self, task, definition):
        self.container_arn = (
            f"arn:aws:ecs:{task.region_name}:{task._account_id}:container/"
            f"{task.cluster_name}/{task.id}/{hashlib.md5((task.id + str(definition.get('name'))).encode()).hexdigest()}"
        )
        self.task_arn = task.task_arn
        self.name = definition.get("name")
        self.image = definition.get("image")
        # ECS reports the digest of the pulled image; a stable fake one keeps clients' digest logic honest.
        self.image_digest = "sha256:" + hashlib.sha256(str(self.image).encode()).hexdigest()
        self.last_status = "RUNNING"
        self.exit_code = None
        self.network_interfaces = []
        self.health_status = "HEALTHY" if definition.get("healthCheck") else "UNKNOWN"
        self.cpu = str(definition.get("cpu", 0))
        self.memory = str(definition["memory"]) if definition.get("memory") else None


# --- Patch 1: tasks are RUNNING with timestamps, task-level cpu/memory, version, every container.
# moto: tasks advance one state per DescribeTasks call, carry no startedAt/createdAt/cpu/memory/version.
_orig_task_init = Task.__init__


def _task_init(self, cluster, task_definition, *args, **kwargs):
    _orig_task_init(self, cluster, task_definition, *args, **kwargs)
    now = utcnow()
    self._seq = _next_seq()
    self.created_at = now
    self.pull_started_at = now
    self.pull_stopped_at = now
    self.connectivity_at = now
    self.started_at = now
    self.cpu = str(task_definition.cpu) if task_definition.cpu else None
    self.memory = str(task_definition.memory) if task_definition.memory else None
    self.version = 1
    self.availability_zone = f"{self.region_name}a"
    self.connectivity = "CONNECTED"
    has_check = any(d.get("healthCheck") for d in task_definition.container_definitions)
    self.health_status = "HEALTHY" if has_check else "UNKNOWN"
    if self.launch_type == "FARGATE":
        self.platform_version = self.platform_version or "1.4.0"
    if not self.started_by:
        self.started_by = None
    if not self.stopped_reason:
        self.stopped_reason = None
    self.containers = [_Container(self, d) for d in task_definition.container_definitions]
    self.status = "RUNNING"


Task.__init__ = _task_init
# Tasks stay in their state until StopTask (moto advances one state per DescribeTasks).
Task.advance = lambda self: None


def _stop(task, reason, code="UserInitiated"):
    if task.desired_status == "STOPPED" and task.last_status == "STOPPED":
        return
    now = utcnow()
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = reason or None
    task.stop_code = code
    task.stopping_at = now
    task.execution_stopped_at = now
    task.stopped_at = now
    task.version += 1
    for c in task.containers:
        c.last_status = "STOPPED"
        c.exit_code = 0


def _cluster_tasks(backend, cluster):
    return sorted(backend.tasks.get(cluster.name, {}).values(), key=lambda t: getattr(t, "_seq", 0))


def _find_task(backend, cluster, task_str):
    task_id = task_str.split("/")[-1]
    for task in backend.tasks.get(cluster.name, {}).values():
        if task.id == task_id or task.task_arn == task_str:
            return task
    return None


# --- Patch 2: DescribeTasks searches only the given cluster, exactly, and reports unknown tasks as MISSING.
def _describe_tasks(self, cluster_str, tasks):
    cluster = self._get_cluster(cluster_str)
    if not tasks:
        raise InvalidParameterException("Tasks cannot be empty.")
    found, failures = [], []
    by_id = {t.id: t for t in self.tasks.get(cluster.name, {}).values()}
    for ref in tasks:
        task = by_id.get(ref.split("/")[-1])
        if task is None:
            arn = ref if ref.startswith("arn:") else (
                f"arn:aws:ecs:{self.region_name}:{self.account_id}:task/{cluster.name}/{ref}"
            )
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            found.append(task)
    return found, failures


Backend.describe_tasks_with_failures = _describe_tasks


def _resp_describe_tasks(self):
    cluster = self._get_param("cluster", "default")
    tasks, failures = self.ecs_backend.describe_tasks_with_failures(cluster, self._get_param("tasks", []))
    if "TAGS" in self._get_param("include", []):
        self._include_in_response(ecs_responses.DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(ecs_responses.DESCRIBE_TASKS_TAGS)
    return ActionResult({"tasks": tasks, "failures": failures})


ecs_responses.EC2ContainerServiceResponse.describe_tasks = _resp_describe_tasks


def _page(self, items, default_size):
    """maxResults / nextToken over a stable list (moto returns everything in one page)."""
    size = self._get_param("maxResults") or default_size
    if not isinstance(size, int) or size < 1 or size > 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    token = self._get_param("nextToken")
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError:
            raise InvalidParameterException("Invalid nextToken.")
    page = items[start : start + size]
    nxt = str(start + size) if start + size < len(items) else None
    return page, nxt


# --- Patch 3: ListTasks filters by serviceName (group service:NAME), exact cluster, launchType, defaults to
# desiredStatus RUNNING, and paginates (maxResults ≤ 100, default 100).
def _resp_list_tasks(self):
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster", "default"))
    tasks = _cluster_tasks(backend, cluster)
    service_name = self._get_param("serviceName")
    if service_name:
        service = backend._get_service(cluster.name, service_name)
        tasks = [t for t in tasks if t.group == f"service:{service.name}"]
    family = self._get_param("family")
    if family:
        tasks = [t for t in tasks if t.task_definition_arn.split("/")[-1].split(":")[0] == family]
    started_by = self._get_param("startedBy")
    if started_by:
        tasks = [t for t in tasks if t.started_by == started_by]
    launch_type = self._get_param("launchType")
    if launch_type:
        tasks = [t for t in tasks if t.launch_type == launch_type]
    desired = self._get_param("desiredStatus") or "RUNNING"
    tasks = [t for t in tasks if t.desired_status == desired]
    page, nxt = _page(self, [t.task_arn for t in tasks], 100)
    result = {"taskArns": page}
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


ecs_responses.EC2ContainerServiceResponse.list_tasks = _resp_list_tasks


# --- Patch 4: ListServices lists ACTIVE services only and paginates (default 10, max 100, as AWS).
def _resp_list_services(self):
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster", "default"))
    services = [s for s in backend.services.values() if s.cluster_name == cluster.name and s.status == "ACTIVE"]
    launch_type = self._get_param("launchType")
    if launch_type:
        services = [s for s in services if s.launch_type == launch_type]
    arns = sorted(s.arn for s in services)
    page, nxt = _page(self, arns, 10)
    result = {"serviceArns": page}
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


ecs_responses.EC2ContainerServiceResponse.list_services = _resp_list_services


# --- Patch 5: services run desiredCount tasks. moto never starts or stops a service's tasks.
def _service_tasks(backend, service):
    return [
        t
        for t in backend.tasks.get(service.cluster_name, {}).values()
        if t.group == f"service:{service.name}" and t.desired_status == "RUNNING"
    ]


def _converge(backend, service):
    running = sorted(_service_tasks(backend, service), key=lambda t: t._seq)
    want = service.desired_count if service.status == "ACTIVE" else 0
    if len(running) > want:
        # ECS stops the newest tasks first when scaling in.
        for task in running[want:][::-1]:
            _stop(task, "Scaling activity initiated by deployment", "ServiceSchedulerInitiated")
    elif len(running) < want and service.task_definition:
        tags = []
        if service.propagate_tags == "SERVICE":
            tags = list(service.tags)
        elif service.propagate_tags == "TASK_DEFINITION":
            tags = list(backend.describe_task_definition(service.task_definition).tags)
        deployment_id = service.deployments[0]["id"] if service.deployments else None
        net = service.network_configuration or None
        backend.run_task(
            service.cluster_name,
            service.task_definition,
            want - len(running),
            None,
            deployment_id,
            tags,
            "FARGATE",
            networking_configuration=net,
            group=f"service:{service.name}",
            platform_version=service.platform_version,
        )
    count = len(_service_tasks(backend, service))
    service.running_count = count
    service.pending_count = 0
    for d in service.deployments:
        d["desiredCount"] = service.desired_count
        d["runningCount"] = count
        d["pendingCount"] = 0
        d["rolloutState"] = "COMPLETED"
        d["updatedAt"] = utcnow()


_orig_service_init = Service.__init__


def _service_init(self, *args, **kwargs):
    _orig_service_init(self, *args, **kwargs)
    self.created_at = utcnow()


Service.__init__ = _service_init

_orig_create_service = Backend.create_service


def _create_service(self, *args, **kwargs):
    service = _orig_create_service(self, *args, **kwargs)
    _converge(self, service)
    return service


Backend.create_service = _create_service

_orig_update_service = Backend.update_service


def _update_service(self, props):
    cluster_str = props.get("cluster", "default")
    name = str(props.get("service", "")).split("/")[-1]
    service = self._get_service(cluster_str, name)
    # AWS refuses to update a deleted service; moto updates it.
    if service.status != "ACTIVE":
        raise ServiceNotActiveException()
    service = _orig_update_service(self, props)
    _converge(self, service)
    return service


Backend.update_service = _update_service

_orig_delete_service = Backend.delete_service


def _delete_service(self, cluster_name, service_name, force):
    service = _orig_delete_service(self, cluster_name, service_name, force)
    service.desired_count = 0
    _converge(self, service)
    return service


Backend.delete_service = _delete_service

_orig_describe_services = Backend.describe_services


def _describe_services(self, cluster_str, names):
    # AWS matches a cluster exactly, by name or ARN.
    services, failures = _orig_describe_services(self, cluster_str, names)
    for s in services:
        s.running_count = len(_service_tasks(self, s))
    return services, failures


Backend.describe_services = _describe_services


# --- Patch 6: StopTask and tagging on an unknown task give InvalidParameterException (moto: HTTP 500).
def _stop_task(self, cluster_str, task_str, reason):
    cluster = self._get_cluster(cluster_str)
    task = _find_task(self, cluster, task_str)
    if task is None:
        raise InvalidParameterException("The referenced task was not found.")
    _stop(task, reason)
    return task


Backend.stop_task = _stop_task

_orig_get_resource = Backend._get_resource


def _get_resource(self, resource_arn, parsed_arn):
    if parsed_arn["service"] == "task":
        for tasks in self.tasks.values():
            for task in tasks.values():
                if task.task_arn == resource_arn:
                    return task
        raise InvalidParameterException("The specified task is not found.")
    return _orig_get_resource(self, resource_arn, parsed_arn)


Backend._get_resource = _get_resource


# --- Test hooks: per-account injected faults.
_faults_lock = threading.Lock()
_faults = {}  # account -> list of fault dicts
_serve_lock = threading.Lock()


def _take_fault(account, operation):
    with _faults_lock:
        for fault in _faults.get(account, []):
            if fault["operation"] in ("*", operation) and fault["count"] != 0:
                if fault["count"] > 0:
                    fault["count"] -= 1
                return dict(fault)
    return None


class FaultMiddleware:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_machinist/faults":
            return self.control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("AmazonEC2ContainerServiceV20141113."):
            account = environ.get("HTTP_X_MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT)
            fault = _take_fault(account, target.split(".", 1)[1])
            if fault:
                body = json.dumps({"__type": fault["code"], "message": fault["message"]}).encode()
                start_response(
                    f"{fault['status']} Injected",
                    [
                        ("Content-Type", "application/x-amz-json-1.1"),
                        ("x-amzn-ErrorType", fault["code"]),
                        ("Content-Length", str(len(body))),
                    ],
                )
                return [body]
        # Patch 7: one request at a time. moto's backends are not thread-safe (concurrent CreateService
        # calls raise "dictionary changed size during iteration" → HTTP 500); Python runs one thread at a
        # time anyway, so serializing costs little.
        with _serve_lock:
            return list(self.app(environ, start_response))

    def control(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            spec = json.loads(environ["wsgi.input"].read(length) or b"{}")
            fault = {
                "operation": spec.get("operation", "*"),
                "status": int(spec.get("status", 400)),
                "code": spec.get("code", "ThrottlingException"),
                "message": spec.get("message", "Rate exceeded"),
                "count": int(spec.get("count", -1)),
            }
            with _faults_lock:
                _faults.setdefault(spec.get("account", DEFAULT_ACCOUNT), []).append(fault)
        elif method == "DELETE":
            account = parse_qs(environ.get("QUERY_STRING", "")).get("account", [DEFAULT_ACCOUNT])[0]
            with _faults_lock:
                _faults.pop(account, None)
        body = b'{"ok":true}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _watch_parent(pid):
    """Exit when the process that started us is gone, so a killed test run leaves no server behind."""
    while True:
        time.sleep(1)
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args()
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()

    os.environ.setdefault("MOTO_PORT", str(args.port))
    from werkzeug.serving import run_simple
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    # Import the ECS and EC2 backends up front, so the first ECS call is not the slow one.
    from moto.backends import get_backend

    get_backend("ecs")
    get_backend("ec2")
    app = DomainDispatcherApplication(create_backend_app)
    warn(f"listening on http://{args.host}:{args.port}")
    run_simple(args.host, args.port, FaultMiddleware(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
