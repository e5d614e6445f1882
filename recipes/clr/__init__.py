"""Smith, "Cyclical Learning Rates for Training Neural Networks" (arXiv 1506.01186): LR range test + CLR recipes."""
