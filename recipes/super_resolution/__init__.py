"""Single-image super-resolution recipes (Johnson, Alahi, Fei-Fei, arXiv 1603.08155): x4 and x8 with the feature
loss on COCO, the per-pixel baseline, and an offline pipeline check on scikit-image's sample photographs."""
