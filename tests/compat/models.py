"""The matrix's models, as their authors write them, shrunk to a few thousand parameters, with random data.

Each row is a LightningModule plus ``loss_of(module, batch)``: its loss on one batch written out again here (not
through the module's ``training_step`` or the package), the independent reference of the probe's centre and of
the curvature. Nothing downloads: Lightning's demo ``Transformer`` gets random tokens instead of WikiText-2, the
Hugging Face model is built from a ``BertConfig``.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.demos import LightningTransformer, Transformer
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

VOCAB, SEQ = 11, 6


def _tokens(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (n, SEQ + 1), generator=g)
    return TensorDataset(x[:, :-1], x[:, 1:])


# -- Lightning's BoringModel, untouched (batch size 1, SGD 0.1 with its own StepLR) -----------------------------
class Boring(BoringModel):
    pass


def boring_loss(module, batch):
    out = module.layer(batch)
    return F.mse_loss(out, torch.ones_like(out))


# -- a small nn.TransformerEncoder language model (PyTorch's fused attention on the CPU) -------------------------
class EncoderLM(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        layer = nn.TransformerEncoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(8, VOCAB)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.encoder(self.embed(x), mask=mask, is_causal=True))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).flatten(0, 1), y.flatten())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x).flatten(0, 1), y.flatten()))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        return DataLoader(_tokens(16, 0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(_tokens(8, 1), batch_size=4)


def encoder_lm_loss(module, batch):
    x, y = batch
    return F.cross_entropy(module(x).flatten(0, 1), y.flatten())


# -- Lightning's demo Transformer (nn.Transformer encoder-decoder), its LightningTransformer with random tokens ----
class DemoTransformer(LightningTransformer):
    def __init__(self):
        super().__init__(vocab_size=VOCAB)
        self.model = Transformer(vocab_size=VOCAB, ninp=8, nhead=2, nhid=16, nlayers=1, dropout=0.0)

    def prepare_data(self):  # the demo downloads WikiText-2 here
        pass

    def train_dataloader(self):
        return DataLoader(_tokens(16, 0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(_tokens(8, 1), batch_size=4)


def demo_transformer_loss(module, batch):
    x, y = batch
    return F.nll_loss(module.model(x, y), y.reshape(-1))


# -- torchvision resnet18 in a module as Lightning's docs write one (returns its own scheduler dict) -------------
class ResNet18(L.LightningModule):
    def __init__(self):
        super().__init__()
        import torchvision

        self.model = torchvision.models.resnet18(weights=None, num_classes=4)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _data(self, seed):
        g = torch.Generator().manual_seed(seed)
        return TensorDataset(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g))

    def train_dataloader(self):
        return DataLoader(self._data(0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(self._data(1), batch_size=4)


def resnet_loss(module, batch):
    x, y = batch
    return F.cross_entropy(module.model(x), y)


# -- Hugging Face BertForSequenceClassification from a tiny config, default (sdpa) attention ---------------------
def bert_config(**kwargs):
    from transformers import BertConfig

    return BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=SEQ, num_labels=2, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, **kwargs)


class Bert(L.LightningModule):
    def __init__(self):
        super().__init__()
        from transformers import BertForSequenceClassification

        self.model = BertForSequenceClassification(bert_config())

    def training_step(self, batch, batch_idx):
        out = self.model(input_ids=batch["input_ids"], labels=batch["labels"])
        self.log("train/loss", out.loss)
        return out.loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=2e-5)

    def _data(self, seed):
        g = torch.Generator().manual_seed(seed)
        ids, labels = torch.randint(0, VOCAB, (8, SEQ), generator=g), torch.randint(0, 2, (8,), generator=g)
        return [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]

    def train_dataloader(self):
        return DataLoader(self._data(0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(self._data(1), batch_size=4)


def bert_loss(module, batch):
    """The same weights in an eager-attention BertForSequenceClassification (no fused kernel in the reference)."""
    from transformers import BertForSequenceClassification

    eager = BertForSequenceClassification(bert_config(attn_implementation="eager")).to(
        next(module.parameters()).dtype)
    eager.train(module.training)
    tensors = {**dict(module.model.named_parameters()), **dict(module.model.named_buffers())}
    return torch.func.functional_call(eager, tensors, kwargs={"input_ids": batch["input_ids"],
                                                                "labels": batch["labels"]}).loss


# -- a two-optimizer GAN (manual optimization: Lightning 2 allows several optimizers only so) --------------------
class GAN(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], 2)
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)
        fake = self.generator(z)
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros)) / 2
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss})

    def configure_optimizers(self):
        return (torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)))

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(16, 4, generator=torch.Generator().manual_seed(0))), batch_size=4)


# -- a manual-optimization module with one optimizer that returns its loss ---------------------------------------
class Manual(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()
        loss = F.cross_entropy(self.net(x), y)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train_loss", loss)
        return loss.detach()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def _data(self, seed):
        g = torch.Generator().manual_seed(seed)
        return TensorDataset(torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g))

    def train_dataloader(self):
        return DataLoader(self._data(0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(self._data(1), batch_size=4)


def manual_loss(module, batch):
    x, y = batch
    return F.cross_entropy(module.net(x), y)


# -- a plain classifier for the Trainer options (no scheduler of its own) -------------------------------------------
class MLP(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    train_dataloader = Manual.train_dataloader
    val_dataloader = Manual.val_dataloader
    _data = Manual._data


mlp_loss = manual_loss
