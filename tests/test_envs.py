"""Environments: the gymma adapter on real Level-Based Foraging, and the matrix game."""
import gymnasium
import numpy as np
import pytest

from envs import REGISTRY as env_REGISTRY

LBF_KEY = "lbforaging:Foraging-8x8-2p-2f-coop-v3"
EASY_LBF_KEY = "lbforaging:Foraging-5x5-2p-1f-coop-v3"  # two agents must load the single food together


def make_gymma(key=LBF_KEY, time_limit=50, seed=0, **kwargs):
    return env_REGISTRY["gymma"](key=key, time_limit=time_limit, pretrained_wrapper=None, seed=seed, **kwargs)


def random_episode(env, rng, seed=None):
    """Plays one episode with uniform actions; returns observations, states and step results."""
    obs, _ = env.reset(seed=seed)
    observations, states, steps = [obs.copy()], [env.get_state().copy()], []
    done = False
    while not done:
        actions = rng.integers(0, env.get_total_actions(), env.n_agents)
        obs, reward, terminated, truncated, info = env.step(actions)
        observations.append(obs.copy())
        states.append(env.get_state().copy())
        steps.append((actions, reward, terminated, truncated, info))
        done = terminated or truncated
    return np.array(observations), np.array(states), steps


def foraging_action(lbf, player):
    """A scripted LBF agent: LOAD when next to food, otherwise a valid move that gets closer to it
    (a valid sideways move when blocked)."""
    valid = [action.value for action in lbf._valid_actions[player]]
    row, col = player.position
    food_rows, food_cols = np.nonzero(lbf.field)
    target = min(zip(food_rows, food_cols), key=lambda food: abs(food[0] - row) + abs(food[1] - col))
    if abs(target[0] - row) + abs(target[1] - col) == 1:
        return 5
    moves = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}
    closer = [a for a in valid if a in moves
              and abs(target[0] - row - moves[a][0]) + abs(target[1] - col - moves[a][1])
              < abs(target[0] - row) + abs(target[1] - col)]
    sideways = [a for a in valid if a in moves]
    return (closer or sideways or [0])[0]


def scripted_episode(env, seed):
    env.reset(seed=seed)
    lbf = env._env.unwrapped
    for length in range(1, env.episode_limit + 1):
        actions = [foraging_action(lbf, player) for player in lbf.players]
        obs, reward, terminated, truncated, info = env.step(actions)
        if terminated or truncated:
            return length, reward, terminated, truncated, info, lbf
    raise AssertionError("the episode did not end at its step limit")


# --- gymma on LBF ---------------------------------------------------------------------------------
def test_lbf_shapes_and_env_info():
    env = make_gymma()
    info = env.get_env_info()
    assert info == {"state_shape": 24, "obs_shape": 12, "n_actions": 6, "n_agents": 2, "episode_limit": 50,
                    "continuous_actions": False}
    obs, _ = env.reset()
    assert obs.shape == (2, 12) and obs.dtype == np.float32
    assert env.get_obs_agent(1).shape == (12,)
    assert np.array_equal(env.get_state(), obs.reshape(-1))
    assert np.array_equal(env.get_avail_actions(), np.ones((2, 6)))
    assert env.get_stats() == {}


class UnequalAgentsEnv(gymnasium.Env):
    """Two agents whose observations differ in size (3 and 5) and whose action counts differ."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Tuple(
            (gymnasium.spaces.Box(-1, 1, (3,)), gymnasium.spaces.Box(-1, 1, (5,))))
        self.action_space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(4)))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return (np.full(3, 0.5, np.float32), np.full(5, -0.5, np.float32)), {}

    def step(self, actions):
        return (np.full(3, 0.5, np.float32), np.full(5, -0.5, np.float32)), [1.0, 2.0], False, False, {}


def test_observations_padded_and_actions_masked_for_unequal_agents():
    gymnasium.register(id="TestUnequalAgents-v0", entry_point=UnequalAgentsEnv)
    env = make_gymma(key="TestUnequalAgents-v0", time_limit=3)
    obs, _ = env.reset()
    assert np.array_equal(obs, [[0.5, 0.5, 0.5, 0, 0], [-0.5] * 5])
    assert env.get_state().shape == (10,)
    assert np.array_equal(env.get_avail_actions(), [[1, 1, 0, 0], [1, 1, 1, 1]])
    assert env.get_env_info()["episode_limit"] == 3


def test_common_reward_sum_mean_and_per_agent():
    results = {}
    for common, scalarisation in ((True, "sum"), (True, "mean"), (False, "sum")):
        env = make_gymma(EASY_LBF_KEY, seed=3, common_reward=common, reward_scalarisation=scalarisation)
        _, reward, terminated, *_ = scripted_episode(env, seed=3)
        assert terminated
        results[(common, scalarisation)] = reward
    per_agent = results[(False, "sum")]
    assert per_agent.shape == (2,) and per_agent.sum() > 0
    assert results[(True, "sum")] == pytest.approx(per_agent.sum())
    assert results[(True, "mean")] == pytest.approx(per_agent.mean())


def test_lbf_step_limit_is_a_truncation_not_a_terminal():
    env = make_gymma(seed=1)
    rng = np.random.default_rng(0)
    time_outs = 0
    for _ in range(5):
        _, _, steps = random_episode(env, rng)
        food_left = env._env.unwrapped.field.sum() > 0
        assert all(not terminated and not truncated for _, _, terminated, truncated, _ in steps[:-1])
        _, _, terminated, truncated, info = steps[-1]
        if food_left:
            assert len(steps) == 50
            assert (terminated, truncated, info.get("episode_limit")) == (False, True, True)
            time_outs += 1
        else:
            assert terminated and "episode_limit" not in info
    assert time_outs > 0


def test_lbf_all_food_collected_is_a_real_terminal():
    env = make_gymma(EASY_LBF_KEY, seed=5)
    for seed in range(3):
        length, reward, terminated, truncated, info, lbf = scripted_episode(env, seed=seed)
        assert lbf.field.sum() == 0 and length < 50
        assert terminated and not truncated and "episode_limit" not in info
        assert reward > 0


def test_time_limit_shorter_than_lbf_limit_truncates():
    env = make_gymma(time_limit=7, seed=2)
    _, _, steps = random_episode(env, np.random.default_rng(0))
    assert env.episode_limit == 7 and len(steps) == 7
    assert steps[-1][2:4] == (False, True) and steps[-1][4]["episode_limit"]


def test_seed_reproduces_episodes_and_later_resets_continue_the_stream():
    env_a, env_b, env_c = make_gymma(seed=11), make_gymma(seed=11), make_gymma(seed=12)
    episodes_a = [random_episode(env_a, np.random.default_rng(i))[0] for i in range(2)]
    episodes_b = [random_episode(env_b, np.random.default_rng(i))[0] for i in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(episodes_a, episodes_b))
    assert not np.array_equal(episodes_a[0][0], episodes_a[1][0])  # the second reset is not a re-seed
    assert not np.array_equal(env_c.reset()[0], episodes_a[0][0])


def test_rng_state_round_trip_reproduces_the_continuation():
    env = make_gymma(seed=21)
    random_episode(env, np.random.default_rng(0))
    saved = env.get_rng_state()
    continuation, states, _ = random_episode(env, np.random.default_rng(1))

    restored = make_gymma(seed=999)
    restored.set_rng_state(saved)
    replay, replay_states, _ = random_episode(restored, np.random.default_rng(1))
    assert np.array_equal(continuation, replay) and np.array_equal(states, replay_states)


def test_env_kwargs_reach_gymnasium_make():
    key = "lbforaging:Foraging-8x8-2p-4f-v3"
    assert make_gymma(key).get_obs_size() == 3 * 4 + 3 * 2
    for env in (make_gymma(key, kwargs={"max_num_food": 5}), make_gymma(key, max_num_food=5)):
        assert env.get_obs_size() == 3 * 5 + 3 * 2
        env.reset()
        assert np.count_nonzero(env._env.unwrapped.field) == 5
    with pytest.raises(TypeError, match="not_an_lbf_argument"):
        make_gymma(key, kwargs={"not_an_lbf_argument": 1})


def test_unsupported_or_missing_pieces_fail_clearly():
    with pytest.raises(ValueError, match="pretrained_wrapper"):
        env_REGISTRY["gymma"](key=LBF_KEY, time_limit=50, pretrained_wrapper="PretrainedTag")
    with pytest.raises(ImportError, match="no_such_env_package"):
        make_gymma("no_such_env_package:Something-v0")
    with pytest.raises(ValueError, match="reward_scalarisation"):
        make_gymma(reward_scalarisation="max")


# --- matrix game ------------------------------------------------------------------------------------
def test_matrix_game_pays_the_matrix_and_ends_after_one_step():
    payoff = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
    env = env_REGISTRY["matrix_game"](payoff=payoff, seed=0, common_reward=True, reward_scalarisation="sum")
    assert env.get_env_info() == {"state_shape": 1, "obs_shape": 1, "n_actions": 3, "n_agents": 2, "episode_limit": 1,
                                  "continuous_actions": False}
    assert env.optimum() == (11.0, (0, 0))
    for row in range(3):
        for col in range(3):
            obs, _ = env.reset()
            assert np.array_equal(obs, np.ones((2, 1)))
            _, reward, terminated, truncated, _ = env.step([row, col])
            assert reward == payoff[row][col] and terminated and not truncated
    per_agent = env_REGISTRY["matrix_game"](common_reward=False, reward_scalarisation="sum")
    per_agent.reset()
    assert np.array_equal(per_agent.step([1, 1])[1], [7.0, 7.0])
