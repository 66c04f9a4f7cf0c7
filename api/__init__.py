"""AUTOMATIC1111-compatible REST API (/sdapi/v1, /controlnet) served beside the Gradio UI."""
