"""Reading, classifying, finding and downloading model files (safetensors, and GGUF for T5; never pickle)."""
