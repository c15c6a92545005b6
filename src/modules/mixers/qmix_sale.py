"""QMIX-SALE: QMIX's monotonic mixer whose hypernetworks read a context
c^t = [s^t, z_s^t, m^t] (state, joint SALE state embedding, foresight of imagined rollouts)
instead of the state alone.

abs() keeps both mixing layers' weights non-negative, so for a fixed c^t the mixer is monotonic
in every agent's Q and greedy decentralised action selection stays consistent with Q_tot (IGM),
provided c^t does not depend on the action taken at t: z_sa of the taken action never enters.
``args.mixer_inputs`` picks and orders the parts (ablations drop some); ``context`` joins them.
Part of the SALE-MB plugin: built on its own ``MonotonicMixer``, not on a framework's QMixer.
"""
import torch

from modules.mixers.monotonic_mixer import MonotonicMixer
from utils.td_utils import flat_size

CONTEXT_PARTS = ("state", "sale", "foresight")


def check_mixer_inputs(inputs):
    unknown = [part for part in inputs if part not in CONTEXT_PARTS]
    if unknown or not inputs:
        raise ValueError(f"mixer_inputs={inputs!r}: choose a non-empty list from {list(CONTEXT_PARTS)}")


def context_part_sizes(args):
    return {"state": flat_size(args.state_shape), "sale": args.sale_dim,
            "foresight": args.imagination_dim}


class QMixSALE(MonotonicMixer):
    def __init__(self, args):
        check_mixer_inputs(args.mixer_inputs)
        sizes = context_part_sizes(args)
        self.inputs = list(args.mixer_inputs)
        super().__init__(args.n_agents, sum(sizes[part] for part in self.inputs),
                         args.mixing_embed_dim, args.hypernet_layers, args.hypernet_embed)

    def context(self, **parts):
        """Concatenate the configured parts (given by name, [..., size]) into c."""
        missing = [part for part in self.inputs if parts.get(part) is None]
        if missing:
            raise ValueError(f"qmix_sale needs context parts {missing}")
        return torch.cat([parts[part] for part in self.inputs], dim=-1)
