"""The multi-agent controller (MAC): builds each agent's inputs from an EpisodeBatch, runs the
agent network for all agents at once and picks actions with the action selector.

Agent inputs are EPyMARL's: the observation, then (``obs_last_action``) the agent's previous
action one-hot (zeros at t=0), then (``obs_agent_id``) the agent's id one-hot. Rows are
agent-major within each episode: [B * n_agents, input_shape].

On an env with continuous actions (``args.continuous_actions``) the agent network is wrapped in a
Gaussian head (outputs [mean, log_std]), actions are raw float vectors drawn by the Gaussian
selector, and the last-action input is the previous raw action.

Acting (``select_actions``) runs, with ``trace_acting``, a ``torch.jit.trace`` of the agent when
the agent declares itself ``traceable``: its forward is a fixed sequence of tensor operations on
its inputs and parameters, with no branch on their values (a trace records one path). The trace
shares the agent's parameters, so it follows every update; it is made once per input shape and
device and dropped by ``to`` and by copies (target networks trace afresh). On the CPU its outputs
are the eager ones, bitwise (tests/test_acting_trace.py; a GPU may fuse its element-wise ops,
which can round differently). It takes a third to a half off a SALE agent's acting call
(docs/benchmarks.md). The learners' forwards stay eager.
"""
import math
import os
import warnings

import torch

from components.action_selectors import REGISTRY as action_REGISTRY, GaussianActionSelector
from modules.agents import REGISTRY as agent_REGISTRY
from modules.agents.gaussian_head import GaussianHead


def _size(vshape):
    return vshape if isinstance(vshape, int) else math.prod(vshape)


class BasicMAC:
    """One agent network whose parameters all agents share (told apart by the id input)."""

    def __init__(self, scheme, groups, args):
        self.args = args
        self.n_agents = args.n_agents
        self.agent_output_type = args.agent_output_type
        self.mask_before_softmax = getattr(args, "mask_before_softmax", True)
        self.continuous_actions = getattr(args, "continuous_actions", False)
        self._last_action_field = "actions" if self.continuous_actions else "actions_onehot"
        self.agent = agent_REGISTRY[args.agent](self._get_input_shape(scheme), args)
        if self.continuous_actions:
            self.agent = GaussianHead(self.agent, args.n_actions, args.log_std_init)
            self.action_selector = GaussianActionSelector(args)
        else:
            self.action_selector = action_REGISTRY[args.action_selector](args)
        self.hidden_states = None
        self._agent_ids = torch.eye(self.n_agents)
        self.trace_acting = getattr(args, "trace_acting", False)
        self._traces = {}  # (input shape, hidden shape, device) -> the agent's trace

    def __getstate__(self):  # deep copies (target networks) and pickles leave the traces behind
        state = dict(self.__dict__)
        state["_traces"] = {}
        return state

    # --- acting and one-step forward -------------------------------------------------------------
    def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False):
        """Actions [len(bs), n_agents] (continuous: [len(bs), n_agents, n_actions]) for the
        episodes ``bs`` at step ``t_ep``. The agents step for every episode of the batch (their
        hidden states stay aligned with it)."""
        with torch.no_grad():
            agent_outputs = self.forward(ep_batch, t_ep, test_mode=test_mode, acting=True)
            avail_actions = ep_batch["avail_actions"][:, t_ep]
            return self.action_selector.select_action(agent_outputs[bs], avail_actions[bs], t_env,
                                                      test_mode=test_mode)

    def forward(self, ep_batch, t, test_mode=False, acting=False):
        """Agent outputs [B, n_agents, n_actions] at step t, advancing ``hidden_states``.
        ``acting`` (no gradient) may run the agent's trace (module doc)."""
        inputs = self._build_inputs(ep_batch, t)
        agent = self._acting_agent(inputs, self.hidden_states) if acting else self.agent
        agent_outs, self.hidden_states = agent(inputs, self.hidden_states)
        agent_outs = agent_outs.view(ep_batch.batch_size, self.n_agents, -1)
        return self._to_policy(agent_outs, ep_batch, t)

    def init_hidden(self, batch_size):
        """Fresh hidden states [batch_size, n_agents, H] ([batch_size * n_agents, H] once a
        forward has run)."""
        self.hidden_states = self._initial_hidden(batch_size)

    # --- whole episodes (learners) ---------------------------------------------------------------
    def forward_all(self, ep_batch, test_mode=False, return_hidden=False, actions=None):
        """Agent outputs [B, T, n_agents, n_actions] for every step of ``ep_batch``, starting from
        fresh hidden states; equal to ``init_hidden`` then ``forward(ep_batch, t)`` for each t.
        With ``return_hidden`` also the hidden state after each step, [B, T, n_agents, H].
        ``actions`` [B, T, n_agents, k] (Q-values, an agent whose ``forward_sequence`` takes
        them): the outputs at those action indices only, [B, T, n_agents, k].
        ``hidden_states`` is left untouched."""
        batch_size, steps = ep_batch.batch_size, ep_batch.max_seq_length
        inputs = self._build_sequence_inputs(ep_batch)  # [B, T, n, in]
        hidden = self._initial_hidden(batch_size).reshape(batch_size * self.n_agents, -1)
        if actions is not None or hasattr(self.agent, "forward_sequence"):
            def per_agent(x):  # [B, T, n, ...] -> [B * n, T, ...]
                return x.transpose(1, 2).reshape(batch_size * self.n_agents, steps, -1)
            chosen = {} if actions is None else {"actions": per_agent(actions)}
            agent_outs, hiddens = self.agent.forward_sequence(per_agent(inputs), hidden, **chosen)
            agent_outs = agent_outs.view(batch_size, self.n_agents, steps, -1).transpose(1, 2)
            hiddens = hiddens.view(batch_size, self.n_agents, steps, -1).transpose(1, 2)
        else:
            rows_per_step = batch_size * self.n_agents
            outs, hiddens = [], []
            for t in range(steps):
                out, hidden = self.agent(inputs[:, t].reshape(rows_per_step, -1), hidden)
                outs.append(out.view(batch_size, self.n_agents, -1))
                hiddens.append(hidden.view(batch_size, self.n_agents, -1))
            agent_outs = torch.stack(outs, dim=1)
            hiddens = torch.stack(hiddens, dim=1)
        if actions is None:
            agent_outs = self._to_policy(agent_outs, ep_batch, slice(None))
        return (agent_outs, hiddens) if return_hidden else agent_outs

    # --- parameters and persistence --------------------------------------------------------------
    def parameters(self):
        return self.agent.parameters()

    def state_dict(self):
        return self.agent.state_dict()

    def load_state_dict(self, state_dict):
        self.agent.load_state_dict(state_dict)

    def load_state(self, other_mac):
        self.agent.load_state_dict(other_mac.agent.state_dict())

    def to(self, device):
        self.agent.to(device)
        self._traces = {}
        self._agent_ids = self._agent_ids.to(device)
        return self

    def cuda(self):
        return self.to("cuda")

    def save_models(self, path):
        torch.save(self.agent.state_dict(), os.path.join(path, "agent.th"))

    def load_models(self, path):
        self.agent.load_state_dict(torch.load(os.path.join(path, "agent.th"), map_location="cpu"))

    # --- the traced acting path ------------------------------------------------------------------
    def _acting_agent(self, inputs, hidden):
        """The agent's trace for these shapes (made on first use), or the agent itself when
        tracing is off or the agent is not traceable."""
        if not (self.trace_acting and getattr(self.agent, "traceable", False)):
            return self.agent
        key = (tuple(inputs.shape), tuple(hidden.shape), inputs.device)
        if key not in self._traces:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes kept as constants
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit
                self._traces[key] = torch.jit.trace(self.agent, (inputs, hidden), check_trace=False)
        return self._traces[key]

    # --- inputs ----------------------------------------------------------------------------------
    def _get_input_shape(self, scheme):
        input_shape = _size(scheme["obs"]["vshape"])
        if self.args.obs_last_action:
            field = scheme.get(self._last_action_field)  # the buffer's scheme holds derived fields
            input_shape += self.args.n_actions if field is None else _size(field["vshape"])
        if self.args.obs_agent_id:
            input_shape += self.n_agents
        return input_shape

    def _build_inputs(self, batch, t):
        """[B * n_agents, input_shape] inputs at step t."""
        obs = batch["obs"][:, t]
        parts = [obs.reshape(*obs.shape[:2], -1)]
        if self.args.obs_last_action:
            actions = batch[self._last_action_field]
            parts.append(actions[:, t - 1] if t > 0 else torch.zeros_like(actions[:, 0]))
        if self.args.obs_agent_id:
            parts.append(self._agent_ids.expand(obs.shape[0], -1, -1))
        inputs = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return inputs.reshape(obs.shape[0] * self.n_agents, -1)

    def _build_sequence_inputs(self, batch):
        """[B, T, n_agents, input_shape] inputs for every step."""
        obs = batch["obs"]
        parts = [obs.reshape(*obs.shape[:3], -1)]
        if self.args.obs_last_action:
            actions = batch[self._last_action_field]
            parts.append(torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1))
        if self.args.obs_agent_id:
            parts.append(self._agent_ids.expand(*obs.shape[:2], -1, -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _initial_hidden(self, batch_size):
        return self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

    def _to_policy(self, agent_outs, batch, t):
        """Policy logits -> probabilities (unavailable actions masked first); Q-values and
        Gaussian parameters pass."""
        if self.agent_output_type != "pi_logits" or self.continuous_actions:
            return agent_outs
        if self.mask_before_softmax:
            unavailable = batch["avail_actions"][:, t] == 0
            agent_outs = agent_outs.masked_fill(unavailable, -1e10)
        return torch.softmax(agent_outs, dim=-1)
