"""A procedural world of simple scenes with exact ground truth, and the small CLIP and Stable Diffusion models
trained on it (the ``mini`` preset)."""
