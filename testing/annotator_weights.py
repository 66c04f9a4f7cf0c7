"""Random-weight preprocessor models saved in the exact file layout their loaders read, for tests and benchmarks:
nothing can be downloaded on the machines that test this project.

`save_annotators(folder)` writes, under `folder/<owner>/<repo>/`, as on the Hub:
- depth-anything/Depth-Anything-V2-Small-hf: config.json, model.safetensors, preprocessor_config.json;
- openmmlab/upernet-convnext-tiny: the same three, with the ADE20K labels;
- lllyasviel/Annotators: body_pose_model.pth, hand_pose_model.pth, facenet.pth, in the upstream key layout (OpenPose's
  body and hand files name each layer without its stage prefix; controlnet-aux's `transfer` adds it back).
- facebook/sam-vit-base: config.json, model.safetensors, preprocessor_config.json (a tiny SAM whose masks follow the
  clicks: testing/sam_files.py).

`full=False` gives tiny transformers models (tests: well under a second to build and run); `full=True` the real
architectures (benchmarks: compute time does not depend on the weights' values). OpenPose's networks are fixed, so
they are always real-sized (~127 M parameters, 510 MB, ~4 s to build and save).
"""

from __future__ import annotations

from pathlib import Path

import torch

from extensions.controlnet import ade20k
from extensions.controlnet.detectors import ANNOTATORS, DEPTH_ANYTHING_V2, UPERNET_ADE20K, controlnet_aux

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def save_depth_anything(folder: Path, full: bool = False, seed: int = 0) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    target = Path(folder) / DEPTH_ANYTHING_V2.repo
    if full:  # Depth-Anything-V2-Small: DINOv2 ViT-S/14 at 518 px
        backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                                num_attention_heads=6, mlp_ratio=4, out_indices=[3, 6, 9, 12],
                                reshape_hidden_states=False)
        config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                     neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
                                     head_hidden_size=32)
        side = 518
    else:
        backbone = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, mlp_ratio=2, out_indices=[1, 2], reshape_hidden_states=False)
        config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, reassemble_factors=[2, 1],
                                     neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8)
        side = 56
    torch.manual_seed(seed)
    DepthAnythingForDepthEstimation(config).save_pretrained(target, safe_serialization=True)
    DPTImageProcessor(size={"height": side, "width": side}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, do_pad=False, image_mean=IMAGENET_MEAN,
                      image_std=IMAGENET_STD).save_pretrained(target)
    return target


def save_upernet(folder: Path, full: bool = False, seed: int = 0) -> Path:
    from transformers import ConvNextConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

    target = Path(folder) / UPERNET_ADE20K.repo
    stages = ["stage1", "stage2", "stage3", "stage4"]
    labels = {"id2label": dict(enumerate(ade20k.CLASSES)), "label2id": {n: i for i, n in enumerate(ade20k.CLASSES)}}
    if full:  # ConvNeXt-T backbone, UperNet head of 512 channels (lists: transformers 5.23 fails on its own tuples)
        backbone = ConvNextConfig(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3], out_features=stages)
        config = UperNetConfig(backbone_config=backbone, hidden_size=512, auxiliary_in_channels=384, **labels)
    else:
        backbone = ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], out_features=stages)
        config = UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_in_channels=32,
                               auxiliary_channels=8, **labels)
    torch.manual_seed(seed)
    UperNetForSemanticSegmentation(config).save_pretrained(target, safe_serialization=True)
    SegformerImageProcessor(size={"height": 512, "width": 512}, image_mean=IMAGENET_MEAN,
                            image_std=IMAGENET_STD).save_pretrained(target)
    return target


def openpose_state_dicts(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """{file name: state dict} of OpenPose's body, hand and face networks, random, in the upstream files' keys."""
    controlnet_aux()  # imported once, its warnings silenced
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    torch.manual_seed(seed)

    def upstream(model: torch.nn.Module) -> dict[str, torch.Tensor]:  # "model1_1.conv5_1_CPM_L1.weight" -> "conv5_..."
        return {key.split(".", 1)[1]: value for key, value in model.state_dict().items()}

    return {"body_pose_model.pth": upstream(bodypose_model()), "hand_pose_model.pth": upstream(handpose_model()),
            "facenet.pth": FaceNet().state_dict()}


def save_openpose(folder: Path, seed: int = 0) -> Path:
    target = Path(folder) / ANNOTATORS
    target.mkdir(parents=True, exist_ok=True)
    for name, state in openpose_state_dicts(seed).items():
        torch.save(state, target / name)
    return target


MEDIAPIPE = Path(__file__).resolve().parent / "mediapipe"  # the real models, as MediaPipe ships them


def save_annotators(folder: Path, full: bool = False) -> Path:
    """Depth Anything V2, UperNet ADE20K, OpenPose (body, hand, face), LaMa, MediaPipe's face detectors and a tiny SAM
    under `folder`; returns `folder`."""
    from testing.lama_files import make_lama
    from testing.sam_files import save_sam

    save_depth_anything(folder, full)
    save_upernet(folder, full)
    save_openpose(folder)
    make_lama(Path(folder) / "lama" / "big-lama.safetensors")
    save_mediapipe(Path(folder))
    save_sam(folder, follows_clicks=True)
    return Path(folder)


def save_mediapipe(folder: Path) -> Path:
    """MediaPipe's two face detectors (testing/mediapipe/) in `folder`/mediapipe/, where the detailer finds them."""
    import shutil

    target = folder / "mediapipe"
    target.mkdir(parents=True, exist_ok=True)
    for model in MEDIAPIPE.glob("*.tflite"):
        shutil.copy(model, target / model.name)
    return folder
