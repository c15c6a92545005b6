"""SALE agent: a recurrent per-agent Q-network whose Q head also reads TD7-style state-action
learned embeddings (SALE) of the agent's own observation.

    z_o  = f_o(o)             AvgL1Norm of an MLP of the observation
    z_oa = g_o(z_o, onehot a) one embedding per candidate action (one batched pass)
    h    = GRUCell(MLP(x), h_prev)       x: the MAC's inputs (obs, last action, agent id)
    Q(a) = MLP([AvgL1Norm(W h), z_o, z_oa(a), onehot(a)])  (+ (V h)_a with ``q_linear_head``)

The encoder exists three times: the live one (``encoder``, trained only by the learner's SALE
loss through ``embed``/``embed_action``), a *fixed* copy that the Q head reads when acting and
learning, and a *fixed target* copy that the target network's Q head reads
(``read_target_encoder``). The copies have ``requires_grad=False``; ``refresh_fixed_encoders``
moves fixed -> fixed target and live -> fixed. The agent sees only its own inputs. Part of the
SALE-MB plugin (runs under EPyMARL's BasicMAC too).
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.gru_sequence import gru_cell_sequence
from utils.latent_utils import avg_l1_norm
from utils.td_utils import masked_mean


class StateActionEncoder(nn.Module):
    """f(x) -> z (AvgL1Norm) and g(z, onehot a) -> z_a, TD7's encoder pair. The first layer of g
    is split into a z part and an action part so that all actions share one pass over z."""

    def __init__(self, input_dim, n_actions, embed_dim, hidden_dim):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ELU(),
                               nn.Linear(hidden_dim, embed_dim))
        self.g_state = nn.Linear(embed_dim, hidden_dim)
        self.g_action = nn.Linear(n_actions, hidden_dim, bias=False)
        self.g_out = nn.Linear(hidden_dim, embed_dim)

    def embed(self, x):
        """z = AvgL1Norm(f(x)), [..., embed_dim]."""
        return avg_l1_norm(self.f(x))

    def embed_action(self, z, actions_onehot):
        """z_a for the given (one-hot, or joint concatenated one-hot) actions, [..., embed_dim]."""
        return self.g_out(F.elu(self.g_state(z) + self.g_action(actions_onehot)))

    def action_features(self, z, actions=None):
        """g's hidden layer for every single action, [..., n_actions, hidden] (for the given
        action indices [..., k] only: [..., k, hidden]): z_a = g_out(it).
        The transposed action weight is added as a dense copy: over a transposed view the result
        is laid out non-contiguously and the layer after it becomes one small product per row."""
        return F.elu(self.g_state(z).unsqueeze(-2) + action_rows(self.g_action, actions))


def action_rows(layer, actions=None):
    """The columns of a linear layer over one-hot actions, one row per action: all of them as a
    dense [n_actions, out] copy, or those of the action indices [..., k] as [..., k, out]."""
    rows = layer.weight.t()
    return rows.contiguous() if actions is None else rows[actions]


def frozen_copy(module):
    twin = copy.deepcopy(module)
    for param in twin.parameters():
        param.requires_grad_(False)
    return twin


class SALEAgent(nn.Module):
    takes_actions = True  # forward_sequence(..., actions=...): the Q-values of those actions only

    def __init__(self, input_shape, args):
        super().__init__()
        self.n_actions = args.n_actions
        self.hidden_dim = args.hidden_dim
        # the observation leads the MAC's input row; the rest is last action and agent id
        self.obs_dim = (input_shape - (args.n_actions if args.obs_last_action else 0)
                        - (args.n_agents if args.obs_agent_id else 0))
        if self.obs_dim <= 0:
            raise ValueError(f"sale_agent: input size {input_shape} leaves no observation part")
        self.read_target_encoder = False

        self.encoder = StateActionEncoder(self.obs_dim, args.n_actions, args.sale_dim,
                                          args.sale_hidden_dim)
        self.fixed_encoder = frozen_copy(self.encoder)
        self.fixed_target_encoder = frozen_copy(self.encoder)

        self.fc1 = nn.Linear(input_shape, args.hidden_dim)
        self.rnn = nn.GRUCell(args.hidden_dim, args.hidden_dim)
        self.hidden_proj = nn.Linear(args.hidden_dim, args.hidden_dim)
        # Q head: first layer split by input part, so the per-action work is one small matmul
        self.q_hidden = nn.Linear(args.hidden_dim, args.q_head_dim)
        self.q_state = nn.Linear(args.sale_dim, args.q_head_dim, bias=False)
        self.q_state_action = nn.Linear(args.sale_dim, args.q_head_dim, bias=False)
        self.q_action = nn.Linear(args.n_actions, args.q_head_dim, bias=False)
        self.q_out = nn.Linear(args.q_head_dim, 1)
        # optional linear read-out of h per action (QMIX's agent head), added to the SALE head
        self.q_linear = nn.Linear(args.hidden_dim, args.n_actions) if args.q_linear_head else None

    @property
    def traceable(self):
        """BasicMAC may trace the acting forward: fixed tensor work once the encoder it reads is
        chosen, and acting reads the fixed one (a target network's reads the fixed target)."""
        return not self.read_target_encoder

    def init_hidden(self):
        return self.fc1.weight.new_zeros(1, self.hidden_dim)

    def forward(self, inputs, hidden_state):
        """One step: inputs [N, input_shape], hidden N*H values -> (q [N, n_actions], h [N, H])."""
        x = F.relu(self.fc1(inputs))
        h = self.rnn(x, hidden_state.reshape(-1, self.hidden_dim))
        return self.q_values(h, inputs[..., :self.obs_dim]), h

    def forward_sequence(self, inputs, hidden_state, actions=None):
        """All steps: inputs [N, T, input_shape] -> (q [N, T, n_actions], h [N, T, H]); with
        action indices [N, T, k], the Q-values of those actions only, [N, T, k]."""
        x = F.relu(self.fc1(inputs))
        h = gru_cell_sequence(self.rnn, x, hidden_state, self.training)
        return self.q_values(h, inputs[..., :self.obs_dim], actions), h

    def q_values(self, h, obs, actions=None):
        """Q of every action [..., n_actions] from the recurrent state and the (fixed or
        fixed-target) SALE, or of the action indices [..., k] only, [..., k]: the head runs
        once per (row, action) it returns (the same function; only the last layer's sum may
        round differently for another number of rows).

        z_oa = g_out(u_a) is linear in g's hidden layer u_a, so the Q head's z_oa weights are
        folded into g_out: one matmul per (row, action) instead of two, same function."""
        encoder = self.fixed_target_encoder if self.read_target_encoder else self.fixed_encoder
        z_o = encoder.embed(obs)
        action_features = encoder.action_features(z_o, actions)  # [..., n_actions or k, sale_hidden]
        folded_weight = self.q_state_action.weight @ encoder.g_out.weight
        folded_bias = self.q_state_action(encoder.g_out.bias)
        shared = (self.q_hidden(avg_l1_norm(self.hidden_proj(h))) + self.q_state(z_o)
                  + folded_bias)
        # a dense copy of the transposed [A, q_head_dim] weight: the broadcast add over a
        # transposed view is much slower, and the values are the same
        per_action = F.linear(action_features, folded_weight) + action_rows(self.q_action, actions)
        q = self.q_out(F.elu(shared.unsqueeze(-2) + per_action)).squeeze(-1)
        if self.q_linear is None:
            return q
        linear = self.q_linear(h)
        return q + (linear if actions is None else torch.gather(linear, -1, actions))

    # --- the live encoder, for the learner's SALE loss -------------------------------------------
    def embed(self, obs):
        return self.encoder.embed(obs)

    def embed_action(self, z_o, actions_onehot):
        return self.encoder.embed_action(z_o, actions_onehot)

    def sale_loss(self, obs, actions_onehot, mask):
        """The live encoder's SALE loss ||g_o(f_o(o^t), a^t) - sg f_o(o^{t+1})||^2 averaged where
        mask [B, T, n, 1] is 1; obs [B, T+1, n, obs_dim], actions_onehot [B, T+1, n, A]."""
        z_o = self.embed(obs)
        predicted = self.embed_action(z_o[:, :-1], actions_onehot[:, :-1])
        error = (predicted - z_o[:, 1:].detach()).pow(2).sum(-1, keepdim=True)
        return masked_mean(error, mask)

    def encoder_parameters(self):
        """The live encoder's parameters (trained by the SALE loss, not by TD)."""
        return self.encoder.parameters()

    def q_parameters(self):
        """The parameters TD trains: everything but the three encoders."""
        encoders = {id(p) for enc in (self.encoder, self.fixed_encoder, self.fixed_target_encoder)
                    for p in enc.parameters()}
        return [p for p in self.parameters() if id(p) not in encoders]

    @torch.no_grad()
    def refresh_fixed_encoders(self):
        """TD7's refresh: fixed target <- fixed, then fixed <- live."""
        self.fixed_target_encoder.load_state_dict(self.fixed_encoder.state_dict())
        self.fixed_encoder.load_state_dict(self.encoder.state_dict())

    @torch.no_grad()
    def copy_fixed_encoders(self, other):
        """Take both fixed copies from another SALEAgent (the target network from the live one)."""
        self.fixed_encoder.load_state_dict(other.fixed_encoder.state_dict())
        self.fixed_target_encoder.load_state_dict(other.fixed_target_encoder.state_dict())
