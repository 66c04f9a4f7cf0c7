"""LoRA training in the app: the Train tab, gradio_client's /train_lora, runs in the generations' queue over the
shared model. See extension.py."""

from extensions.train.extension import Train

__all__ = ["Train"]
