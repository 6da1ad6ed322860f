"""What happens to a queued request: wait for a slot, run, then complete with an output or
an error, exactly once. Validation runs here, "on the runner", so a bad input is accepted at
submit and fails as a 422 at result time (docs/fal-queue.md, "Submit" and "Results")."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientTimeout

from emulators.fal_emulator.common import REQUEST_ERRORS, StoredFile
from emulators.fal_emulator.images import (
    ImageLoadError,
    RenderedImage,
    data_uri,
    decode_image,
    parse_data_uri,
    render_output,
)
from emulators.fal_emulator.jobs import COMPLETED, IN_PROGRESS, IN_QUEUE, Job
from emulators.fal_emulator.schema import output_size, validate_input
from emulators.fal_emulator.trainer import TRAINER_ENDPOINTS, train
from emulators.fal_emulator.webhooks import schedule as schedule_webhook

if TYPE_CHECKING:
    from emulators.fal_emulator.server import FalEmulator

MAX_INPUT_BYTES = 64 * 1024 * 1024


class DownloadError(Exception):
    pass


def start_job(
    emu: FalEmulator,
    *,
    endpoint: str,
    app_path: str,
    body: Any,
    priority: int,
    start_timeout: float | None,
    headers: dict[str, str],
    webhook_url: str | None = None,
) -> Job:
    now = time.monotonic()
    job = Job(
        request_id=str(uuid.uuid4()),
        endpoint=endpoint,
        app_path=app_path,
        body=body,
        seq=len(emu.jobs),
        priority=priority,
        submitted_at=now,
        start_timeout=start_timeout,
        headers=headers,
        webhook_url=webhook_url,
    )
    job.timeline.append((IN_QUEUE, now))
    emu.jobs[job.request_id] = job
    emu.queue.enqueue(job)
    job.task = asyncio.create_task(_run(emu, job), name=f"fal-emulator-job-{job.request_id}")
    emu.job_changed(job)
    return job


def cancel_job(job: Job) -> None:
    job.cancel_requested = True
    if job.task is not None and not job.task.done():
        job.task.cancel()


def _log(job: Job, message: str, level: str = "INFO") -> None:
    job.logs.append(
        {
            "message": message,
            "level": level,
            "source": "USER",
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
    )


async def _run(emu: FalEmulator, job: Job) -> None:
    try:
        try:
            async with asyncio.timeout(job.start_timeout):
                await asyncio.sleep(emu.queue_delay)
                await emu.queue.acquire(job)
        except TimeoutError:
            emu.queue.leave(job)
            fail(emu, job, "startup_timeout", user_timeout=True)
            return
        emu.queue.leave(job)
        try:
            await _work(emu, job)
        finally:
            emu.queue.release()
    except asyncio.CancelledError:
        emu.queue.leave(job)
        if job.cancel_requested and job.status != COMPLETED:
            fail(emu, job, "client_cancelled")
            return  # cancelled on purpose: the request ends, the task does not propagate it
        raise


async def _work(emu: FalEmulator, job: Job) -> None:
    job.status = IN_PROGRESS
    job.started_at = time.monotonic()
    job.ran = True
    job.timeline.append((IN_PROGRESS, job.started_at))
    training = job.endpoint in TRAINER_ENDPOINTS
    if not training:
        _log(job, "Loading LoRA weights")
    emu.job_changed(job)
    run_time = emu.training_time if training else emu.run_time
    chosen = emu.runner_failure_when is not None and emu.runner_failure_when(job.body)
    if chosen or (emu.runner_failure_rate > 0 and emu.rng.random() < emu.runner_failure_rate):
        await asyncio.sleep(run_time)
        fail(emu, job, emu.runner_failure_type)
        return
    if training:
        status, body, headers = await train(emu, job, _log)
        _log(job, "Done." if status == 200 else "Training failed.")
        complete(emu, job, status, body, headers, metrics={"inference_time": run_time})
        return
    # The output is made while the run time elapses, as a real runner works during it; the
    # completion itself is then only a state change, so its timing is what clients observe.
    output = asyncio.create_task(produce(emu, job, run_time))
    try:
        await asyncio.sleep(run_time / 2)
        _log(job, "Generating image...")
        emu.job_changed(job)
        await asyncio.sleep(run_time / 2)
        status, body, headers = await output
    finally:
        output.cancel()
    _log(job, "Done.")
    complete(emu, job, status, body, headers, metrics={"inference_time": run_time})


def complete(
    emu: FalEmulator,
    job: Job,
    status: int,
    body: Any,
    headers: dict[str, str],
    metrics: dict[str, Any],
) -> None:
    job.status = COMPLETED
    job.completed_at = time.monotonic()
    job.result_status = status
    job.result_body = body
    job.result_headers = headers
    job.metrics = metrics
    job.timeline.append((COMPLETED, job.completed_at))
    emu.job_changed(job)
    schedule_webhook(emu, job)


def fail(emu: FalEmulator, job: Job, error_type: str, *, user_timeout: bool = False) -> None:
    code, detail = REQUEST_ERRORS[error_type]
    headers = {"X-Fal-Error-Type": error_type}
    if user_timeout:
        headers["X-Fal-Request-Timeout-Type"] = "user"
    job.error = detail
    job.error_type = error_type
    complete(emu, job, code, {"detail": detail, "error_type": error_type}, headers, metrics={})


async def fetch_input(emu: FalEmulator, url: str) -> bytes:
    if url.startswith("data:"):
        try:
            return parse_data_uri(url)[1]
        except ValueError as error:
            raise DownloadError("malformed data URI") from error
    own_prefix = f"{emu.cdn_url}/files/"
    if url.startswith(own_prefix):
        stored = emu.files.get(url[len(emu.cdn_url) :].split("?")[0])
        if stored is None:
            raise DownloadError("HTTP 404")
        return stored.data
    if not url.startswith(("http://", "https://")):
        raise DownloadError("unsupported URL scheme")
    try:
        async with emu.session.get(url, timeout=ClientTimeout(total=10)) as response:
            if response.status != 200:
                raise DownloadError(f"HTTP {response.status}")
            data = await response.content.read(MAX_INPUT_BYTES + 1)
    except (ClientError, TimeoutError) as error:
        raise DownloadError(type(error).__name__) from error
    if len(data) > MAX_INPUT_BYTES:
        raise DownloadError("file too large")
    return data


def _input_error(index: int, url: str, kind: str, msg: str) -> dict[str, Any]:
    shown = url if not url.startswith("data:") else url[:40] + "..."
    return {"loc": ["body", "image_urls", index], "msg": msg, "type": kind, "input": shown}


async def produce(emu: FalEmulator, job: Job, run_time: float) -> tuple[int, Any, dict[str, str]]:
    """The model's answer: (status, body, headers) of the result GET."""
    model, errors = validate_input(job.body)
    if model is None:
        return 422, {"detail": errors}, {"x-fal-billable-units": "0"}
    urls = model.image_urls[: emu.max_input_images]
    sources = []
    for index, url in enumerate(urls):
        try:
            data = await fetch_input(emu, url)
        except DownloadError as error:
            detail = [
                _input_error(
                    index, url, "file_download_error", f"Failed to download the file: {error}"
                )
            ]
            return 422, {"detail": detail}, {"x-fal-billable-units": "0"}
        try:
            sources.append(await asyncio.to_thread(decode_image, data))
        except ImageLoadError:
            detail = [
                _input_error(
                    index,
                    url,
                    "image_load_error",
                    "Failed to load the image. Please ensure the image file is not corrupted "
                    "and is in a supported format.",
                )
            ]
            return 422, {"detail": detail}, {"x-fal-billable-units": "0"}

    seed = model.seed if model.seed is not None else emu.rng.randrange(0, 2**32)
    size = output_size(model, sources[0].size)

    loras = [(lora.path, lora.scale) for lora in model.loras]

    def render_all() -> list[RenderedImage]:
        return [
            render_output(sources[0], size, seed, index, model.output_format, loras)
            for index in range(model.num_images)
        ]

    images = []
    for rendered in await asyncio.to_thread(render_all):
        name = uuid.uuid4().hex + rendered.extension
        if model.sync_mode:
            url = data_uri(rendered.data, rendered.content_type)
        else:
            path = f"/files/emulator/{name}"
            emu.files[path] = StoredFile(rendered.data, rendered.content_type)
            url = emu.cdn_url + path
        images.append(
            {
                "url": url,
                "content_type": rendered.content_type,
                "file_name": name,
                "file_size": len(rendered.data),
                "width": rendered.width,
                "height": rendered.height,
            }
        )
    flagged = model.enable_safety_checker and emu.nsfw_marker in model.prompt.lower()
    body = {
        "images": images,
        "timings": {"inference": run_time},
        "seed": seed,
        "has_nsfw_concepts": [flagged] * len(images),
        "prompt": model.prompt,
    }
    megapixels = len(urls) + len(images) * size[0] * size[1] / 1_000_000
    return 200, body, {"x-fal-billable-units": f"{megapixels:.6g}"}
