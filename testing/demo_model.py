"""The shipped demo model as an offline `python app.py` has it, for the semantic tests and bench/shapes_model.py."""

from __future__ import annotations

from models.demo.shipped import CONTROLNET_DIR, LORA_DIR


def load_with_extras(device: str = "cpu"):
    """The demo model with its shipped LoRA and ControlNets installed, as an offline `python app.py` has them: the
    PipelineManager the semantic tests and bench/shapes_model.py measure."""
    from extensions import lora
    from extensions.controlnet import extension as controlnet
    from models.manager import PipelineManager

    manager = PipelineManager.load("demo", device=device)
    lora.install(manager, LORA_DIR)
    controlnet.install(manager, CONTROLNET_DIR)
    return manager
