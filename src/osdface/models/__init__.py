"""Model components: the VRE, the prompt adapter, LoRA handling and the SD 2.1-base parts."""
