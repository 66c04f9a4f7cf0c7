"""Samplers by their AUTOMATIC1111 names, as plain data: what requests, the UI and the REST API need, without
importing torch or diffusers (models/samplers.py builds the schedulers)."""

from __future__ import annotations

from models.validate import brief

# A1111 sampler name -> (diffusers scheduler class name, config overrides). Karras variants are listed under their
# pre-1.9 combined names, which clients still send; the infotext splits them into Sampler + Schedule type.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False}),  # as SD's own DDIM config; clipping is for pixel models
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),  # PNDM without its Runge-Kutta warm-up: A1111's PLMS
    "PNDM": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)
DEFAULT_SAMPLER = "Euler a"
SCHEDULE_TYPES = ("Automatic", "Karras")
# A1111's other names for its samplers (its API and old scripts send them): alias -> name
ALIASES = {
    "k_euler_a": "Euler a", "k_euler_ancestral": "Euler a", "k_euler": "Euler", "k_lms": "LMS", "k_heun": "Heun",
    "k_dpm_2": "DPM2", "k_dpm_2_a": "DPM2 a", "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE", "k_lms_ka": "LMS Karras", "k_dpm_2_ka": "DPM2 Karras",
    "k_dpm_2_a_ka": "DPM2 a Karras", "k_dpmpp_2m_ka": "DPM++ 2M Karras", "k_dpmpp_sde_ka": "DPM++ SDE Karras",
    "k_dpmpp_2m_sde_ka": "DPM++ 2M SDE Karras", "ddim": "DDIM", "plms": "PLMS", "unipc": "UniPC", "k_lcm": "LCM",
    "lcm": "LCM", "pndm": "PNDM",
}


def check_sampler(name: str, field: str = "sampler") -> str:
    """The sampler's name (an alias gives the name it stands for); ValueError naming the field otherwise."""
    if isinstance(name, str) and name in ALIASES:
        return ALIASES[name]
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"{field} {brief(name)} is unknown; choose one of: {', '.join(SAMPLER_NAMES)}")
    return name


def aliases(name: str) -> list[str]:
    """A sampler's other names."""
    return [alias for alias, named in ALIASES.items() if named == name]


def split_name(name: str) -> tuple[str, str]:
    """'DPM++ 2M Karras' -> ('DPM++ 2M', 'Karras'), as A1111 1.9+ writes Sampler and Schedule type."""
    if name.endswith(" Karras"):
        return name.removesuffix(" Karras"), "Karras"
    return name, "Automatic"


def join_name(sampler: str, schedule_type: str | None) -> str:
    """Inverse of split_name, for infotexts read back ('Schedule type' absent in older ones)."""
    if schedule_type == "Karras" and sampler + " Karras" in SAMPLERS:
        return sampler + " Karras"
    return sampler

BATCH_TOLERANCE = 2  # the most a batched image's pixel may differ from its solo result, in 1/255
# The samplers whose batched images stay within BATCH_TOLERANCE of their solo results (bench/batching.py measures each
# sampler, tests/test_batching.py checks these): 1/255 for most, 2 for DPM++ 2M SDE. DPM2 a reached 3/255, and LCM
# moved some images by up to 123/255 at 20 steps (its x0 prediction amplifies batched rounding): those two never batch.
BATCHING_SAMPLERS: frozenset[str] = frozenset(SAMPLERS) - {"DPM2 a", "LCM"}
