"""A faithful fal.ai emulator (queue, REST storage, CDN) for tests and standalone runs."""

from tests.fal_emulator.common import REQUEST_ERRORS, RecordedRequest
from tests.fal_emulator.images import data_uri, expected_pixel, make_image, tint_for
from tests.fal_emulator.jobs import Job
from tests.fal_emulator.server import FalEmulator

__all__ = [
    "REQUEST_ERRORS",
    "FalEmulator",
    "Job",
    "RecordedRequest",
    "data_uri",
    "expected_pixel",
    "make_image",
    "tint_for",
]
