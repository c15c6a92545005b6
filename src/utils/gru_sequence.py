"""A GRUCell run over a whole sequence in one call (shipped with the SALE-MB plugin: imports
torch only)."""
import warnings

import torch


def gru_cell_sequence(cell, x, hidden_state, training):
    """Run a GRUCell over all steps of x [N, T, in] from hidden [N, H] (any shape holding N*H
    values); returns h [N, T, H]. Uses torch's multi-step GRU kernel with the cell's own
    parameters (same gate layout): faster than looping over the cell in Python, forward and
    backward. cuDNN warns once that these weights are not one flat buffer; copying them is
    negligible. cuDNN (the GPU) takes only a contiguous initial hidden state; an expanded one
    (one initial state for every row) is copied."""
    weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    h0 = hidden_state.reshape(1, -1, cell.hidden_size).contiguous()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single contiguous chunk of memory")
        h, _ = torch.gru(x, h0, weights, True, 1, 0.0, training, False, True)
    return h
