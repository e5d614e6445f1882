"""Fast style transfer recipes (Johnson, Alahi, Fei-Fei, arXiv 1603.08155): COCO at the paper's settings, and an
offline pipeline check on scikit-image's sample photographs."""
