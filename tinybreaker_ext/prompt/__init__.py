"""TinyBreaker's prompt language: inline `--` parameters, templates, styles and image sizes."""
