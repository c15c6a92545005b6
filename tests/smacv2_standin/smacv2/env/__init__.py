"""STAND-IN for ``smacv2.env`` (tests only; not smacv2, no StarCraft II): a toy battle behind
smacv2's documented API.

What it keeps from smacv2: ``StarCraftCapabilityEnvWrapper(**kwargs)`` takes StarCraft2Env's
keyword arguments (an unknown one is a TypeError) and builds one distribution per
``capability_config`` entry, each drawing from its own ``numpy`` generator (``rng``), teams
shuffled with Python's ``random``; ``reset()`` returns ``(obs, state)``; ``step(actions)``
returns ``(reward, terminated, info)`` with ``battle_won``, ``dead_allies`` and ``dead_enemies``
and reports its own time limit (``EPISODE_LIMIT``) as ``terminated``; a dead agent may only take
no-op (0), an alive one stop (1), moves (2-5) and attacks on enemies in range (6 + enemy id);
``force_restarts`` counts game restarts; the game's randomness comes from ``seed``. The keyword
arguments, sizes (agents, actions, limit) and the draws' layout are checked against the real
smacv2 in tests/test_sc2v2.py; observation and state sizes are the toy's own.

The battle itself is ours and crude: enemies walk to the nearest ally and shoot it. It has no
conic field of view (``conic_fov=True`` is refused).
"""
import json
import os
import random

import numpy as np

EPISODE_LIMIT = 200
MAPS = ("10gen_protoss", "10gen_terran", "10gen_zerg")
STARCRAFT2ENV_ARGS = {
    "map_name", "step_mul", "move_amount", "difficulty", "game_version", "seed", "continuing_episode",
    "obs_all_health", "obs_own_health", "obs_last_action", "obs_pathing_grid", "obs_terrain_height",
    "obs_instead_of_state", "obs_timestep_number", "obs_own_pos", "obs_starcraft", "conic_fov",
    "num_fov_actions", "state_last_action", "state_timestep_number", "reward_sparse", "reward_only_positive",
    "reward_death_value", "reward_win", "reward_defeat", "reward_negative_scale", "reward_scale",
    "reward_scale_rate", "use_unit_ranges", "min_attack_range", "kill_unit_step_mul", "fully_observable",
    "capability_config", "replay_dir", "replay_prefix", "window_size_x", "window_size_y", "heuristic_ai",
    "heuristic_rest", "debug", "prob_obs_enemy", "action_mask",
}
HEALTH = {"stalker": 80.0, "zealot": 100.0, "colossus": 200.0, "marine": 45.0, "marauder": 125.0,
          "medivac": 150.0, "zergling": 35.0, "baneling": 30.0, "hydralisk": 80.0}
MAP_SIZE, SHOOT_RANGE, ALLY_DAMAGE, ENEMY_DAMAGE = 32.0, 6.0, 10.0, 3.0
CREATED = []  # the keyword arguments of every env made in this process


class WeightedTeams:
    def __init__(self, config):
        self.config = config
        self.rng = np.random.default_rng()

    def _team(self, size):
        team = list(self.rng.choice(self.config["unit_types"], size=size, p=self.config["weights"]))
        random.shuffle(team)
        return [str(unit) for unit in team]

    def generate(self):
        allies = self._team(self.config["n_units"])
        enemies = (allies + self._team(self.config["n_enemies"] - self.config["n_units"]))[: self.config["n_enemies"]]
        return {"team_gen": {"ally_team": allies, "enemy_team": enemies, "id": 0}}


class UniformPositions:
    def __init__(self, n_units, low, high):
        self.n_units, self.low, self.high = n_units, low, high
        self.rng = np.random.default_rng()

    def generate(self):
        return self.rng.uniform(self.low, self.high, size=(self.n_units, 2))


class SurroundedAndReflect:
    def __init__(self, config):
        self.p = config["p"]
        self.n_units, self.n_enemies = config["n_units"], config["n_enemies"]
        self.allies = UniformPositions(config["n_units"], (0, 0), (config["map_x"] / 2 - 1, config["map_y"]))
        self.extra_enemies = UniformPositions(max(config["n_enemies"] - config["n_units"], 0),
                                              (config["map_x"] / 2, 0), (config["map_x"], config["map_y"]))
        self.rng = np.random.default_rng()

    def generate(self):
        allies = self.allies.generate()
        if self.rng.random() > self.p:  # surrounded: allies in the middle, enemies in the corners
            allies[:] = MAP_SIZE / 2
            corners = np.array([[1, 1], [1, MAP_SIZE - 1], [MAP_SIZE - 1, 1], [MAP_SIZE - 1, MAP_SIZE - 1]])
            enemies = corners[self.rng.integers(0, 4, size=self.n_enemies)]
        else:  # reflected across the middle of the map
            reflected = np.stack([MAP_SIZE - allies[:, 0], allies[:, 1]], axis=1)
            enemies = np.concatenate([reflected, self.extra_enemies.generate()])[: self.n_enemies]
        return {"ally_start_positions": {"item": allies, "id": 0}, "enemy_start_positions": {"item": enemies, "id": 0}}


class EnemyMask:
    def __init__(self, config):
        self.config = config
        self.rng = np.random.default_rng()

    def generate(self):
        hidden = self.config["mask_probability"]
        mask = self.rng.choice([0, 1], size=(self.config["n_units"], self.config["n_enemies"]), p=[hidden, 1 - hidden])
        return {"enemy_mask": {"item": mask, "id": 0}}


DISTRIBUTIONS = {"weighted_teams": WeightedTeams, "surrounded_and_reflect": SurroundedAndReflect, "mask": EnemyMask}


class StarCraftCapabilityEnvWrapper:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - STARCRAFT2ENV_ARGS
        if unknown:
            raise TypeError(f"StarCraft2Env got unexpected keyword arguments {sorted(unknown)}")
        if kwargs.get("map_name") not in MAPS:
            raise KeyError(kwargs.get("map_name"))
        CREATED.append(kwargs)
        record = os.environ.get("SMACV2_STANDIN_RECORD")
        if record:
            with open(record, "a") as f:
                f.write(json.dumps({key: kwargs[key] for key in ("seed", "map_name", "capability_config",
                                                                 "reward_sparse") if key in kwargs}) + "\n")
        config = kwargs["capability_config"]
        self.env_key_to_distribution_map = {}
        for env_key, sub_config in config.items():
            if env_key in ("n_units", "n_enemies"):
                continue
            sub_config = dict(sub_config, env_key=env_key, n_units=config["n_units"], n_enemies=config["n_enemies"])
            self.env_key_to_distribution_map[env_key] = DISTRIBUTIONS[sub_config["dist_type"]](sub_config)
        self.env = _ToyBattle(**kwargs)

    def __getattr__(self, name):
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self):
        episode_config = {}
        for distribution in self.env_key_to_distribution_map.values():
            episode_config.update(distribution.generate())
        return self.env.reset(episode_config)


class _ToyBattle:
    def __init__(self, capability_config, seed=None, move_amount=2, reward_sparse=False, reward_only_positive=True,
                 reward_death_value=10, reward_win=200, reward_defeat=0, reward_scale=True, reward_scale_rate=20,
                 continuing_episode=False, conic_fov=False, **unused):
        if conic_fov:
            raise NotImplementedError("the smacv2 stand-in has no conic field of view")
        self.n_agents, self.n_enemies = capability_config["n_units"], capability_config["n_enemies"]
        self.episode_limit = EPISODE_LIMIT
        self.n_actions = 6 + self.n_enemies
        self.move_amount = move_amount
        self.reward_sparse, self.reward_only_positive = reward_sparse, reward_only_positive
        self.reward_death_value, self.reward_win, self.reward_defeat = reward_death_value, reward_win, reward_defeat
        self.reward_scale, self.reward_scale_rate = reward_scale, reward_scale_rate
        self.continuing_episode = continuing_episode
        self.game_rng = np.random.default_rng(seed)
        self.force_restarts = 0
        self.closed = False

    def reset(self, episode_config):
        teams = episode_config["team_gen"]
        self.max_health = np.array([HEALTH[unit] for unit in teams["ally_team"] + teams["enemy_team"]])
        self.health = self.max_health.copy()
        self.positions = np.concatenate([episode_config["ally_start_positions"]["item"],
                                         episode_config["enemy_start_positions"]["item"]])
        enemy_health = self.max_health[self.n_agents:].sum()
        self.max_reward = self.n_enemies * self.reward_death_value + self.reward_win + enemy_health
        self.steps = 0
        return self.get_obs(), self.get_state()

    def _distance(self, i, j):
        return float(np.linalg.norm(self.positions[i] - self.positions[j]))

    def get_avail_agent_actions(self, agent_id):
        if self.health[agent_id] <= 0:
            return [1] + [0] * (self.n_actions - 1)
        avail = [0, 1, 1, 1, 1, 1] + [0] * self.n_enemies
        for enemy in range(self.n_enemies):
            unit = self.n_agents + enemy
            avail[6 + enemy] = int(self.health[unit] > 0 and self._distance(agent_id, unit) <= SHOOT_RANGE)
        return avail

    def get_avail_actions(self):
        return [self.get_avail_agent_actions(agent_id) for agent_id in range(self.n_agents)]

    def step(self, actions):
        health_before = self.health.copy()
        moves = {2: (0, 1), 3: (0, -1), 4: (1, 0), 5: (-1, 0)}
        for agent_id, action in enumerate(int(a) for a in actions):
            available = self.get_avail_agent_actions(agent_id)[action] == 1
            assert available, f"Agent {agent_id} cannot perform action {action}"
            if action in moves:
                offset = self.move_amount * np.array(moves[action])
                self.positions[agent_id] = np.clip(self.positions[agent_id] + offset, 0, MAP_SIZE)
            elif action >= 6:
                self.health[self.n_agents + action - 6] -= ALLY_DAMAGE
        for enemy in range(self.n_agents, self.n_agents + self.n_enemies):
            alive_allies = np.flatnonzero(self.health[: self.n_agents] > 0)
            if self.health[enemy] <= 0 or alive_allies.size == 0:
                continue
            target = min(alive_allies, key=lambda ally: self._distance(enemy, ally))
            if self._distance(enemy, target) <= SHOOT_RANGE:
                self.health[target] -= ENEMY_DAMAGE * self.game_rng.uniform(0.5, 1.5)
            else:
                direction = self.positions[target] - self.positions[enemy]
                self.positions[enemy] += direction / np.linalg.norm(direction)
        self.health = np.maximum(self.health, 0.0)
        self.steps += 1

        enemy_damage = (health_before - self.health)[self.n_agents:].sum()
        kills = np.count_nonzero((health_before > 0) & (self.health <= 0))
        reward = 0.0 if self.reward_sparse else abs(enemy_damage + self.reward_death_value * kills)
        dead_allies = int(np.count_nonzero(self.health[: self.n_agents] <= 0))
        dead_enemies = int(np.count_nonzero(self.health[self.n_agents:] <= 0))
        info = {"battle_won": False, "dead_allies": dead_allies, "dead_enemies": dead_enemies}
        terminated = False
        if dead_enemies == self.n_enemies or dead_allies == self.n_agents:
            terminated = True
            if dead_enemies == self.n_enemies and dead_allies < self.n_agents:
                info["battle_won"] = True
                reward = 1 if self.reward_sparse else reward + self.reward_win
            elif dead_allies == self.n_agents:
                reward = -1 if self.reward_sparse else reward + self.reward_defeat
        elif self.steps >= self.episode_limit:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
        if self.reward_scale:
            reward /= self.max_reward / self.reward_scale_rate
        return reward, terminated, info

    def get_obs_agent(self, agent_id):
        if self.health[agent_id] <= 0:
            return np.zeros(self.get_obs_size(), dtype=np.float32)
        others = [unit for unit in range(self.n_agents + self.n_enemies) if unit != agent_id]
        features = [self.health[agent_id] / self.max_health[agent_id], *(self.positions[agent_id] / MAP_SIZE)]
        for unit in others:
            seen = self.health[unit] > 0 and self._distance(agent_id, unit) <= 2 * SHOOT_RANGE
            relative = (self.positions[unit] - self.positions[agent_id]) / MAP_SIZE
            features += [self.health[unit] / self.max_health[unit], *relative] if seen else [0.0, 0.0, 0.0]
        return np.array(features, dtype=np.float32)

    def get_obs(self):
        return [self.get_obs_agent(agent_id) for agent_id in range(self.n_agents)]

    def get_state(self):
        positions = (self.positions / MAP_SIZE).reshape(-1)
        return np.concatenate([self.health / self.max_health, positions]).astype(np.float32)

    def get_obs_size(self):
        return 3 * (self.n_agents + self.n_enemies)

    def get_state_size(self):
        return 3 * (self.n_agents + self.n_enemies)

    def get_total_actions(self):
        return self.n_actions

    def get_env_info(self):
        return {"state_shape": self.get_state_size(), "obs_shape": self.get_obs_size(), "n_actions": self.n_actions,
                "n_agents": self.n_agents, "episode_limit": self.episode_limit}

    def render(self):
        return None

    def save_replay(self):
        pass

    def close(self):
        self.closed = True
