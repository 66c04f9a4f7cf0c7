"""Every benchmark in one run; the printed lines are what the README's figures come from.

    python -m bench.run_all
"""

from bench import cold_start, controlnet, cuda_speed, inpaint, lora, memory, overhead, rest, shapes_model

if __name__ == "__main__":
    overhead.main()
    memory.main()
    cold_start.main()
    lora.main()
    inpaint.main()
    controlnet.main()
    rest.main()
    shapes_model.main([])
    cuda_speed.main()
