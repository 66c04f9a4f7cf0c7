"""A1111's settings over REST (GET and POST /sdapi/v1/options): the model in use, the settings the extensions declare
(a field's `setting`: CLIP_stopping_at_last_layers, sd_vae, ...) and a few facts. A setting written by POST applies
to the REST requests after it (as A1111's do), under what a request's own override_settings give; the UI's and
gradio_client's jobs take their own values. An unknown or read-only key, or a bad value, is refused naming it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from extensions.base import Extension
from models.fields import Field

READ_ONLY = {"sd_checkpoint_hash", "samples_format", "outdir_samples"}  # facts, shown but not set
# A1111's UI settings its clients read and write; kept and read back, with no effect on a job here (the Send to
# buttons always send the seed and the size)
UI_SETTINGS = (Field("send_seed", "switch", True, setting="send_seed", help="A1111's Send to takes the seed"),
               Field("send_size", "switch", True, setting="send_size", help="A1111's Send to takes the size"))


class Options:
    def __init__(self, extensions: Sequence[Extension]):
        self.fields: dict[str, Field] = {field.setting: field for extension in extensions
                                         for field in (*extension.fields, *extension.rest_body) if field.setting}
        self.fields.update({field.setting: field for field in UI_SETTINGS})
        self._values: dict = {}
        self._lock = threading.Lock()

    def values(self) -> dict:
        """Each setting's value: what was written, else its default."""
        with self._lock:
            return {name: self._values.get(name, field.default) for name, field in self.fields.items()}

    def written(self) -> dict:
        """The settings written by POST: the REST requests' defaults."""
        with self._lock:
            return dict(self._values)

    def check(self, options: dict) -> dict:
        """The settings of a POST, each checked by its field (a ValueError names the setting); sd_model_checkpoint
        is the caller's."""
        unknown = sorted(set(options) - set(self.fields) - {"sd_model_checkpoint"})
        if unknown:
            read_only = [name for name in unknown if name in READ_ONLY]
            if read_only:
                raise ValueError(f"{read_only[0]} is read-only here")
            raise ValueError(f"no setting {unknown[0]!r} here; the settings: "
                             f"{', '.join(['sd_model_checkpoint', *sorted(self.fields)])}")
        checked = {}
        for name, value in options.items():
            if name in self.fields:
                try:
                    self.fields[name].check(value)
                except ValueError as error:
                    raise ValueError(str(error).replace(self.fields[name].name, name, 1)) from None
                checked[name] = value
        return checked

    def write(self, checked: dict) -> None:
        with self._lock:
            self._values.update(checked)
