"""What SMAC-style battles share: reward settings, the end of an episode and battle statistics.

Both ``smax`` (jaxmarl's SMAX, simulated in JAX) and ``sc2v2`` (SMACv2 on StarCraft II) build on
``SmacBattleEnv``; the simulator-specific parts stay in their own modules.
"""
import dataclasses
import numbers

import numpy as np

from envs.multiagentenv import MultiAgentEnv

WON, LOST, DRAW = "won", "lost", "draw"


@dataclasses.dataclass(frozen=True)
class RewardSettings:
    """SMAC's team-reward settings, under the names smacv2 takes.

    The shaped reward of a step is the damage dealt to enemies plus ``reward_death_value`` per
    enemy killed; with ``reward_only_positive: False`` the damage taken and allies lost (times
    ``reward_negative_scale``) are subtracted. Winning adds ``reward_win``, losing
    ``reward_defeat``. ``reward_sparse`` replaces all of it by +1 / -1 for a win / loss. With
    ``reward_scale`` every reward is divided by ``max_reward / reward_scale_rate``, where
    ``max_reward`` (all enemy health, every kill and the win) makes a perfect episode return
    ``reward_scale_rate``.
    """

    reward_sparse: bool = False
    reward_only_positive: bool = True
    reward_death_value: float = 10.0
    reward_win: float = 200.0
    reward_defeat: float = 0.0
    reward_negative_scale: float = 0.5
    reward_scale: bool = True
    reward_scale_rate: float = 20.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type is bool and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{field.name} must be true or false, not {value!r}")
            if field.type is float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ValueError(f"{field.name} must be a number, not {value!r}")
        if self.reward_scale and self.reward_scale_rate <= 0:
            raise ValueError(f"reward_scale_rate must be positive, not {self.reward_scale_rate}")

    @classmethod
    def names(cls):
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, mapping):
        """The settings named in ``mapping`` (other keys are ignored; missing ones take SMAC's defaults)."""
        return cls(**{name: mapping[name] for name in cls.names() if name in mapping})


class SmacReward:
    """SMAC's team reward computed from every unit's health, for simulators that expose it (SMAX).

    Units are ordered allies first; a unit is dead once its health is 0. Shields are not modelled.
    """

    def __init__(self, settings, n_allies):
        self.settings = settings
        self.n_allies = n_allies
        self.scale = 1.0

    def start_episode(self, enemy_max_health):
        """Sets the scale for an episode whose enemies have these maximum healths."""
        s = self.settings
        max_reward = len(enemy_max_health) * s.reward_death_value + s.reward_win + float(np.sum(enemy_max_health))
        self.scale = max_reward / s.reward_scale_rate if s.reward_scale else 1.0

    def __call__(self, health_before, health_after, outcome):
        s = self.settings
        allies, enemies = slice(0, self.n_allies), slice(self.n_allies, None)
        if s.reward_sparse:
            reward = 0.0
        else:
            damage = health_before - health_after
            died = (health_before > 0) & (health_after <= 0)
            deaths_reward = s.reward_death_value * np.count_nonzero(died[enemies])
            if s.reward_only_positive:
                reward = abs(float(damage[enemies].sum()) + deaths_reward)
            else:
                deaths_reward -= s.reward_death_value * s.reward_negative_scale * np.count_nonzero(died[allies])
                ally_damage = s.reward_negative_scale * float(damage[allies].sum())
                reward = float(damage[enemies].sum()) + deaths_reward - ally_damage
        if outcome == WON:
            reward = 1.0 if s.reward_sparse else reward + s.reward_win
        elif outcome == LOST:
            reward = -1.0 if s.reward_sparse else reward + s.reward_defeat
        return reward / self.scale


def battle_outcome(allies_alive, enemies_alive):
    """``WON``, ``LOST``, ``DRAW`` (both sides wiped out) or None while both sides have units left."""
    if allies_alive and enemies_alive:
        return None
    if allies_alive:
        return WON
    return LOST if enemies_alive else DRAW


class BattleStats:
    """Counts over all episodes of an env, under SMAC's ``get_stats`` keys."""

    def __init__(self):
        self.battles_won = 0
        self.battles_game = 0
        self.battles_draw = 0
        self.timeouts = 0

    def add(self, outcome, timed_out):
        self.battles_game += 1
        self.battles_won += outcome == WON
        self.battles_draw += outcome == DRAW or timed_out
        self.timeouts += timed_out

    def as_dict(self, restarts=0):
        return {"battles_won": self.battles_won, "battles_game": self.battles_game,
                "battles_draw": self.battles_draw, "timeouts": self.timeouts, "restarts": restarts,
                "win_rate": self.battles_won / self.battles_game if self.battles_game else 0.0}


class SmacBattleEnv(MultiAgentEnv):
    """A battle of ``n_agents`` learners against ``n_enemies`` scripted enemies, SMAC's way.

    Subclasses run the simulator and keep ``_obs`` [n_agents, obs_size], ``_state`` and
    ``_avail_actions`` [n_agents, n_actions] (0/1 ints) current; after each simulator step they
    call ``_end_step``, which owns the episode logic both simulators share:

    - the team reward goes to every agent, or is copied per agent when ``common_reward`` is False
      (a SMAC battle has one team reward, so ``reward_scalarisation`` has nothing to combine);
    - a battle that ends (win, loss, draw) is a terminal; reaching ``episode_limit`` steps with
      both sides alive is a time-out: ``truncated=True``, ``info["episode_limit"] = True``;
    - every step's info holds ``battle_won``, ``dead_allies`` and ``dead_enemies`` (so the runners
      log ``battle_won_mean``, ``dead_allies_mean``, ``dead_enemies_mean``);
    - ``get_stats`` reports SMAC's battle counters.

    ``_checked_actions`` refuses an action the mask marks unavailable, naming the agent.
    """

    def __init__(self, n_agents, n_enemies, episode_limit, common_reward, reward_scalarisation):
        if reward_scalarisation not in ("sum", "mean"):
            raise ValueError(f"reward_scalarisation must be 'sum' or 'mean', not {reward_scalarisation!r}")
        if episode_limit is None or episode_limit < 1:
            raise ValueError(f"the episode limit must be a positive number of steps, not {episode_limit!r}")
        self.n_agents = n_agents
        self.n_enemies = n_enemies
        self.episode_limit = int(episode_limit)
        self.common_reward = common_reward
        self.battle_stats = BattleStats()
        self._t = 0
        self._obs = None
        self._state = None
        self._avail_actions = None

    def _checked_actions(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n_agents)
        n_actions = self._avail_actions.shape[1]
        in_range = (actions >= 0) & (actions < n_actions)
        chosen = self._avail_actions[np.arange(self.n_agents), np.clip(actions, 0, n_actions - 1)]
        bad = np.flatnonzero(~in_range | (chosen == 0))
        if bad.size:
            agent = int(bad[0])
            raise ValueError(
                f"agent {agent} chose action {int(actions[agent])}, which is not available; its available "
                f"actions are {np.flatnonzero(self._avail_actions[agent]).tolist()}")
        return actions

    def _end_step(self, team_reward, outcome, dead_allies, dead_enemies):
        """``(obs, reward, terminated, truncated, info)`` for the step just simulated."""
        self._t += 1
        terminated = outcome is not None
        truncated = not terminated and self._t >= self.episode_limit
        info = {"battle_won": outcome == WON, "dead_allies": int(dead_allies), "dead_enemies": int(dead_enemies)}
        if truncated:
            info["episode_limit"] = True
        if terminated or truncated:
            self.battle_stats.add(outcome, timed_out=truncated)
        reward = float(team_reward) if self.common_reward else np.full(self.n_agents, team_reward, dtype=np.float64)
        return self._obs, reward, terminated, truncated, info

    def get_state(self):
        return self._state

    def get_stats(self):
        return self.battle_stats.as_dict()
