"""LoRA adapters kept loaded over the shared U-Net and text encoder(s), switched per request.

Each file is loaded once as a named peft adapter (keyed by its path, modification time and size, so a changed
file is reloaded) and kept until the cap evicts the least recently used one. Every request sets the whole LoRA
state it needs: exactly its own adapters with its weights, or LoRA disabled when it has none, so nothing is
left over for the next request. Called under the manager's lock.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from diffusers import DiffusionPipeline

from extensions.lora.files import addnet_hash, diffusers_block_names, kohya_layers, read_lora
from extensions.lora.hotswap import Factors, UnetSlot
from extensions.lora.library import LoraLibrary
from extensions.lora.lycoris import delete_lycoris, is_lycoris, load_lycoris
from extensions.lora.switch import activate, lora_layers
from extensions.lora.tags import LoraTag
from models.lru import LRU

log = logging.getLogger(__name__)

DEFAULT_CAP = 16


@dataclass(frozen=True)
class LoadedLora:
    adapter: str  # the peft adapter name (dots are not allowed there, so not the LoRA's own name)
    path: Path
    stamp: tuple[int, int]  # (mtime_ns, size): a changed file is reloaded
    hash: str  # A1111's short hash, for the infotext's "Lora hashes"
    unet_factors: Factors = field(default_factory=dict)  # with a compiled U-Net: its part, for the slot
    lycoris: bool = False  # a LoHa or LoKr file: its adapter is lycoris.py's, not diffusers'


class LoraAdapters:
    def __init__(self, library: LoraLibrary, cap: int = DEFAULT_CAP, fuse: bool = False, slot: UnetSlot | None = None,
                 paused: Callable[[], AbstractContextManager] = nullcontext, family: str = "SD 1.x"):
        """`paused`: the manager's offload hooks off while a LoRA's layers are added (models/offload.py); `family`:
        the model's, named when a file of another is refused."""
        if cap < 1:
            raise ValueError(f"lora cap must be at least 1, got {cap}")
        if fuse and slot is not None:
            raise ValueError("lora fuse cannot be combined with a compiled U-Net (its LoRA slot is swapped in place)")
        self.library = library
        self.fuse = fuse  # fuse the active set into the weights when the same set comes again
        self.slot = slot  # with a compiled U-Net, its LoRA parts go through this one fixed slot
        self.paused = paused
        self.family = family
        self._loaded: LRU[str, LoadedLora] = LRU(cap)  # by LoRA name, least recently used first
        self._numbers = itertools.count()
        self._last_set: tuple | None = None
        self._fused_set: tuple | None = None
        self._layers: list = []  # the LoRA layers of the shared U-Net and text encoder

    @property
    def cap(self) -> int:
        return self._loaded.cap

    @property
    def loaded_names(self) -> list[str]:
        return self._loaded.keys()

    def configure(self, pipe: DiffusionPipeline, tags: tuple[tuple[str, float], ...]) -> dict[str, str]:
        """Make `tags` ((name, weight) pairs) the active LoRA state of the shared model; returns
        {name: short hash} for the infotext."""
        tags = tuple(LoraTag(*tag) for tag in tags)
        wanted = tuple((tag.name, tag.weight) for tag in tags)
        if self._fused_set is not None and self._fused_set != wanted:
            self._unfuse(pipe)
        # 1. every LoRA of the request loaded and current
        loaded = [self._ensure_loaded(pipe, tag.name) for tag in tags]
        # 2. the cap: drop the least recently used adapters this request does not use
        self._evict(pipe, keep={tag.name for tag in tags})
        # 3. activate exactly this set (weight 0 is the same as absent)
        active = [(item.adapter, tag.weight) for item, tag in zip(loaded, tags) if tag.weight != 0]
        if self._fused_set != wanted:
            activate(self._layers, [adapter for adapter, _ in active], [weight for _, weight in active])
            if self.slot is not None:
                self.slot.write(
                    tuple(active), [(tag.name, item.unet_factors, tag.weight) for item, tag in zip(loaded, tags)]
                )
            if active and self.fuse and self._last_set == wanted:
                self._fuse(pipe, [adapter for adapter, _ in active], wanted)
        self._last_set = wanted
        return {tag.name: item.hash[:12] for tag, item in zip(tags, loaded)}

    def _ensure_loaded(self, pipe: DiffusionPipeline, name: str) -> LoadedLora:
        path = self.library.resolve(name)
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        current = self._loaded.peek(name)
        if current is not None and current.path == path and current.stamp == stamp:
            self._loaded.get(name)  # now the most recently used
            return current
        if self._fused_set is not None:
            self._unfuse(pipe)
        if current is not None:
            log.info("LoRA %s changed on disk; reloading", name)
            self._unload(pipe, name)
        tensors = read_lora(path, _targets(pipe), self.family)
        adapter = f"lora_{next(self._numbers)}"
        factors: Factors = {}
        lycoris = is_lycoris(tensors)
        if lycoris and self.slot is not None:
            raise ValueError(f"LoRA file {path.name}: a LyCORIS file (LoHa or LoKr) cannot go through the compiled "
                             "U-Net's LoRA slot; run without --compile to use it")
        try:
            with warnings.catch_warnings(), self.paused():  # peft warns that a model holds several adapters
                warnings.simplefilter("ignore")
                if lycoris:
                    targets = _targets(pipe)
                    load_lycoris(path.name, diffusers_block_names(tensors, pipe.unet), kohya_layers(targets),
                                 targets, adapter)
                elif self.slot is None:
                    pipe.load_lora_weights(tensors, adapter_name=adapter)
                else:  # the U-Net part waits for the slot; the text encoder part is an ordinary adapter
                    state_dict, alphas = pipe.lora_state_dict(tensors, unet_config=pipe.unet.config)
                    factors = self.slot.factors(name, state_dict, alphas)
                    for part in _text_encoders(pipe):
                        pipe.load_lora_into_text_encoder(
                            state_dict, network_alphas=alphas, text_encoder=getattr(pipe, part), prefix=part,
                            adapter_name=adapter, _pipeline=pipe,
                        )
        except ValueError:
            self._delete_any(pipe, adapter)
            raise
        except Exception as error:
            self._delete_any(pipe, adapter)  # leave the loaded state as it was
            raise ValueError(f"LoRA file {path.name}: could not be loaded ({type(error).__name__}: {error})") from None
        item = LoadedLora(adapter, path, stamp, addnet_hash(path), factors, lycoris)
        self._loaded.put(name, item, evict=False)  # the cap is applied once the whole request is loaded
        self._layers = self._lora_layers(pipe)
        log.info("LoRA %s loaded from %s (%d adapters loaded)", name, path, len(self._loaded))
        return item

    def _evict(self, pipe: DiffusionPipeline, keep: set[str]) -> None:
        for name, item in self._loaded.evict(keep):
            self._drop(pipe, name, item)

    def _unload(self, pipe: DiffusionPipeline, name: str) -> None:
        self._drop(pipe, name, self._loaded.pop(name))

    def _drop(self, pipe: DiffusionPipeline, name: str, item: LoadedLora) -> None:
        """Delete the adapter of `item`, already taken out of the loaded set."""
        if item.lycoris:
            delete_lycoris(_targets(pipe).values(), item.adapter)
        else:
            self._delete_adapter(pipe, item.adapter)
        self._layers = self._lora_layers(pipe)
        log.info("LoRA %s unloaded", name)

    def _lora_layers(self, pipe: DiffusionPipeline) -> list:
        """The layers whose active adapters we set per request (the slot's U-Net layers are always on)."""
        text_encoders = [getattr(pipe, part) for part in _text_encoders(pipe)]
        return lora_layers(*text_encoders) if self.slot is not None else lora_layers(pipe.unet, *text_encoders)

    def _delete_any(self, pipe: DiffusionPipeline, adapter: str) -> None:
        """A half-made adapter of either kind taken away."""
        delete_lycoris(_targets(pipe).values(), adapter)
        self._delete_adapter(pipe, adapter)

    @staticmethod
    def _delete_adapter(pipe: DiffusionPipeline, adapter: str) -> None:
        present = {name for names in pipe.get_list_adapters().values() for name in names}
        if adapter in present:
            with warnings.catch_warnings():  # peft says which adapter it made active instead: we set that anyway
                warnings.simplefilter("ignore")
                pipe.delete_adapters(adapter)

    def _fuse(self, pipe: DiffusionPipeline, adapters: list[str], wanted: tuple) -> None:
        pipe.fuse_lora(components=list(_targets(pipe)), lora_scale=1.0, adapter_names=adapters)
        self._fused_set = wanted

    def _unfuse(self, pipe: DiffusionPipeline) -> None:
        pipe.unfuse_lora(components=list(_targets(pipe)))
        self._fused_set = None


def _text_encoders(pipe: DiffusionPipeline) -> list[str]:
    return [part for part in ("text_encoder", "text_encoder_2") if getattr(pipe, part, None) is not None]


def _targets(pipe: DiffusionPipeline) -> dict:
    """The parts a LoRA may adapt: the U-Net and the text encoder(s)."""
    return {"unet": pipe.unet, **{part: getattr(pipe, part) for part in _text_encoders(pipe)}}
