"""Fast per-timestep writes into an EpisodeBatch, shared by the runners."""
import numpy as np
import torch

from components.transforms import OneHot

FILLED = "filled"


class BatchWriter:
    """Writes one timestep of runner data into the EpisodeBatch it is attached to.

    Runners write a few small arrays per env step, which is where EPyMARL spends a fifth of its
    wall time. On a CPU batch this writer assigns straight into numpy views of the batch's
    tensors (about 0.3 µs a field instead of ~10 µs through ``update``) and derives the
    ``preprocess`` fields itself, so the batch ends up exactly as ``update`` would leave it. A
    lone ``OneHot`` transform becomes a lookup in a table made once by that transform (~1 µs
    instead of ~10 µs). On another device the writer calls ``batch.update``.

    ``write(data, bs, t)``: values are numpy arrays or scalars shaped like ``batch[field][bs, t]``
    (``bs`` an int, a slice or a list of episode indices); ``filled`` is set at ``(bs, t)`` unless
    ``mark_filled`` is False.
    """

    def __init__(self, preprocess, device):
        self.fast = torch.device(device).type == "cpu"
        self.derivations = {}
        for field, (new_field, transforms) in (preprocess or {}).items():
            if len(transforms) == 1 and isinstance(transforms[0], OneHot):
                self.derivations[field] = (new_field, _one_hot_lookup(transforms[0]))
            else:
                self.derivations[field] = (new_field, _apply_transforms(transforms))
        self.batch = None
        self.views = {}

    def attach(self, batch):
        self.batch = batch
        if self.fast:
            self.views = {field: batch[field].numpy() for field, info in batch.scheme.items()
                          if not info.get("episode_const", False)}

    def write(self, data, bs, t, mark_filled=True):
        if not self.fast:
            self.batch.update(data, bs=bs, ts=t, mark_filled=mark_filled)
            return
        views = self.views
        for field, value in data.items():
            views[field][bs, t] = value
            derivation = self.derivations.get(field)
            if derivation is not None:
                new_field, derive = derivation
                views[new_field][bs, t] = derive(views[field][bs, t])
        if mark_filled:
            views[FILLED][bs, t] = 1


def _one_hot_lookup(one_hot):
    """A numpy function equal to ``one_hot.transform``: rows of a table the transform made."""
    table = one_hot.transform(torch.arange(one_hot.out_dim).unsqueeze(-1)).numpy()
    return lambda indices: table[indices[..., 0]]


def _apply_transforms(transforms):
    """A numpy -> numpy function applying the torch ``transforms`` in turn."""
    def derive(values):
        derived = torch.from_numpy(np.ascontiguousarray(values))
        for transform in transforms:
            derived = transform.transform(derived)
        return derived.numpy()
    return derive
