"""The n-gram CNN shared by the chunk, rank and joint heads."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NGramCNN(nn.Module):
    """One Conv1d of kernel n for each n-gram length n = 1..N, read out by linear layers.

    The (B, channels, W) vector of every n-gram is only ever consumed by small linear
    read-outs (a scorer, a 2-way classifier), so they are applied per n in the
    convolution's own channels-first layout: the large (B, N, W, channels) grid is never
    stacked, transposed or copied. Cells past the last full n-gram hold values computed
    over zero padding; they are never candidates and every head masks them.
    """

    def __init__(self, input_size: int, max_phrase_words: int, channels: int = 512, dropout: float = 0.05,
                 relu: bool = True):
        super().__init__()
        self.relu = relu
        self.convs = nn.ModuleList(nn.Conv1d(input_size, channels, kernel_size=n)
                                   for n in range(1, max_phrase_words + 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, words: torch.Tensor, *readouts: nn.Linear) -> tuple[torch.Tensor, ...]:
        """words (B, W, H) -> for each read-out, its outputs (B, N, W, out_features)."""
        weight = torch.cat([readout.weight for readout in readouts])  # (O, channels)
        bias = torch.cat([readout.bias for readout in readouts])[:, None]
        num_words = words.shape[1]
        # zero words after the last one, so every kernel yields W outputs
        sequence = F.pad(words.transpose(1, 2), (0, len(self.convs) - 1))  # (B, H, W + N - 1)
        outputs = []
        for n, conv in enumerate(self.convs, start=1):
            grams = conv(sequence[:, :, :num_words + n - 1])  # (B, channels, W)
            if self.relu:
                grams = F.relu(grams, inplace=True)
            outputs.append(torch.matmul(weight, self.dropout(grams)) + bias)  # (B, O, W)
        stacked = torch.stack(outputs, dim=1).transpose(2, 3)  # (B, N, W, O)
        return stacked.split([readout.out_features for readout in readouts], dim=-1)
