"""TinyBreaker for WebUI: PixArt-Sigma composition refined by an SD1 checkpoint.

The package has a host-independent core (files, models, sampling, prompt, pipeline, params)
that never imports a WebUI or gradio, and a thin host layer in ``tinybreaker_ext.webui``.
"""

__version__ = "0.1.0"
