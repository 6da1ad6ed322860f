"""A faithful fal.ai emulator (queue, REST storage, CDN) for tests and standalone runs."""

from emulators.fal_emulator.common import REQUEST_ERRORS, RecordedRequest
from emulators.fal_emulator.images import data_uri, expected_pixel, make_image, tint_for
from emulators.fal_emulator.jobs import Job
from emulators.fal_emulator.server import FalEmulator

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
