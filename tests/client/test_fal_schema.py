"""The endpoint schema, error descriptions, backoff and pricing: pure functions, no sockets."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from client.errors import FalRequestFailed, FalValidationError, field_path
from client.fal import app_path
from client.pricing import PRICE_PER_MEGAPIXEL_USD, estimate_cost_usd, estimate_input_cost_usd
from client.retry import RetryPolicy, parse_retry_after
from client.schema import (
    PRESET_DIMENSIONS,
    EditInput,
    EditOutput,
    ImageSize,
    LoraWeight,
    QueueStatus,
    ValidationErrorBody,
    ValidationItem,
)

BASE = {"prompt": "p", "image_urls": ["https://example.test/a.png"]}


def make(**fields: object) -> EditInput:
    return EditInput.model_validate({**BASE, **fields})


def test_dump_is_exactly_the_wire_body_with_every_default() -> None:
    assert make().model_dump(exclude_none=True, mode="json") == {
        "prompt": "p",
        "image_urls": ["https://example.test/a.png"],
        "loras": [],
        "guidance_scale": 2.5,
        "num_inference_steps": 28,
        "num_images": 1,
        "acceleration": "regular",
        "enable_prompt_expansion": False,
        "sync_mode": False,
        "enable_safety_checker": True,
        "output_format": "png",
    }
    full = make(
        loras=[{"path": "owner/repo", "scale": 0.5}],
        seed=7,
        image_size={"width": 1024, "height": 512},
    ).model_dump(exclude_none=True, mode="json")
    assert full["loras"] == [{"path": "owner/repo", "scale": 0.5}]
    assert full["seed"] == 7 and full["image_size"] == {"width": 1024, "height": 512}
    assert make(image_size="portrait_16_9").model_dump(mode="json")["image_size"] == (
        "portrait_16_9"
    )


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"image_urls": []}, ("image_urls",)),
        ({"image_urls": ["a", "b", "c", "d"]}, ("image_urls",)),
        ({"loras": [{"path": "x"}] * 4}, ("loras",)),
        ({"loras": [{"path": "x", "scale": 4.5}]}, ("loras", 0, "scale")),
        ({"loras": [{"path": "x", "scale": -0.1}]}, ("loras", 0, "scale")),
        ({"guidance_scale": 20.5}, ("guidance_scale",)),
        ({"guidance_scale": -1}, ("guidance_scale",)),
        ({"num_inference_steps": 3}, ("num_inference_steps",)),
        ({"num_inference_steps": 51}, ("num_inference_steps",)),
        ({"num_images": 0}, ("num_images",)),
        ({"num_images": 5}, ("num_images",)),
        ({"acceleration": "turbo"}, ("acceleration",)),
        ({"output_format": "gif"}, ("output_format",)),
        ({"strength": 0.5}, ("strength",)),  # the endpoint has no strength
        ({"prompt": ""}, ("prompt",)),
    ],
)
def test_out_of_range_inputs_are_refused_before_anything_is_sent(
    fields: dict[str, object], loc: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        make(**fields)
    assert caught.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize(
    ("size", "ok"),
    [((512, 512), True), ((2048, 2048), True), ((511, 1024), False), ((1024, 2049), False)],
)
def test_image_size_bounds(size: tuple[int, int], ok: bool) -> None:
    if ok:
        assert ImageSize(width=size[0], height=size[1]).width == size[0]
    else:
        with pytest.raises(ValidationError):
            ImageSize(width=size[0], height=size[1])


def test_presets_and_output_dimensions() -> None:
    assert PRESET_DIMENSIONS["landscape_16_9"] == (1024, 576)
    assert make(image_size="portrait_4_3").output_dimensions() == (768, 1024)
    assert make(image_size={"width": 640, "height": 800}).output_dimensions() == (640, 800)
    assert make().output_dimensions() is None
    with pytest.raises(ValidationError):
        make(image_size="huge")
    assert LoraWeight(path="x").scale == 1.0


def test_output_parses_the_documented_example_and_tolerates_missing_extras() -> None:
    output = EditOutput.model_validate(
        {
            "images": [
                {
                    "url": "https://v3.fal.media/files/rabbit/3f2c.png",
                    "content_type": "image/png",
                    "file_name": "3f2c.png",
                    "file_size": 1532211,
                    "width": 1024,
                    "height": 768,
                }
            ],
            "timings": {"inference": 4.12},
            "seed": 42,
            "has_nsfw_concepts": [False],
            "prompt": "Make this donut realistic",
            "new_field": 1,
        }
    )
    assert output.images[0].width == 1024 and output.timings == {"inference": 4.12}
    assert EditOutput.model_validate({"images": [{"url": "data:,x"}], "seed": 1}).prompt == ""


def test_queue_status_shapes_from_the_protocol() -> None:
    queued = QueueStatus.model_validate(
        {"status": "IN_QUEUE", "request_id": "r", "queue_position": 2, "logs": None}
    )
    assert queued.is_queued and queued.queue_position == 2 and not queued.is_terminal
    failed = QueueStatus.model_validate(
        {
            "status": "COMPLETED",
            "logs": [],
            "metrics": {},
            "error": "Runner disconnected",
            "error_type": "runner_disconnected",
        }
    )
    assert failed.is_completed and failed.failed and failed.is_terminal
    strange = QueueStatus.model_validate({"status": "CANCELLED"})
    assert strange.is_terminal and not strange.is_completed  # unknown ends a watch, no crash


def test_validation_errors_are_described_in_words() -> None:
    body = ValidationErrorBody.model_validate(
        {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "image_urls"],
                    "msg": "Field required",
                    "input": {"prompt": "x"},
                },
                {
                    "type": "less_than_equal",
                    "loc": ["body", "guidance_scale"],
                    "msg": "Input should be less than or equal to 20",
                    "input": 25,
                    "ctx": {"le": 20.0},
                },
                {
                    "type": "greater_than_equal",
                    "loc": ["body", "loras", 1, "scale"],
                    "ctx": {"ge": 0},
                },
                {"type": "image_too_large", "loc": ["body", "image_urls", 0], "msg": "Too big"},
            ]
        }
    )
    error = FalValidationError(body.detail)
    assert error.describe() == (
        "image_urls: is required; guidance_scale: Input should be ≤ 20; "
        "loras[1].scale: Input should be ≥ 0; image_urls[0]: Too big"
    )
    assert error.fields == ["image_urls", "guidance_scale", "loras[1].scale", "image_urls[0]"]
    assert field_path(["body"]) == "input"
    assert FalValidationError([ValidationItem(loc=[], msg="")]).describe() == "input: value_error"


def test_request_failures_know_which_are_worth_resubmitting() -> None:
    assert FalRequestFailed("runner_disconnected", "x", 503).transient
    assert not FalRequestFailed("startup_timeout", "x", 504, timeout_type="user").transient
    assert not FalRequestFailed("bad_request", "x", 400).transient
    assert FalRequestFailed(None, "x", 502).transient


def test_endpoint_ids_reduce_to_the_app_path() -> None:
    assert app_path("fal-ai/flux-2/lora/edit") == "fal-ai/flux-2"
    assert app_path("workflows/me/flow/run") == "workflows/me/flow"
    assert app_path("123-myapp") == "123/myapp"
    with pytest.raises(ValueError):
        app_path("lonely")


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, rng=random.Random(3))
    delays = [policy.delay(n) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=999) == policy.max_retry_after
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_pricing_follows_the_published_rate() -> None:
    assert PRICE_PER_MEGAPIXEL_USD == 0.021
    # One 1 MP input plus a 1000×1000 output: $0.042, fal's own example figure.
    assert estimate_cost_usd(1, 1000, 1000, 1) == 0.042
    # 1024×1024 is 1.048576 MP by our formula; rounded up to the next micro-dollar.
    assert estimate_cost_usd(1, 1024, 1024, 1) == 0.043021
    # Inputs are billed once; each output image for its own pixels.
    assert estimate_cost_usd(3, 1024, 768, 4) == pytest.approx(0.021 * (3 + 4 * 0.786432), abs=1e-6)
    assert estimate_cost_usd(3, 1024, 768, 4) >= 0.021 * (3 + 4 * 0.786432)
    request = make(image_urls=["a", "b"], num_images=2, image_size="square")
    assert estimate_input_cost_usd(request) == estimate_cost_usd(2, 512, 512, 2)
    assert estimate_input_cost_usd(make(), default_size=(800, 600)) == estimate_cost_usd(
        1, 800, 600, 1
    )
    with pytest.raises(ValueError):
        estimate_cost_usd(1, 0, 512, 1)


def test_the_key_only_goes_to_fal_hosts_and_the_configured_bases() -> None:
    import httpx

    from client.errors import FalProtocolError
    from client.transport import FalTransport

    async_client = httpx.AsyncClient()
    transport = FalTransport(
        async_client,
        async_client,
        "keyid123:secretvalue",
        key_origins=["http://127.0.0.1:8000", "https://rest.example.test"],
        retry=RetryPolicy(),
        timeout=httpx.Timeout(1.0),
    )
    allowed = [
        "http://127.0.0.1:8000/fal-ai/flux-2/requests/x/status",
        "https://rest.example.test/storage/auth/token",
        "https://queue.fal.run/fal-ai/flux-2/requests/x",
        "https://queue.falrun.com/fal-ai/flux-2/requests/x",
        "https://rest.fal.ai/storage/upload/initiate",
    ]
    refused = [
        "http://127.0.0.1:8001/x",  # another port: another host
        "http://queue.fal.run/x",  # fal, but not over TLS
        "https://v3.fal.media/files/x.png",  # media host
        "https://fal.run.evil.test/x",
        "https://evilfal.run/x",
    ]
    assert all(transport.may_send_key(httpx.URL(url)) for url in allowed)
    assert not any(transport.may_send_key(httpx.URL(url)) for url in refused)
    with pytest.raises(FalProtocolError):
        transport.key_headers(httpx.URL(refused[0]))
    assert transport.redact("oops keyid123:secretvalue and secretvalue") == "oops *** and ***"
