"""Training on the PyTorch side, matched to `maas train` on the same CSV: the SeedMLP
(1000→500→100→1, ReLU), MSE, Adam at lr 0.001, features standardised with the training rows'
mean and standard deviation, a seeded 80/20 split, shuffled mini-batches. Reports samples/s per
epoch (the median is the figure) and the validation MSE after the last epoch (as maas reports it
without early stopping).

Usage: train_torch.py DATA.csv --batch 64 --epochs 5 --threads 1
"""

import argparse
import json
import statistics
import time

import numpy as np
import pandas as pd
import torch

from seed_model import SeedMLP


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    frame = pd.read_csv(args.data)
    y = frame.pop("y").to_numpy(dtype=np.float32).reshape(-1, 1)
    x = frame.to_numpy(dtype=np.float32)
    order = np.random.default_rng(args.seed).permutation(len(x))
    n_val = int(round(len(x) * args.validation_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    x_train, y_train = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    x_val, y_val = torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx])

    model = SeedMLP(features=x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    speeds, val_mses = [], []
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        started = time.perf_counter()
        for start in range(0, len(perm), args.batch):
            idx = perm[start : start + args.batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        speeds.append(len(perm) / (time.perf_counter() - started))
        model.eval()
        with torch.inference_mode():
            val_mses.append(float(loss_fn(model(x_val), y_val)))
    print(
        json.dumps(
            {
                "engine": "torch",
                "version": torch.__version__,
                "threads": args.threads,
                "batch": args.batch,
                "epochs": args.epochs,
                "samples_per_second": statistics.median(speeds),
                "epoch_samples_per_second": speeds,
                "val_mse": val_mses[-1],
                "val_mse_per_epoch": val_mses,
            }
        )
    )


if __name__ == "__main__":
    main()
