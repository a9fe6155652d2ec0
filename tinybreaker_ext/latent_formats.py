"""Scales from a VAE's raw latents to the model space its diffusion model works in (ComfyUI's SD15 and SDXL latent
formats). PixArt-Sigma works in SDXL's space, the refiner in SD1's; every stage hands over model-space latents."""

SD1_SCALE = 0.18215
SDXL_SCALE = 0.13025
