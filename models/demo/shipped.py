"""Where the shapes demo model and its sample extensions ship. The LoRA and the ControlNets (canny and
segmentation) sit in the app's default LoRA and ControlNet folders, so an offline first run lists them like files a
user dropped in."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1]
PIPELINE_DIR = MODELS_DIR / "demo" / "sd-shapes-inpainting"
LORA_DIR, LORA_NAME = MODELS_DIR / "Lora", "shapes-pastel"
CONTROLNET_DIR, CONTROLNET_NAME = MODELS_DIR / "ControlNet", "shapes-canny"
SEGMENTATION_NAME = "shapes-seg"  # the segmentation ControlNet (ADE20K-palette maps), beside the canny one


def load_with_extras(device: str = "cpu"):
    """The demo model with its shipped LoRA and ControlNets installed, as an offline `python app.py` has them: the
    PipelineManager the semantic tests and bench/shapes_model.py measure."""
    from extensions import lora
    from extensions.controlnet import pipeline as controlnet
    from models.manager import PipelineManager  # imported here: models.loading imports this module

    manager = PipelineManager.load("demo", device=device)
    lora.install(manager, LORA_DIR)
    controlnet.install(manager, CONTROLNET_DIR)
    return manager
