"""The CLIP vision encoders of IP-Adapter units, and a cache of the pictures' embeddings.

sd-webui-controlnet's modules name the encoder: `ip-adapter_clip_h` (and its `ip-adapter_clip_sd15`), OpenCLIP
ViT-H/14, which SD 1.x's IP-Adapters and SDXL's "vit-h" ones take; `ip-adapter_clip_g` (`ip-adapter_clip_sdxl`),
ViT-bigG/14, SDXL's others; `ip-adapter-auto` the one whose width the model takes. Each is a transformers
`CLIPVisionModelWithProjection` folder read from the annotator folder in h94/IP-Adapter's layout
(`<annotator-dir>/h94/IP-Adapter/models/image_encoder/`, `.../sdxl_models/image_encoder/`: config.json and
model.safetensors, with a preprocessor_config.json where there is one; else CLIP's at the encoder's size, as
diffusers' `load_ip_adapter` makes it), else the Hugging Face cache, else the Hub when it answers.

An embedding is what diffusers' `encode_image` gives: the projected image embedding (a plain IP-Adapter; its negative
is zeros) or the penultimate hidden states (the "plus" ones; the negative is a black picture's), kept per picture
content, encoder and kind, so a repeated picture is encoded once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from extensions.controlnet import detectors
from extensions.controlnet.detectors import Weights
from models.files import shown_path
from models.images import image_digest
from models.lru import LRU

if TYPE_CHECKING:
    import torch

REPOSITORY = "h94/IP-Adapter"
FOLDERS = {"h": "models/image_encoder", "g": "sdxl_models/image_encoder"}  # inside the repository
WEIGHTS = {name: Weights(REPOSITORY, (f"{folder}/config.json", f"{folder}/model.safetensors"))
           for name, folder in FOLDERS.items()}
MODULE_ENCODERS = {"ip-adapter_clip_h": "h", "ip-adapter_clip_sd15": "h", "ip-adapter_clip_g": "g",
                   "ip-adapter-auto": None}  # None: chosen by the model's width
ALIASES = {"ip-adapter_clip_sdxl": "ip-adapter_clip_g", "ip-adapter_clip_sdxl_plus_vith": "ip-adapter_clip_h"}


def missing(encoder: str | None) -> str | None:
    """Why the encoder (None: either) cannot be had here, or None."""
    reasons = [detectors.missing((WEIGHTS[name],)) for name in ([encoder] if encoder else FOLDERS)]
    return None if not all(reasons) else reasons[0]


class ImageEncoders:
    """The encoders, loaded on first use on `device` in `dtype` and kept; the last `cap` embeddings."""

    def __init__(self, device="cpu", dtype=None, cap: int = 32):
        import torch  # on first use: the preprocessors' table imports this module

        self.device, self.dtype = device, dtype or torch.float32
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple] = {}  # encoder -> (its folder and weights' stamp, processor, model)
        self._embeddings: LRU[tuple, tuple[torch.Tensor, torch.Tensor]] = LRU(cap)
        self.encodes = 0  # pictures encoded (the cache's misses)

    def width(self, encoder: str, hidden: bool) -> int:
        """The width of what the encoder gives: its projection's, or its hidden states' (`hidden`)."""
        config = self._model(encoder)[2].config
        return config.hidden_size if hidden else config.projection_dim

    def embedding(self, picture: Image.Image, encoder: str, hidden: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(the picture's embedding, the negative's), each [1, 1, ...] on the device, as IP-Adapter takes them."""
        import torch

        stamp, processor, model = self._model(encoder)
        key = (image_digest(picture), encoder, hidden, stamp)
        found = self._embeddings.get(key)
        if found is not None:
            return found
        pixels = processor(picture.convert("RGB"), return_tensors="pt").pixel_values.to(self.device, self.dtype)
        with torch.no_grad():
            if hidden:
                both = model(torch.cat([pixels, torch.zeros_like(pixels)]), output_hidden_states=True).hidden_states[-2]
                positive, negative = both[:1], both[1:]
            else:
                positive = model(pixels).image_embeds
                negative = torch.zeros_like(positive)
        self.encodes += 1
        found = (positive[:, None], negative[:, None])
        self._embeddings.put(key, found)
        return found

    def _model(self, encoder: str) -> tuple:
        """(its files' stamp, processor, model): loaded again when the folder or its weights file changed."""
        where = detectors.folder(WEIGHTS[encoder])  # the repository's (annotator folder) or the subfolder's (cache)
        folder = where / FOLDERS[encoder] if (where / FOLDERS[encoder] / "config.json").is_file() else where
        try:
            stat = (folder / "model.safetensors").stat()
            stamp = (str(folder), stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = (str(folder),)  # loading then says what is wrong
        with self._lock:
            loaded = self._loaded.get(encoder)
            if loaded is None or loaded[0] != stamp:
                self._loaded[encoder] = loaded = (stamp, *self._load(folder))
            return loaded

    def _load(self, folder: Path):
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        try:
            model = CLIPVisionModelWithProjection.from_pretrained(folder, use_safetensors=True, dtype=self.dtype)
        except Exception as error:  # OSError, ValueError, SafetensorError: a damaged or misshapen folder
            raise ValueError(f"IP-Adapter image encoder in {shown_path(folder)}: cannot be loaded "
                             f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
        if (folder / "preprocessor_config.json").is_file():
            processor = CLIPImageProcessor.from_pretrained(folder)
        else:  # h94's folders have none: CLIP's processing at the encoder's size, as diffusers' load_ip_adapter does
            size = model.config.image_size
            processor = CLIPImageProcessor(size=size, crop_size=size)
        return processor, model.to(self.device).eval().requires_grad_(False)
