"""sae-studio's library: CLIP encoders split at a layer, sparse autoencoders, and their training.

No Qt lives here; the desktop editor in ``editor/`` drives this package from worker threads.
"""

__version__ = "0.1.0"
