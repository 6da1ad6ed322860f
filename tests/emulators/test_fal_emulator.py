"""The emulator speaks fal's queue protocol (docs/fal-queue.md), checked with raw httpx calls so
these tests do not depend on our client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from emulators.fal_emulator import FalEmulator, data_uri, make_image

ENDPOINT = "fal-ai/flux-2/lora/edit"


def auth(fal: FalEmulator) -> dict[str, str]:
    return {"Authorization": f"Key {fal.key}"}


def edit_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "prompt": "make it red",
        "image_urls": [data_uri(make_image((10, 200, 10)), "image/png")],
        "image_size": "square",
        "seed": 3,
    }
    body.update(overrides)
    return body


async def submit(http: httpx.AsyncClient, fal: FalEmulator, body: object) -> dict[str, object]:
    response = await http.post(f"{fal.queue_url}/{ENDPOINT}", json=body, headers=auth(fal))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def http() -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def test_submit_answers_the_documented_body_and_status_codes_change_at_completion(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.concurrency = 1
    fal_emulator.queue_delay = 0.1
    fal_emulator.run_time = 0.2
    first = await submit(http, fal_emulator, edit_body())
    second = await submit(http, fal_emulator, edit_body())
    assert set(second) >= {"status", "request_id", "response_url", "status_url", "cancel_url"}
    assert second["status"] == "IN_QUEUE" and second["queue_position"] == 1
    assert second["response_url"] == (
        f"{fal_emulator.queue_url}/fal-ai/flux-2/requests/{second['request_id']}"
    )

    await fal_emulator.wait_for_status(str(first["request_id"]), "IN_PROGRESS")
    queued = await http.get(str(second["status_url"]), headers=auth(fal_emulator))
    assert queued.status_code == 202
    assert queued.json()["queue_position"] == 0
    assert "logs" in queued.json() and queued.json()["logs"] is None
    assert queued.headers["x-fal-request-id"] == second["request_id"]

    running = await http.get(
        str(first["status_url"]), params={"logs": "true"}, headers=auth(fal_emulator)
    )
    assert running.status_code == 202 and running.json()["status"] == "IN_PROGRESS"
    assert running.json()["logs"][0]["message"] == "Loading LoRA weights"

    await fal_emulator.wait_for_status(str(first["request_id"]), "COMPLETED")
    done = await http.get(
        str(first["status_url"]), params={"logs": "0"}, headers=auth(fal_emulator)
    )
    assert done.status_code == 200
    assert done.json()["logs"] is None and "metrics" in done.json()
    assert "error" not in done.json()


@pytest.mark.parametrize("value", ["1", "0", "true", "FALSE", "True", ""])
async def test_logs_parameter_accepts_every_spelling_clients_send(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, value: str
) -> None:
    queued = await submit(http, fal_emulator, edit_body())
    response = await http.get(
        str(queued["status_url"]), params={"logs": value}, headers=auth(fal_emulator)
    )
    assert response.status_code in (200, 202)
    assert (response.json()["logs"] is not None) == (value.lower() in ("1", "true"))


async def test_every_url_form_is_routed(fal_emulator: FalEmulator, http: httpx.AsyncClient) -> None:
    queued = await submit(http, fal_emulator, edit_body())
    request_id = queued["request_id"]
    await fal_emulator.wait_for_status(str(request_id), "COMPLETED")
    base = fal_emulator.queue_url
    for url in (
        f"{base}/fal-ai/flux-2/requests/{request_id}/status/",
        f"{base}/{ENDPOINT}/requests/{request_id}/status",
        f"{base}/fal-ai/flux-2/requests/{request_id}/response",
        f"{base}/{ENDPOINT}/requests/{request_id}/",
    ):
        response = await http.get(url, headers=auth(fal_emulator))
        assert response.status_code == 200, url
    other_app = await http.get(
        f"{base}/fal-ai/other/requests/{request_id}/status", headers=auth(fal_emulator)
    )
    assert other_app.status_code == 404


async def test_result_before_completion_is_400_still_in_progress(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.queue_delay = 5.0
    queued = await submit(http, fal_emulator, edit_body())
    response = await http.get(str(queued["response_url"]), headers=auth(fal_emulator))
    assert response.status_code == 400
    assert response.json() == {"detail": "Request is still in progress"}


async def test_invalid_input_is_accepted_at_submit_and_fails_422_at_result(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    body = edit_body(guidance_scale=25, num_inference_steps="8", enable_safety_checker="true")
    del body["prompt"]
    queued = await submit(http, fal_emulator, body)
    await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    status = await http.get(str(queued["status_url"]), headers=auth(fal_emulator))
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    result = await http.get(str(queued["response_url"]), headers=auth(fal_emulator))
    assert result.status_code == 422
    items = {tuple(item["loc"]): item for item in result.json()["detail"]}
    # Lax like pydantic: "8" and "true" coerce; the missing prompt and 25 > 20 do not.
    assert set(items) == {("body", "prompt"), ("body", "guidance_scale")}
    assert items[("body", "guidance_scale")]["type"] == "less_than_equal"
    assert items[("body", "guidance_scale")]["ctx"] == {"le": 20.0}
    assert result.headers["x-fal-billable-units"] == "0"


async def test_output_is_input_one_resized_and_tinted_by_seed(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    from emulators.fal_emulator import expected_pixel
    from emulators.fal_emulator.images import decode_image

    queued = await submit(
        http,
        fal_emulator,
        edit_body(image_size={"width": 640, "height": 512}, output_format="webp", num_images=2),
    )
    await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    result = (await http.get(str(queued["response_url"]), headers=auth(fal_emulator))).json()
    assert result["seed"] == 3 and result["has_nsfw_concepts"] == [False, False]
    assert result["prompt"] == "make it red"
    for index, image in enumerate(result["images"]):
        assert image["content_type"] == "image/webp" and image["file_name"].endswith(".webp")
        served = await http.get(image["url"])
        assert served.status_code == 200 and len(served.content) == image["file_size"]
        picture = decode_image(served.content)
        assert picture.size == (640, 512) == (image["width"], image["height"])
        pixel = picture.getpixel((320, 256))
        expected = expected_pixel((10, 200, 10), seed=3, index=index)
        assert all(abs(a - b) <= 6 for a, b in zip(pixel, expected, strict=True))


async def test_the_tint_follows_the_loras_and_their_scales(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    """A LoRA at another strength gives another output, as on the model; scale 0 is none."""
    from emulators.fal_emulator import expected_pixel
    from emulators.fal_emulator.images import decode_image

    stacks: list[list[dict[str, object]]] = [
        [],
        [{"path": "owner/clay", "scale": 0.0}],
        [{"path": "owner/clay", "scale": 0.5}],
        [{"path": "owner/clay", "scale": 1.5}],
        [{"path": "owner/clay", "scale": 0.5}, {"path": "owner/ink", "scale": 1.0}],
    ]
    pixels = []
    for loras in stacks:
        queued = await submit(http, fal_emulator, edit_body(loras=loras))
        await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
        result = (await http.get(str(queued["response_url"]), headers=auth(fal_emulator))).json()
        picture = decode_image((await http.get(result["images"][0]["url"])).content)
        weights = [(str(lora["path"]), float(lora["scale"])) for lora in loras]
        assert picture.getpixel((5, 5)) == expected_pixel((10, 200, 10), 3, 0, weights)
        pixels.append(picture.getpixel((5, 5)))
    assert pixels[0] == pixels[1]  # a LoRA at scale 0 changes nothing
    assert len({pixels[0], *pixels[2:]}) == 4


async def test_sync_mode_returns_data_uris(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    queued = await submit(http, fal_emulator, edit_body(sync_mode=True, output_format="jpeg"))
    await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    result = (await http.get(str(queued["response_url"]), headers=auth(fal_emulator))).json()
    assert result["images"][0]["url"].startswith("data:image/jpeg;base64,")


async def test_cancel_answers_by_state(fal_emulator: FalEmulator, http: httpx.AsyncClient) -> None:
    fal_emulator.queue_delay = 5.0
    queued = await submit(http, fal_emulator, edit_body())
    cancelled = await http.put(str(queued["cancel_url"]), headers=auth(fal_emulator))
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    job = await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    assert job.error_type == "client_cancelled" and not job.ran
    again = await http.put(str(queued["cancel_url"]), headers=auth(fal_emulator))
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    result = await http.get(str(queued["response_url"]), headers=auth(fal_emulator))
    assert result.status_code == 499 and result.json()["error_type"] == "client_cancelled"
    unknown = await http.put(
        f"{fal_emulator.queue_url}/fal-ai/flux-2/requests/nope/cancel", headers=auth(fal_emulator)
    )
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})


async def test_auth_errors_match_fal_bodies(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    url = f"{fal_emulator.queue_url}/{ENDPOINT}"
    wrong = await http.post(url, json=edit_body(), headers={"Authorization": "Key a:b"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "No user found for Key ID and Secret"}
    malformed = await http.post(url, json=edit_body(), headers={"Authorization": "Key nocolon"})
    assert malformed.status_code == 401 and "Expected '<key_id>:<key_secret>'" in malformed.text
    fal_emulator.locked_reason = (
        "Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
    )
    locked = await http.post(url, json=edit_body(), headers=auth(fal_emulator))
    assert locked.status_code == 403
    assert locked.json()["detail"].startswith("User is locked. Reason: Exhausted balance.")
    assert fal_emulator.jobs == {}
    assert all("authorization" not in (k.lower() for k in r.headers) for r in fal_emulator.requests)


async def test_ingress_errors_are_html_without_a_request_id(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.script_faults("submit", "ingress_502")
    response = await http.post(f"{fal_emulator.queue_url}/{ENDPOINT}", json=edit_body())
    assert response.status_code == 502 and "nginx" in response.text
    assert "x-fal-request-id" not in response.headers
    assert fal_emulator.jobs == {} and not fal_emulator.requests[0].reached_fal


async def test_runner_failure_completes_with_error_fields_and_request_error_result(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.runner_failure_rate = 1.0
    queued = await submit(http, fal_emulator, edit_body())
    await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    status = (await http.get(str(queued["status_url"]), headers=auth(fal_emulator))).json()
    assert status["error"] == "Runner disconnected"
    assert status["error_type"] == "runner_disconnected" and status["metrics"] == {}
    result = await http.get(str(queued["response_url"]), headers=auth(fal_emulator))
    assert result.status_code == 503
    assert result.json() == {"detail": "Runner disconnected", "error_type": "runner_disconnected"}
    assert result.headers["x-fal-error-type"] == "runner_disconnected"
    assert result.headers["x-fal-request-id"] == queued["request_id"]


async def test_start_timeout_ends_a_request_that_never_started(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.queue_delay = 5.0
    response = await http.post(
        f"{fal_emulator.queue_url}/{ENDPOINT}",
        json=edit_body(),
        headers={**auth(fal_emulator), "X-Fal-Request-Start-Timeout": "0.2"},
    )
    queued = response.json()
    job = await fal_emulator.wait_for_status(str(queued["request_id"]), "COMPLETED")
    assert job.error_type == "startup_timeout" and not job.ran
    result = await http.get(str(queued["response_url"]), headers=auth(fal_emulator))
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"


async def test_max_queue_length_refuses_with_429(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.queue_delay = 5.0
    await submit(http, fal_emulator, edit_body())
    response = await http.post(
        f"{fal_emulator.queue_url}/{ENDPOINT}",
        params={"fal_max_queue_length": "0"},
        json=edit_body(),
        headers=auth(fal_emulator),
    )
    assert response.status_code == 429 and len(fal_emulator.jobs) == 1


async def test_concurrency_limit_makes_requests_wait_in_order(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.concurrency = 2
    fal_emulator.queue_delay = 0.1
    fal_emulator.run_time = 0.1
    queued = [await submit(http, fal_emulator, edit_body(prompt=f"p{i}")) for i in range(5)]
    assert [q["queue_position"] for q in queued] == [0, 1, 2, 3, 4]
    await fal_emulator.wait_until(
        lambda: all(job.status == "COMPLETED" for job in fal_emulator.jobs.values())
    )
    starts = sorted(fal_emulator.jobs.values(), key=lambda job: job.started_at or 0)
    assert [job.body["prompt"] for job in starts] == ["p0", "p1", "p2", "p3", "p4"]
    # Never more than two running at once.
    edges = sorted(
        [(job.started_at, 1) for job in starts] + [(job.completed_at, -1) for job in starts]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


async def test_low_priority_waits_behind_normal(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.queue_delay = 5.0
    url = f"{fal_emulator.queue_url}/{ENDPOINT}"
    low = await http.post(
        url, json=edit_body(), headers={**auth(fal_emulator), "X-Fal-Queue-Priority": "low"}
    )
    normal = await submit(http, fal_emulator, edit_body())
    assert normal["queue_position"] == 0
    status = await http.get(low.json()["status_url"], headers=auth(fal_emulator))
    assert status.json()["queue_position"] == 1


async def test_sse_sends_data_events_pings_and_closes_after_completed(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.sse_ping_interval = 0.05
    fal_emulator.queue_delay = 0.2
    fal_emulator.run_time = 0.1
    queued = await submit(http, fal_emulator, edit_body())
    lines: list[str] = []
    async with http.stream(
        "GET", f"{queued['status_url']}/stream", headers=auth(fal_emulator)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            lines.append(line)
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    statuses = [event["status"] for event in events]
    changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert changes == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert events[-1]["status"] == "COMPLETED"
    assert ": ping" in lines  # the queue delay outlasts the ping interval


async def test_storage_token_upload_and_initiate_put(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    token = await http.post(
        f"{fal_emulator.rest_url}/storage/auth/token",
        params={"storage_type": "fal-cdn-v3"},
        json={},
        headers=auth(fal_emulator),
    )
    body = token.json()
    assert body["expires_at"].endswith("+00:00")  # clients compare it with an aware datetime
    upload = await http.post(
        f"{fal_emulator.cdn_url}/files/upload",
        content=b"abc",
        headers={
            "Authorization": f"{body['token_type']} {body['token']}",
            "Content-Type": "text/plain",
            "X-Fal-File-Name": "a.txt",
        },
    )
    served = await http.get(upload.json()["access_url"])
    assert served.content == b"abc" and served.headers["content-type"].startswith("text/plain")
    refused = await http.post(
        f"{fal_emulator.cdn_url}/files/upload",
        content=b"abc",
        headers={"Authorization": f"Key {fal_emulator.key}", "Content-Type": "text/plain"},
    )
    assert refused.status_code == 401

    initiated = (
        await http.post(
            f"{fal_emulator.rest_url}/storage/upload/initiate",
            params={"storage_type": "gcs"},
            json={"file_name": "b.bin", "content_type": "application/octet-stream"},
            headers=auth(fal_emulator),
        )
    ).json()
    assert (await http.get(initiated["file_url"])).status_code == 404
    put = await http.put(initiated["upload_url"], content=b"xyz")
    assert put.status_code == 200
    assert (await http.get(initiated["file_url"])).content == b"xyz"


async def test_queue_routes_are_not_served_by_the_cdn_host(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        f"{fal_emulator.cdn_url}/{ENDPOINT}", json=edit_body(), headers=auth(fal_emulator)
    )
    assert response.status_code == 404 and fal_emulator.jobs == {}


async def test_standalone_process_serves_and_reports_its_urls() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.fal_emulator",
        "--port",
        "0",
        "--run-time",
        "0.01",
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        info = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        async with httpx.AsyncClient(timeout=5) as http:
            headers = {"Authorization": f"Key {info['key']}"}
            knobs = await http.post(f"{info['queue_url']}/_emulator/knobs", json={"run_time": 0})
            assert knobs.status_code == 200
            submitted = await http.post(
                f"{info['queue_url']}/{ENDPOINT}", json=edit_body(), headers=headers
            )
            assert submitted.status_code == 200
            jobs = (await http.get(f"{info['queue_url']}/_emulator/jobs")).json()
            assert [job["request_id"] for job in jobs] == [submitted.json()["request_id"]]
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
