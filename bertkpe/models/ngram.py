"""The n-gram CNN shared by the chunk, rank and joint heads."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NGramCNN(nn.Module):
    """One Conv1d of kernel n for each n-gram length n = 1..N, laid out as the mention grid.

    Output (B, N, W, channels): cell (n-1, i) represents the n-gram starting at word i;
    cells past the last full n-gram are zero-padded (and never candidates).
    """

    def __init__(self, input_size: int, max_phrase_words: int, channels: int = 512, dropout: float = 0.05,
                 relu: bool = True):
        super().__init__()
        self.relu = relu
        self.convs = nn.ModuleList(nn.Conv1d(input_size, channels, kernel_size=n)
                                   for n in range(1, max_phrase_words + 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        num_words = words.shape[1]
        sequence = words.transpose(1, 2)  # (B, H, W)
        grams = []
        for n, conv in enumerate(self.convs, start=1):
            if num_words < n:
                out = sequence.new_zeros(sequence.shape[0], conv.out_channels, num_words)
            else:
                out = F.pad(conv(sequence), (0, n - 1))
            grams.append(out)
        stacked = torch.stack(grams, dim=1)  # (B, N, C, W)
        if self.relu:
            stacked = F.relu(stacked)
        return self.dropout(stacked).transpose(2, 3)
