"""Result files: downloaded once when fal completes (fal keeps them briefly), kept on disk
until the result is posted, fetched again from fal's URL if the file went missing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from client.schema import EditOutput
from jobs.context import JobContext
from jobs.records import EditJob, StoredImage, StoredResult

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 60 * 1024 * 1024


class Outputs:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    def folder(self, job_id: int) -> Path:
        return self._ctx.config.outputs_dir / str(job_id)

    async def store(self, job: EditJob, output: EditOutput) -> StoredResult:
        request = job.request
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        images: list[StoredImage] = []
        flags = output.has_nsfw_concepts
        for index, image in enumerate(output.images):
            data = await self._ctx.fal.download(image.url, max_bytes=MAX_RESULT_BYTES)
            content_type = image.content_type or f"image/{request.output_format}"
            ext = content_type.split("/")[-1]
            path = folder / f"{index + 1}.{'jpg' if ext == 'jpeg' else ext}"
            await asyncio.to_thread(path.write_bytes, data)
            images.append(
                StoredImage(
                    url=image.url if not image.url.startswith("data:") else None,
                    file=str(path),
                    content_type=content_type,
                    width=image.width or request.width,
                    height=image.height or request.height,
                    nsfw=bool(flags[index]) if index < len(flags) else False,
                )
            )
        log.debug("job %s: %d result files in %s", job.id, len(images), folder)
        return StoredResult(
            images=images, seed=output.seed, prompt=output.prompt, timings=output.timings
        )

    async def load(self, job: EditJob) -> list[tuple[StoredImage, bytes]]:
        loaded: list[tuple[StoredImage, bytes]] = []
        for image in job.result.images if job.result else []:
            try:
                data = await asyncio.to_thread(Path(image.file).read_bytes)
            except FileNotFoundError:
                if not image.url:
                    raise
                log.info("job %s: result file %s is gone; fetching it again", job.id, image.file)
                data = await self._ctx.fal.download(image.url, max_bytes=MAX_RESULT_BYTES)
            loaded.append((image, data))
        return loaded

    async def remove(self, job_id: int) -> None:
        await asyncio.to_thread(_remove_files, self.folder(job_id))


def _remove_files(folder: Path) -> None:
    if folder.exists():
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
        folder.rmdir()
