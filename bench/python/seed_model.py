"""The seed model as its PyTorch code defines it (the seed article's SeedMLP), shared by the
PyTorch benchmarks."""

import torch
from torch import nn


class SeedMLP(nn.Module):
    def __init__(self, features=1000, hidden=(500, 100)):
        super().__init__()
        self.layer1 = nn.Linear(features, hidden[0])
        self.layer2 = nn.Linear(hidden[0], hidden[1])
        self.layer3 = nn.Linear(hidden[1], 1)

    def forward(self, x):
        x = torch.relu(self.layer1(x))
        x = torch.relu(self.layer2(x))
        return self.layer3(x)


def load_state_dict(path):
    """`torch.load` of the seed's state dict, as the seed serves it."""
    model = SeedMLP()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model
