"""Plain-PyTorch baseline of Chughtai et al.'s group-composition MLP, for bench/bench_training.py.

Chughtai, Chan and Nanda 2023 ("A toy model of universality", §3.2 and their public training code):
each operand has its own embedding (|G| × 256), the two embeddings are concatenated and go through
a linear layer to 128 hidden ReLU units, then a linear unembedding to |G| logits; trained full
batch with AdamW (lr 1e-3, weight decay 1, betas (0.9, 0.98)) on 40% of S5 × S5. Written the way
such a model usually is (nn.Embedding, torch.cat, nn.Linear), every example through every layer.
The loss is the same float64 cross-entropy as mi_margin's (``last_position_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ChughtaiMLP(nn.Module):
    """``logits = W_U relu(W [E_a(a) ; E_b(b)] + b) + b_U`` over operand pairs ``inputs`` [B, 2].

    Example:
        >>> ChughtaiMLP(order=6, d_embed=4, d_hidden=8)(torch.tensor([[1, 2]])).shape
        torch.Size([1, 6])
    """

    def __init__(self, order: int = 120, d_embed: int = 256, d_hidden: int = 128, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed_left = nn.Embedding(order, d_embed)
        self.embed_right = nn.Embedding(order, d_embed)
        self.linear = nn.Linear(2 * d_embed, d_hidden)
        self.unembed = nn.Linear(d_hidden, order)

    def forward(self, inputs: Tensor) -> Tensor:
        x = torch.cat([self.embed_left(inputs[:, 0]), self.embed_right(inputs[:, 1])], dim=-1)
        return self.unembed(F.relu(self.linear(x)))
