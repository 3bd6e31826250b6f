"""Package data: the SD 2.1-base configs (unet, vae, scheduler) for building full-size models offline."""
