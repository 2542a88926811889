"""Background routes with django-q2 in sync mode (tests/settings.py): each job runs inside the request that submits it.

Each route kind's polled result is compared with what the same route answers synchronously.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
from datetime import timedelta

import PIL.Image
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.utils import timezone

from tests.bodies import response_body

pytestmark = pytest.mark.django_db(transaction=True)

SERVICE = """
[[service]]
name = "jobs"
prefix = "/api"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/bg/items"
background = true

[[service.routes]]
type = "update"
table = "pxtserve_test.items"
path = "/items/update"

[[service.routes]]
type = "update"
table = "pxtserve_test.items"
path = "/bg/items/update"
background = true

[[service.routes]]
type = "delete"
table = "pxtserve_test.items"
path = "/items/delete"

[[service.routes]]
type = "delete"
table = "pxtserve_test.items"
path = "/bg/items/delete"
background = true

[[service.routes]]
type = "query"
path = "/by-tag"
query = "tests.pxt_app.queries.items_by_tag"

[[service.routes]]
type = "query"
path = "/bg/by-tag"
query = "tests.pxt_app.queries.items_by_tag"
background = true

[[service.routes]]
type = "query"
path = "/bg/lookup"
query = "tests.pxt_app.queries.item_by_id"
one_row = true
method = "get"
background = true

[[service.routes]]
type = "query"
path = "/thumbs"
query = "tests.pxt_app.queries.images_by_tag"

[[service.routes]]
type = "query"
path = "/bg/thumbs"
query = "tests.pxt_app.queries.images_by_tag"
background = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/bg/media"
inputs = ["id", "note"]
uploadfile_inputs = ["image"]
outputs = ["id", "image", "note"]
background = true
"""


# the key by which a worker finds the route: the service (router) name, the method and the path, no mount prefix
ROUTE = "jobs: POST /bg/items"


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def submit(client, path, body=None, *, method="post"):
    """Submit a background request; the job handle after checking its shape."""
    r = post(client, path, body) if method == "post" else client.get(path, body)
    assert r.status_code == 202, r.content
    handle = r.json()
    assert set(handle) == {"id", "job_url"}
    assert handle["job_url"] == f"http://testserver/api/jobs/{handle['id']}"
    return handle


# every poll body has them (tests/test_jobs_control.py checks their values); the rest of the body is compared here
TIMESTAMPS = ("created_at", "started_at", "finished_at")


def without_timestamps(body):
    assert set(TIMESTAMPS) <= set(body), body
    return {k: v for k, v in body.items() if k not in TIMESTAMPS}


def poll(client, handle):
    r = client.get(handle["job_url"].removeprefix("http://testserver"))
    assert r.status_code == 200, r.content
    return without_timestamps(r.json())


def png(color="red") -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (20, 10), color).save(buf, "PNG")
    return buf.getvalue()


def test_background_insert_result_is_the_sync_body(serve, new_id):
    from pxtserve.models import Job

    client = serve(SERVICE)
    row = {"name": "ada", "score": 1.5, "meta": {"k": [1, 2]}, "tag": "x"}
    key, sync_key = new_id(), new_id()
    handle = submit(client, "/api/bg/items", {"id": key, **row})
    sync = post(client, "/api/items", {"id": sync_key, **row}).json()
    assert poll(client, handle) == {"status": "done", "result": {**sync, "id": key}}
    assert Job.objects.get(pk=handle["id"]).route == ROUTE
    # the row is really there
    assert post(client, "/api/items/delete", {"id": key}).json() == {"num_rows": 1}


def test_background_update_result_is_the_sync_body(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    post(client, "/api/items", {"id": key, "name": "old", "score": 2.0, "tag": "keep"})
    handle = submit(client, "/api/bg/items/update", {"id": key, "name": "new"})
    status = poll(client, handle)
    sync = post(client, "/api/items/update", {"id": key, "name": "new"}).json()
    assert status == {"status": "done", "result": sync}
    # a partial update: what the client did not send kept its value
    assert status["result"]["tag"] == "keep" and status["result"]["name_upper"] == "NEW"


def test_background_delete_result_is_the_sync_body(serve, new_id):
    client = serve(SERVICE)
    key, other = new_id(), new_id()
    post(client, "/api/items", {"id": key, "name": "x"})
    post(client, "/api/items", {"id": other, "name": "y"})
    handle = submit(client, "/api/bg/items/delete", {"id": key})
    assert poll(client, handle) == {"status": "done", "result": post(client, "/api/items/delete", {"id": other}).json()}
    assert poll(client, handle)["result"] == {"num_rows": 1}
    assert poll(client, submit(client, "/api/bg/items/delete", {"id": key}))["result"] == {"num_rows": 0}


def test_background_query_result_is_the_sync_body(serve, new_id):
    client = serve(SERVICE)
    tag = f"jobs-{new_id()}"
    keys = [new_id(), new_id()]
    for key in keys:
        post(client, "/api/items", {"id": key, "name": f"n{key}", "tag": tag})
    status = poll(client, submit(client, "/api/bg/by-tag", {"tag": tag}))
    sync = post(client, "/api/by-tag", {"tag": tag}).json()
    assert status == {"status": "done", "result": sync}
    assert [r["id"] for r in status["result"]["rows"]] == keys
    # GET with query parameters, one row
    one = poll(client, submit(client, "/api/bg/lookup", {"id": keys[0]}, method="get"))
    assert one == {"status": "done", "result": {"id": keys[0], "name": f"n{keys[0]}", "name_upper": f"N{keys[0]}"}}


def test_background_media_urls_are_absolute_under_the_mount(serve, new_id, pxt_tables, tmp_path):
    client = serve(SERVICE)
    tag = f"img-{new_id()}"
    image = tmp_path / "pic.png"
    image.write_bytes(png())
    pxt_tables.images.insert([{"id": new_id(), "image": str(image), "tag": tag}])
    status = poll(client, submit(client, "/api/bg/thumbs", {"tag": tag}))
    assert status == {"status": "done", "result": post(client, "/api/thumbs", {"tag": tag}).json()}
    url = status["result"]["rows"][0]["thumb"]
    assert url.startswith("http://testserver/api/media/")
    r = client.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200 and r["Content-Type"].startswith("image/")


def test_background_upload_is_kept_for_the_worker_then_handed_to_pixeltable(serve, new_id):
    from pxtserve.jobs.store import job_upload_dir

    client = serve(SERVICE)
    key = new_id()
    r = client.post(
        "/api/bg/media", {"id": str(key), "note": "hi", "image": SimpleUploadedFile("p.png", png(), "image/png")}
    )
    assert r.status_code == 202, r.content
    status = poll(client, r.json())
    assert status["status"] == "done", status
    assert status["result"]["id"] == key and status["result"]["note"] == "hi"
    image = client.get(status["result"]["image"].removeprefix("http://testserver"))
    assert image.status_code == 200
    assert PIL.Image.open(io.BytesIO(response_body(image))).size == (20, 10)
    # nothing waits in the job upload directory any more
    assert not job_upload_dir().exists() or not any(job_upload_dir().iterdir())


def test_failing_job_ends_as_error_with_pixeltables_message(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    assert post(client, "/api/items", {"id": key, "name": "a"}).status_code == 200
    sync = post(client, "/api/items", {"id": key, "name": "b"})
    assert 400 <= sync.status_code < 500
    status = poll(client, submit(client, "/api/bg/items", {"id": key, "name": "b"}))
    detail = sync.json()["detail"]
    assert status == {"status": "error", "error": detail["message"], "error_detail": detail}
    assert str(key) in status["error"] or "primary key" in status["error"].lower()


def test_invalid_background_request_is_rejected_before_a_job_exists(serve):
    from pxtserve.models import Job

    client = serve(SERVICE)
    before = Job.objects.count()
    r = post(client, "/api/bg/items", {"id": "not-a-number"})
    assert r.status_code == 422
    assert Job.objects.count() == before


def test_unknown_job_is_a_404_json(serve):
    client = serve(SERVICE)
    r = client.get("/api/jobs/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404
    assert r.json()["detail"]["error_code"] == "JOB_NOT_FOUND"


def test_pending_job_polls_as_pending_then_running(serve):
    from pxtserve.models import Job

    client = serve(SERVICE)
    job = Job.objects.create(route=ROUTE, inputs={})
    r = client.get(f"/api/jobs/{job.id}")
    assert r.status_code == 200 and without_timestamps(r.json()) == {"status": "pending"} and r["Retry-After"] == "1"
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=timezone.now(), worker="elsewhere:1")
    r = client.get(f"/api/jobs/{job.id}")
    assert without_timestamps(r.json()) == {"status": "running"} and r["Retry-After"] == "1"


def test_openapi_documents_the_job_handle_and_status(serve):
    client = serve(SERVICE)
    doc = client.get("/api/openapi.json").json()
    submit_op = doc["paths"]["/api/bg/items"]["post"]
    assert "202" in submit_op["responses"] and "200" not in submit_op["responses"]
    assert submit_op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobHandle")
    assert "200" in doc["paths"]["/api/items"]["post"]["responses"]
    poll_op = doc["paths"]["/api/jobs/{job_id}"]["get"]
    assert poll_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobStatus")
    status = doc["components"]["schemas"]["JobStatus"]
    assert set(status["properties"]) == {"status", "result", "error", "error_detail", *TIMESTAMPS}
    assert status["properties"]["status"]["enum"] == ["pending", "running", "done", "error", "cancelled"]
    assert status["properties"]["created_at"]["format"] == "date-time"


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_recovery_requeues_lost_pending_jobs_and_fails_interrupted_running_ones(serve, new_id):
    from pxtserve.jobs import recovery, run
    from pxtserve.models import Job

    client = serve(SERVICE)
    key = new_id()
    # accepted before a crash, its task lost with the cluster that held it
    lost = Job.objects.create(route=ROUTE, inputs={"id": key, "name": "lost"}, task_id="gone")
    # running when its worker was killed
    killed = Job.objects.create(
        route=ROUTE,
        inputs={"id": new_id(), "name": "killed"},
        status=Job.Status.RUNNING,
        started_at=timezone.now(),
        worker=f"{socket.gethostname()}:{dead_pid()}",
    )
    counts = recovery.recover_jobs()
    assert counts == {"requeued": 1, "interrupted": 1}
    status = poll(client, {"job_url": f"http://testserver/api/jobs/{lost.id}"})
    assert status["status"] == "done" and status["result"]["name_upper"] == "LOST", status
    status = poll(client, {"job_url": f"http://testserver/api/jobs/{killed.id}"})
    assert status["status"] == "error" and "interrupted by a restart" in status["error"]
    # a job already run is not run again by a second delivery of its task
    assert run.run_job(lost.id) == "skipped"


def test_running_job_past_the_task_timeout_is_interrupted(serve):
    from django_q.conf import Conf

    from pxtserve.jobs import recovery
    from pxtserve.models import Job

    serve(SERVICE)
    stale = Job.objects.create(
        route=ROUTE,
        status=Job.Status.RUNNING,
        started_at=timezone.now() - timedelta(seconds=Conf.TIMEOUT + 3600),
        worker="another-host:1",
    )
    fresh = Job.objects.create(
        route=ROUTE, status=Job.Status.RUNNING, started_at=timezone.now(), worker="another-host:1"
    )
    assert recovery.recover_jobs()["interrupted"] == 1
    assert Job.objects.get(pk=stale.pk).status == Job.Status.ERROR
    assert Job.objects.get(pk=fresh.pk).status == Job.Status.RUNNING


def test_finished_jobs_are_pruned_after_the_retention(settings):
    from pxtserve.jobs import recovery
    from pxtserve.models import Job

    now = timezone.now()
    old = Job.objects.create(route="r", status=Job.Status.DONE, finished_at=now - timedelta(days=8))
    recent = Job.objects.create(route="r", status=Job.Status.ERROR, finished_at=now - timedelta(days=6))
    pending = Job.objects.create(route="r")
    Job.objects.filter(pk=pending.pk).update(submitted_at=now - timedelta(days=30))
    assert recovery.prune_jobs() == 1
    assert set(Job.objects.filter(route="r").values_list("id", flat=True)) == {recent.id, pending.id}
    settings.PXTSERVE = {"JOB_RETENTION_SECONDS": 3600}
    assert recovery.prune_jobs() == 1
    assert not Job.objects.filter(pk__in=[old.id, recent.id]).exists()


def test_a_polls_row_read_answers_what_the_whole_row_does():
    """The poll's one-statement read (pxtserve.jobs.store.poll_row) gives the same answer, route and worker as the
    ORM's whole row, for every status, and nothing for an unknown id."""
    from pxtserve.jobs.store import poll_row, status_body
    from pxtserve.models import Job

    now = timezone.now()
    jobs = [
        Job.objects.create(route="GET /r", inputs={"a": 1}),
        Job.objects.create(route="GET /r", status=Job.Status.RUNNING, started_at=now, worker="host:1"),
        Job.objects.create(route="GET /r", status=Job.Status.DONE, started_at=now, finished_at=now,
                           result={"rows": [{"id": 1, "name": "\u00e9"}], "n": 1.5}),
        Job.objects.create(route="POST /r", status=Job.Status.ERROR, finished_at=now, error="bad",
                           error_detail={"error_code": "X", "message": "bad"}),
    ]  # fmt: skip
    for job in jobs:
        whole, read = Job.objects.get(pk=job.pk), poll_row(job.pk)
        assert read is not None
        assert (read.route, read.worker, status_body(read)) == (whole.route, whole.worker, status_body(whole))
    assert status_body(poll_row(jobs[2].pk))["result"] == {"rows": [{"id": 1, "name": "\u00e9"}], "n": 1.5}
    assert poll_row("no-such-job") is None


def test_routers_serving_the_same_route_are_told_apart(pxt_tables):
    from pxtserve import PixeltableRouter
    from pxtserve.jobs.run import find_operation
    from pxtserve.registry import route_digest

    short, full, named = PixeltableRouter(), PixeltableRouter(), PixeltableRouter(name="admin-api")
    op_short = short.add_insert_route(pxt_tables.items, path="/twin", outputs=["id"], background=True)
    op_full = full.add_insert_route(pxt_tables.items, path="/twin", outputs=["id", "name"], background=True)
    op_named = named.add_insert_route(pxt_tables.items, path="/twin", outputs=["id"], background=True)
    assert short.route_key(op_short) == full.route_key(op_full) == "POST /twin"
    assert named.route_key(op_named) == "admin-api: POST /twin"
    assert find_operation("POST /twin", route_digest(op_short)) is op_short
    assert find_operation("POST /twin", route_digest(op_full)) is op_full
    assert find_operation("admin-api: POST /twin") is op_named
    with pytest.raises(Exception, match="not served"):
        find_operation("POST /nowhere")


def test_admin_lists_and_shows_jobs_to_staff(serve, new_id):
    from django.contrib.auth.models import Permission, User
    from django.utils.html import escape

    from pxtserve.models import Job

    client = serve(SERVICE)
    key = new_id()
    job_id = submit(client, "/api/bg/items", {"id": key, "name": "shown"})["id"]
    failed_id = submit(client, "/api/bg/items", {"id": key, "name": "dup"})["id"]

    staff = User.objects.create_user("operator", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    admin = Client()
    admin.force_login(staff)
    with override_settings(ROOT_URLCONF="project.urls"):
        listing = admin.get("/admin/pxtserve/job/")
        assert listing.status_code == 200
        page = listing.content.decode()
        assert job_id in page and "POST /bg/items" in page
        assert admin.get("/admin/pxtserve/job/?status=error").content.decode().count(failed_id) >= 1
        assert admin.get(f"/admin/pxtserve/job/?q={job_id}").status_code == 200
        detail = admin.get(f"/admin/pxtserve/job/{job_id}/change/")
        assert detail.status_code == 200
        text = detail.content.decode()
        assert "&quot;name_upper&quot;: &quot;SHOWN&quot;" in text and "<pre" in text
        failed = admin.get(f"/admin/pxtserve/job/{failed_id}/change/")
        assert failed.status_code == 200
        assert escape(Job.objects.get(pk=failed_id).error) in failed.content.decode()


def test_recovery_leaves_tasks_a_live_cluster_holds(serve, new_id):
    """ORM broker: a waiting task, or one taken since the recovering cluster started, still runs its job."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from pxtserve.jobs import recovery
    from pxtserve.models import Job

    serve(SERVICE)
    broker = get_broker()
    started = timezone.now() - timedelta(minutes=5)
    retry = timedelta(seconds=Conf.RETRY)
    locks = {
        "waiting": timezone.now() - timedelta(seconds=1),
        "taken-by-us": started + timedelta(minutes=1) + retry,
        "taken-before-us": started - timedelta(minutes=1) + retry,
    }
    pending = {}
    for name, lock in locks.items():
        task_id = f"{name}-{new_id()}"
        OrmQ.objects.create(key=broker.list_key, payload=SignedPackage.dumps({"id": task_id}), lock=lock)
        pending[name] = Job.objects.create(route=ROUTE, inputs={"id": new_id(), "name": name}, task_id=task_id)
    try:
        assert recovery.recover_jobs(cluster_started_at=started) == {"requeued": 1, "interrupted": 0}
        statuses = {name: Job.objects.get(pk=job.pk).status for name, job in pending.items()}
        assert statuses == {"waiting": "pending", "taken-by-us": "pending", "taken-before-us": "done"}
    finally:
        OrmQ.objects.filter(key=broker.list_key).delete()
        Job.objects.filter(pk__in=[job.pk for job in pending.values()]).delete()
