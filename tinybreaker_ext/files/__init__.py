"""Reading, classifying, finding and downloading model files (safetensors only; never pickle)."""
