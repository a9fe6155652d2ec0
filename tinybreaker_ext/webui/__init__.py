"""The thin WebUI layer: host adapters, UI, API routes. The only place that imports modules.*/gradio."""
