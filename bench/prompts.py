"""What A1111's prompt syntax costs.

1. Encoding a prompt of 75, 150 and 300 tokens with emphasis (extensions/prompts) against the plain pipeline's own
   encoding of 75 tokens, on SD 1.5's text encoder shape (random weights) and on the demo model, and as a share of a
   20-step generation on the demo model (goal: under 2%).
2. A plain prompt's whole request (service.run) with the extension installed against without it (goal: at most
   1.01).

    python -m bench.prompts
"""

from __future__ import annotations

import statistics
import tempfile

from bench.common import interleaved, median_ratio

WORDS = "a (red:1.2) circle on a blue background, "  # 10 tokens


def prompt_of(tokens: int) -> str:
    return (WORDS * (tokens // 10 + 1))[: len(WORDS) * (tokens // 10)]


def encoding(tokenizer, text_encoder, rounds: int) -> dict[str, float]:
    """Median ms of our encoding at 75 / 150 / 300 tokens and of the plain 77-token encoding."""
    import torch

    from extensions.prompts.encoder import PromptEncoder

    encoder = PromptEncoder(tokenizer, text_encoder)
    plain_ids = tokenizer(prompt_of(75), padding="max_length", max_length=77, truncation=True,
                          return_tensors="pt").input_ids

    def plain():
        with torch.no_grad():
            return text_encoder(plain_ids)[0]

    candidates = {"plain 75": plain}
    for tokens in (75, 150, 300):
        text = prompt_of(tokens)
        candidates[f"ours {tokens}"] = lambda text=text: encoder.encode(encoder.tokenize(text))
    times = interleaved(candidates, rounds, warmup=2)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def main(rounds: int = 15) -> dict:
    from extensions.prompts import Prompts
    from models.manager import PipelineManager
    from service.studio import StudioService
    from testing.text_encoders import sd15_text_encoder

    figures = {}
    manager = PipelineManager.load("demo", device="cpu")
    pipe = manager.pipelines["txt2img"]
    sd15 = encoding(pipe.tokenizer, sd15_text_encoder(), rounds)
    demo = encoding(pipe.tokenizer, pipe.text_encoder, rounds)
    for label, found in (("SD 1.5-shaped text encoder", sd15), ("demo text encoder", demo)):
        row = " / ".join(f"{found[f'ours {tokens}']:.1f}" for tokens in (75, 150, 300))
        print(f"prompts encode  {label}: 75 / 150 / 300 tokens {row} ms; plain pipeline 75: {found['plain 75']:.1f} ms")
    figures.update(sd15=sd15, demo=demo)

    folder = tempfile.mkdtemp()
    plain_service = StudioService(PipelineManager.load("demo", device="cpu"), f"{folder}/a")
    with_prompts = StudioService(PipelineManager.load("demo", device="cpu"), f"{folder}/b",
                                 [Prompts(f"{folder}/embeddings")])
    fields = {"prompt": "a red circle on a blue background", "steps": 20, "width": 64, "height": 64, "seed": 1}
    weighted = {**fields, "prompt": prompt_of(300)}
    times = interleaved({"without": lambda: plain_service.run("txt2img", fields),
                         "with": lambda: with_prompts.run("txt2img", fields),
                         "weighted 300": lambda: with_prompts.run("txt2img", weighted)}, rounds, warmup=2)
    ratio = median_ratio(times["with"], times["without"])
    generation_ms = statistics.median(times["without"]) * 1000
    share = max(demo[f"ours {tokens}"] for tokens in (75, 150, 300)) * 2 / generation_ms  # prompt and negative
    print(f"prompts request  plain prompt, 20 steps at 64 px: with the extension / without: {ratio:.3f} "
          f"({statistics.median(times['with']) * 1000:.0f} / {generation_ms:.0f} ms); a weighted 300-token prompt: "
          f"{statistics.median(times['weighted 300']) * 1000:.0f} ms")
    print(f"prompts share  encoding a 300-token prompt and its negative: {share:.2%} of a 20-step demo generation")
    figures.update(ratio=ratio, share=share)
    return figures


if __name__ == "__main__":
    main()
