"""Loss-landscape library (pure PyTorch, no Lightning).

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
filter-normalised random directions, PCA directions of a trajectory, 1-D/2-D surfaces, interpolation between
two states (optionally on a copy with BatchNorm folded into the convolutions), sharpness, plots; a range framed to
the basin (:mod:`~lightning_papers.landscape.framing`) and adaptive refinement
(:mod:`~lightning_papers.landscape.adaptive`). Curvature beyond the top eigenvalue (top-k eigenpairs, trace,
spectral density, the learning rate's stability threshold; Yao et al., arXiv 1912.07145; Cohen et al., arXiv
2103.00065): :mod:`lightning_papers.landscape.curvature`.
"""

from lightning_papers.landscape.adaptive import Refinement, adaptive_surface, filled_values, plotted_values
from lightning_papers.landscape.curvature import (
    CurvatureHistory,
    HessianEigenpairs,
    HessianSpectrum,
    HessianTrace,
    hessian_eigenvalues,
    hessian_spectrum,
    hessian_trace,
    optimizer_stability_thresholds,
    stability_threshold,
)
from lightning_papers.landscape.directions import (
    Direction,
    ignored_keys,
    landscape_tensors,
    orthogonalize,
    random_direction,
    random_directions,
    target_direction,
)
from lightning_papers.landscape.evaluation import (
    EvaluationSpec,
    accuracy,
    prepare_batches,
    preserved_model,
    samples_in,
    to_device,
)
from lightning_papers.landscape.fold import FoldedModel, fold_batchnorm
from lightning_papers.landscape.framing import Frame, Framed, frame_range, shared_range
from lightning_papers.landscape.pca import PCADirections, pca_directions
from lightning_papers.landscape.plot import (
    CLIP_FACTOR,
    MeshView,
    SurfaceScale,
    animate_surfaces,
    describe_sampling,
    display_values,
    mark_evaluated,
    mesh_arrays,
    mesh_view,
    plot_contour,
    plot_curve,
    plot_filled_contour,
    plot_heatmap,
    plot_surface3d,
    plot_trajectory,
    save_gif,
    surface_frames,
    surface_scale,
    write_vtp,
)
from lightning_papers.landscape.result import SurfaceResult, load_surface, save_surface
from lightning_papers.landscape.sharding import merge_surfaces, shard_indices
from lightning_papers.landscape.sharpness import HessianEigenvalue, centre_curvature, hessian_top_eigenvalue, loss_rise
from lightning_papers.landscape.storage import SurfaceStore, data_fingerprint, model_fingerprint
from lightning_papers.landscape.surface import interpolate, surface

__all__ = [
    "CLIP_FACTOR", "CurvatureHistory", "Direction", "EvaluationSpec", "FoldedModel", "Frame", "Framed",
    "HessianEigenpairs", "HessianEigenvalue", "HessianSpectrum", "HessianTrace", "MeshView", "PCADirections",
    "Refinement", "SurfaceResult", "SurfaceScale", "SurfaceStore", "accuracy", "adaptive_surface", "animate_surfaces",
    "centre_curvature", "data_fingerprint", "describe_sampling", "display_values", "filled_values", "fold_batchnorm",
    "frame_range", "hessian_eigenvalues", "hessian_spectrum", "hessian_top_eigenvalue", "hessian_trace",
    "ignored_keys", "interpolate", "landscape_tensors", "load_surface", "loss_rise", "mark_evaluated",
    "merge_surfaces", "mesh_arrays", "mesh_view", "model_fingerprint", "optimizer_stability_thresholds",
    "orthogonalize", "pca_directions", "plot_contour", "plot_curve", "plot_filled_contour", "plot_heatmap",
    "plot_surface3d", "plot_trajectory", "plotted_values", "prepare_batches", "preserved_model", "random_direction",
    "random_directions", "samples_in", "save_gif", "save_surface", "shard_indices", "shared_range",
    "stability_threshold", "surface", "surface_frames", "surface_scale", "target_direction", "to_device", "write_vtp",
]
