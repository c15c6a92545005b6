"""Foresight: a GRU that reads an imagined rollout from far to near (part of the SALE-MB plugin)."""
import torch
import torch.nn as nn


class RolloutEncoder(nn.Module):
    """A GRU that reads a rollout [Z^{t+H}, ..., Z^{t+1}, Z^t] from far to near. Its state after
    reading down to step k is the foresight of step k: one pass gives the foresight of the start
    (index 0) and of every imagined step (index k)."""

    def __init__(self, latent_dim, imagination_dim):
        super().__init__()
        self.gru = nn.GRU(latent_dim, imagination_dim, batch_first=True)

    def forward(self, start_latent, imagined_latents):
        """[N, L] and [N, H, L] -> foresight [N, H+1, imagination_dim]."""
        sequence = torch.cat([start_latent.unsqueeze(1), imagined_latents], dim=1).flip(1)
        foresight, _ = self.gru(sequence)
        return foresight.flip(1)
