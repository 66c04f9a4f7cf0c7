"""Where the shapes demo model and its sample extensions ship. The LoRA and the ControlNets (canny and
segmentation) sit in the app's default LoRA and ControlNet folders, so an offline first run lists them like files a
user dropped in."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1]
DEMO_DIR = MODELS_DIR / "demo"
PIPELINE_DIR = DEMO_DIR / "sd-shapes-inpainting"
# Random weights in SD 1.5's exact layout, for the tests (testing/plumbing_model.py); its tokenizer folder is the
# real CLIP vocabulary the shapes model is trained with.
PLUMBING_DIR = DEMO_DIR / "sd-demo-inpainting"
LORA_DIR, LORA_NAME = MODELS_DIR / "Lora", "shapes-pastel"
CONTROLNET_DIR, CONTROLNET_NAME = MODELS_DIR / "ControlNet", "shapes-canny"
SEGMENTATION_NAME = "shapes-seg"  # the segmentation ControlNet (ADE20K-palette maps), beside the canny one
