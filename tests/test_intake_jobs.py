"""The quota on background jobs, over a real server (no job workers: submitted jobs stay pending)."""

from __future__ import annotations

import httpx

from tests.intake_server import KEY, MAX_PENDING_JOBS, intake_server

__all__ = ["intake_server"]
# the job list and cancel are behind the service's auth
AUTH = {"X-API-Key": KEY}


def test_job_inputs_beyond_max_job_input_bytes_are_413_and_store_no_job(intake_server, new_id):
    r = httpx.post(f"{intake_server.url}/open/items/bg", json={"id": new_id(), "name": "n" * 3000})
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert detail["error_code"] == "JOB_INPUTS_TOO_LARGE" and "MAX_JOB_INPUT_BYTES" in detail["message"], detail
    assert httpx.get(f"{intake_server.url}/jobs", headers=AUTH).json()["jobs"] == []


def test_submissions_beyond_max_pending_jobs_are_429_with_retry_after(intake_server, new_id):
    for _ in range(MAX_PENDING_JOBS):
        r = httpx.post(f"{intake_server.url}/open/items/bg", json={"id": new_id(), "name": "queued"})
        assert r.status_code == 202, r.text
    refused = httpx.post(f"{intake_server.url}/open/items/bg", json={"id": new_id(), "name": "one too many"})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    detail = refused.json()["detail"]
    assert detail["error_code"] == "TOO_MANY_PENDING_JOBS" and str(MAX_PENDING_JOBS) in detail["message"], detail
    # the refused one left no job behind; cancelling one frees a place
    jobs = httpx.get(f"{intake_server.url}/jobs", headers=AUTH).json()["jobs"]
    assert len(jobs) == MAX_PENDING_JOBS
    cancel = httpx.post(f"{intake_server.url}/jobs/{jobs[0]['id']}/cancel", headers=AUTH)
    assert cancel.status_code == 200, cancel.text
    again = httpx.post(f"{intake_server.url}/open/items/bg", json={"id": new_id(), "name": "after a cancel"})
    assert again.status_code == 202, again.text
