"""Model definitions and loaders whose configuration is inferred from tensor shapes."""
