"""Super-convergence recipes (Smith & Topin, arXiv 1708.07120): 1cycle vs the piecewise-constant baseline."""
