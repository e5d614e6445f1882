"""A few CPU steps of fast style transfer (Johnson et al., arXiv 1603.08155 §4.1) with a plain PyTorch loop."""

import warnings

import torch

from lightning_papers.data import load_image, sample_photos
from lightning_papers.losses import VGGFeatures, gram_matrix, style_loss
from lightning_papers.models import TransformerNet


def test_transformer_net_learns_to_lower_the_style_loss():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random VGG, asked for explicitly: tests only
        vgg = VGGFeatures(weights="random")
    photos = dict(sample_photos())
    size = (32, 32)
    style = load_image(photos["coffee"], size).unsqueeze(0)
    content = torch.stack([load_image(photos[name], size) for name in ("astronaut", "chelsea")])
    with torch.no_grad():
        targets = {name: gram_matrix(f) for name, f in vgg(style).items()}

    net = TransformerNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return style_loss(vgg(net(content)), targets)

    with torch.no_grad():
        initial = loss().item()
    for _ in range(40):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        final = loss().item()
    assert torch.isfinite(torch.tensor(final))
    assert final < 0.5 * initial, (initial, final)
    assert all(p.grad is None for p in vgg.parameters())  # the loss network stayed frozen
