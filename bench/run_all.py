"""Every benchmark in one run (but the 15-minute soak, bench.soak, and the GPU run, bench.gpu); the printed lines
are what the README's figures come from.

    python -m bench.run_all
"""

from bench import (
    batching,
    cold_start,
    controlnet,
    families,
    hires,
    history,
    image_prompts,
    inpaint,
    inpaint_plus,
    lora,
    memory,
    overhead,
    parity,
    png_text,
    preprocessors,
    previews,
    prompts,
    ray_scaling,
    rest,
    shapes_model,
    train_lora,
    vae_tiling,
)

if __name__ == "__main__":
    overhead.main()
    memory.main()
    cold_start.main()
    lora.main()
    inpaint.main()
    controlnet.main()
    preprocessors.main([])
    png_text.main()
    prompts.main()
    rest.main()
    batching.main()
    previews.main()
    ray_scaling.main()
    history.main()
    vae_tiling.main()
    hires.main([])
    train_lora.main()
    shapes_model.main([])
    parity.main()
    families.main([])
    inpaint_plus.main([])
    image_prompts.main([])
