"""REST jobs run through the app's own Gradio queue: a gradio_client on the local server calls the named endpoints,
so REST requests wait in the same queue as the browser and gradio_client users, count against the same size limit
(a full queue is HTTP 503) and share the one generation slot. There is no path around it."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from PIL import Image

from models.limits import MAX_IMAGE_BYTES, TooLarge
from models.infotext import parse_infotext, read_png_infotext


REST_FIELDS = {"image": "init_images[0]"}  # our endpoint keywords -> A1111's field names, where they differ


class QueueFull(Exception):
    pass


class QueuedEndpoints:
    def __init__(self, url: str, auth: tuple[str, str] | None = None):
        self.url = url
        self.auth = auth  # the UI's credentials, when --auth protects it
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:  # made on first use: the server must be up
            if self._client is None:
                from gradio_client import Client

                # download_files=False: the results are this process's own files; no second copy in /tmp
                self._client = Client(self.url, auth=self.auth, verbose=False, download_files=False)
            return self._client

    def run(self, endpoint: str, kwargs: dict, images: dict[str, Image.Image]) -> tuple[list[Path], list[int], list[str]]:
        """(PNG files, seeds, warnings) of one call of `endpoint`. Raises ValueError with the app's message for bad
        input, QueueFull when the queue has no room."""
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        with tempfile.TemporaryDirectory() as folder:
            for name, image in images.items():
                path = Path(folder) / f"{name}.png"
                image.save(path)
                if path.stat().st_size > MAX_IMAGE_BYTES:  # the queue's uploads take no more (app.build_server)
                    raise TooLarge(f"{REST_FIELDS.get(name, name)} is {path.stat().st_size / 2**20:.1f} MB as a PNG; "
                                   f"at most {MAX_IMAGE_BYTES // 2**20} MB pass through the queue")
                kwargs = {**kwargs, name: handle_file(str(path))}
            try:
                gallery, _, warnings = self.client().predict(**kwargs, api_name=endpoint)
            except QueueError as error:
                raise QueueFull(str(error)) from None
            except AppError as error:
                raise ValueError(str(error)) from None
        files = [Path(item["image"]["path"]) for item in gallery]
        seeds = [int(parse_infotext(read_png_infotext(path) or "")[2].get("Seed", -1)) for path in files]
        return files, seeds, [line for line in warnings.splitlines() if line]
