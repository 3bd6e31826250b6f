"""Training losses, each in its own small module with its input range documented."""
