"""The paper's Level-Based Foraging tasks: each env config builds the task it names."""
import numpy as np
import pytest

from envs import REGISTRY as env_REGISTRY
from run_config import build_config

# env config -> (players, foods, grid size, sight, cooperative)
PAPER_TASKS = {
    "lbf_10x10_3p_5f": (3, 5, 10, 10, False),
    "lbf_10x10_4p_3f": (4, 3, 10, 10, False),
    "lbf_2s_8x8_2p_2f_coop": (2, 2, 8, 2, True),
    "lbf_2s_10x10_3p_3f": (3, 3, 10, 2, False),
}


def make_task(env_config, seed=0):
    config = build_config("qmix", env_config, [("seed", seed)])
    return env_REGISTRY[config["env"]](**config["env_args"], common_reward=config["common_reward"],
                                       reward_scalarisation=config["reward_scalarisation"])


@pytest.mark.parametrize("env_config", list(PAPER_TASKS))
def test_paper_task_configs_build_the_named_task(env_config):
    players, foods, size, sight, coop = PAPER_TASKS[env_config]
    env = make_task(env_config)
    lbf = env._env.unwrapped
    assert (len(lbf.players), lbf.max_num_food, lbf.field.shape, lbf.sight, lbf.force_coop) == (
        players, foods, (size, size), sight, coop)
    assert env.get_env_info() == {"state_shape": players * (3 * foods + 3 * players), "obs_shape": 3 * foods + 3 * players,
                                  "n_actions": 6, "n_agents": players, "episode_limit": 50,
                                  "continuous_actions": False}
    for seed in range(3):
        env.reset(seed=seed)
        assert np.count_nonzero(lbf.field) == foods   # every food is placed, five included


def test_five_food_task_is_labelled_as_such_in_results():
    from experiment import env_label

    config = build_config("qmix", "lbf_10x10_3p_5f", [])
    assert env_label(config) == "Foraging-10x10-3p-5f-v3"
