"""Transforms that derive a new EpisodeBatch field from an existing one (``preprocess``)."""
import torch
import torch.nn.functional as F


class OneHot:
    """Turn integer indices of shape ``[..., 1]`` into float one-hot vectors ``[..., out_dim]``."""

    def __init__(self, out_dim):
        self.out_dim = out_dim

    def transform(self, tensor):
        return F.one_hot(tensor.squeeze(-1).long(), self.out_dim).float()

    def infer_output_info(self, vshape_in, dtype_in):
        """The (vshape, dtype) of the derived field, whatever the source field's."""
        return (self.out_dim,), torch.float32
