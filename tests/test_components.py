"""Property tests for src/components: EpisodeBatch, ReplayBuffer, transforms, action selectors,
epsilon schedules and the running mean/std."""
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.action_selectors import REGISTRY as SELECTORS
from components.episode_buffer import EpisodeBatch, ReplayBuffer
from components.epsilon_schedules import DecayThenFlatSchedule
from components.standarize_stream import RunningMeanStd
from components.transforms import OneHot

N_AGENTS, N_ACTIONS, OBS_DIM, STATE_DIM, T = 3, 5, 4, 6, 7


def make_scheme():
    return {
        "state": {"vshape": STATE_DIM},
        "obs": {"vshape": OBS_DIM, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
        "task": {"vshape": (2,), "episode_const": True},
    }


def make_batch(batch_size=4, cls=EpisodeBatch, **kwargs):
    """An EpisodeBatch, or a ReplayBuffer storing its episodes in chunks of two."""
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=N_ACTIONS)])}
    if cls is ReplayBuffer:
        kwargs.setdefault("chunk_episodes", 2)
    return cls(make_scheme(), {"agents": N_AGENTS}, batch_size, T, preprocess=preprocess, **kwargs)


def random_episodes(batch_size, generator):
    return {
        "state": torch.rand(batch_size, T, STATE_DIM, generator=generator),
        "obs": torch.rand(batch_size, T, N_AGENTS, OBS_DIM, generator=generator),
        "actions": torch.randint(N_ACTIONS, (batch_size, T, N_AGENTS, 1), generator=generator),
        "reward": torch.rand(batch_size, T, 1, generator=generator),
    }


def episodes_with_ids(ids):
    """A batch whose episode i has every state entry equal to ids[i] and ids[i]-1 filled steps."""
    batch = make_batch(len(ids))
    for row, episode_id in enumerate(ids):
        length = 1 + episode_id % (T - 1)
        batch.update({"state": np.full((length, STATE_DIM), float(episode_id))},
                     bs=row, ts=slice(0, length))
    return batch


def stored_ids(batch):
    return batch["state"][:, 0, 0].long().tolist()


# ---------------------------------------------------------------- transforms

def test_one_hot_transform_and_output_info():
    indices = torch.tensor([[[2], [0]], [[4], [1]]])
    one_hot = OneHot(out_dim=5)
    out = one_hot.transform(indices)
    assert out.shape == (2, 2, 5) and out.dtype == torch.float32
    assert torch.equal(out.argmax(-1), indices.squeeze(-1))
    assert torch.equal(out.sum(-1), torch.ones(2, 2))
    assert one_hot.infer_output_info((1,), torch.long) == ((5,), torch.float32)


# ---------------------------------------------------------------- EpisodeBatch

def test_scheme_gains_filled_and_derived_fields_and_storage_shapes():
    batch = make_batch(4)
    assert batch.scheme["obs"]["vshape"] == OBS_DIM  # kept as given (controllers add ints to it)
    assert batch.scheme["filled"]["dtype"] == torch.long
    assert batch.scheme["actions_onehot"]["vshape"] == (N_ACTIONS,)
    assert batch.scheme["actions_onehot"]["group"] == "agents"
    assert batch["obs"].shape == (4, T, N_AGENTS, OBS_DIM)
    assert batch["state"].shape == (4, T, STATE_DIM)
    assert batch["avail_actions"].dtype == torch.int32
    assert batch["filled"].shape == (4, T, 1)
    assert batch["task"].shape == (4, 2) and "task" in batch.data.episode_data
    with pytest.raises(ValueError):
        EpisodeBatch({"filled": {"vshape": (1,)}}, {}, 1, 2)


def test_whole_episode_update_round_trips_through_getitem():
    generator = torch.Generator().manual_seed(0)
    batch = make_batch(4)
    episodes = random_episodes(2, generator)
    batch.update({key: value.numpy() for key, value in episodes.items()},
                 bs=[1, 3], ts=slice(0, T))
    for key, value in episodes.items():
        assert torch.equal(batch[key][[1, 3]], value.to(batch[key].dtype))
        assert not batch[key][[0, 2]].any()
    assert torch.equal(batch["actions_onehot"][[1, 3]].argmax(-1), episodes["actions"].squeeze(-1))
    sub = batch[[3, 1], 2:5]
    assert sub.batch_size == 2 and sub.max_seq_length == 3
    assert torch.equal(sub["obs"], episodes["obs"][[1, 0], 2:5])


def test_runner_style_per_step_writes_broadcast_into_place():
    batch = make_batch(2)
    obs = [np.full(OBS_DIM, agent, dtype=np.float32) for agent in range(N_AGENTS)]
    batch.update({"obs": [obs], "state": [np.arange(STATE_DIM)],
                  "avail_actions": [[[1] * N_ACTIONS] * N_AGENTS]}, bs=1, ts=3)
    batch.update({"actions": torch.tensor([[4, 0, 2]]), "reward": [(1.5,)],
                  "terminated": [(True,)]}, bs=slice(1, 2), ts=3)
    assert torch.equal(batch["obs"][1, 3], torch.tensor(np.stack(obs)))
    assert torch.equal(batch["state"][1, 3], torch.arange(STATE_DIM, dtype=torch.float32))
    assert batch["actions"][1, 3].flatten().tolist() == [4, 0, 2]
    assert batch["reward"][1, 3].item() == 1.5 and batch["terminated"][1, 3].item() == 1
    assert batch["filled"].squeeze(-1).nonzero().tolist() == [[1, 3]]
    batch.update({"reward": 2.0}, bs=0, ts=slice(None))  # a scalar fills the slice
    assert torch.equal(batch["reward"][0], torch.full((T, 1), 2.0))
    with pytest.raises(RuntimeError):
        batch.update({"obs": np.zeros((N_AGENTS + 1, OBS_DIM))}, bs=0, ts=0)
    with pytest.raises(IndexError):
        batch.update({"reward": 1.0}, bs=0, ts=T)
    with pytest.raises(KeyError):
        batch.update({"rewards": 1.0}, bs=0, ts=0)


def test_mark_filled_marks_only_the_first_transition_write():
    batch = make_batch(3)
    batch.update({"actions": np.zeros((3, 1, N_AGENTS, 1))}, ts=0, mark_filled=False)
    assert not batch["filled"].any()
    batch.update({"task": np.ones((3, 2))}, bs=slice(None))
    assert not batch["filled"].any()
    batch.update({"reward": [1.0, 2.0]}, bs=[0, 2], ts=1)
    assert batch["filled"][:, :, 0].tolist() == [[0, 1] + [0] * (T - 2), [0] * T,
                                                 [0, 1] + [0] * (T - 2)]
    batch.update({"task": np.ones(2), "state": np.ones(STATE_DIM)}, bs=1, ts=4)
    assert batch["filled"][1, :, 0].nonzero().flatten().tolist() == [4]


def test_preprocess_follows_every_write_of_the_source_field():
    batch = make_batch(1)
    batch.update({"actions": [[1, 2, 3]]}, bs=0, ts=2)
    assert torch.equal(batch["actions_onehot"][0, 2], torch.eye(N_ACTIONS)[[1, 2, 3]])
    batch.update({"actions": [[0, 0, 4]]}, bs=0, ts=2)
    assert torch.equal(batch["actions_onehot"][0, 2], torch.eye(N_ACTIONS)[[0, 0, 4]])


def test_episode_const_fields_ignore_timesteps():
    batch = make_batch(3)
    batch.update({"task": [[1.0, 2.0]]}, bs=2, ts=5)
    assert torch.equal(batch["task"], torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]]))
    assert torch.equal(batch[2:, :3]["task"], torch.tensor([[1.0, 2.0]]))


def test_getitem_views_copies_and_field_selection():
    batch = make_batch(4)
    for index, expected in [(2, [2]), (-1, [3]), (slice(1, 3), [1, 2]), ([3, 0], [3, 0]),
                            (torch.tensor([2, 1]), [2, 1])]:
        batch["reward"][:] = torch.arange(4.0).view(4, 1, 1)
        sub = batch[index]
        assert sub.batch_size == len(expected) and sub.max_seq_length == T
        assert sub["reward"][:, 0, 0].tolist() == expected
    view, copy = batch[1:3, :2], batch[[1, 2]]
    view["reward"].fill_(-1.0)
    copy["reward"].fill_(-2.0)
    assert batch["reward"][1, :2].eq(-1.0).all() and batch["reward"][1, 2:].eq(1.0).all()

    fields = batch[("obs", "task")]
    assert set(fields.scheme) == {"obs", "task", "filled"} and fields.groups == {"agents": N_AGENTS}
    assert fields["obs"].data_ptr() == batch["obs"].data_ptr()
    with pytest.raises(KeyError):
        fields["state"]
    with pytest.raises(KeyError):
        batch["missing"]


def test_max_t_filled_is_the_longest_episode():
    batch = make_batch(3)
    assert batch.max_t_filled() == 0
    for row, length in enumerate([2, 5, 3]):
        batch.update({"reward": np.zeros((length, 1))}, bs=row, ts=slice(0, length))
    assert batch.max_t_filled() == 5
    assert batch[[0, 2]].max_t_filled() == 3
    assert "EpisodeBatch" in repr(batch)


# ---------------------------------------------------------------- ReplayBuffer

def test_insertion_wraps_around_and_keeps_the_newest_episodes():
    buffer = make_batch(5, cls=ReplayBuffer)
    assert not buffer.can_sample(1)
    for first in range(0, 9, 3):
        buffer.insert_episode_batch(episodes_with_ids([first, first + 1, first + 2]))
    assert (buffer.buffer_index, buffer.episodes_in_buffer) == (4, 5)
    assert stored_ids(buffer) == [5, 6, 7, 8, 4]
    for slot, episode_id in enumerate(stored_ids(buffer)):
        assert buffer["filled"][slot].sum().item() == 1 + episode_id % (T - 1)
    buffer.insert_episode_batch(episodes_with_ids(list(range(10, 17))))  # more than the buffer
    assert stored_ids(buffer) == [16, 12, 13, 14, 15] and buffer.buffer_index == 1
    assert stored_ids(buffer.sample_latest(3)) == [14, 15, 16]


def test_shorter_episodes_overwrite_a_whole_slot():
    buffer = ReplayBuffer(make_scheme(), {"agents": N_AGENTS}, 1, T)
    buffer.insert_episode_batch(episodes_with_ids([T - 2]))
    short = EpisodeBatch(make_scheme(), {"agents": N_AGENTS}, 1, 2)
    short.update({"state": np.ones((2, STATE_DIM))}, bs=0, ts=slice(0, 2))
    buffer.insert_episode_batch(short)
    assert buffer.max_t_filled() == 2 and not buffer["state"][0, 2:].any()


def test_sample_draws_distinct_stored_episodes_reproducibly():
    buffer = make_batch(8, cls=ReplayBuffer)
    buffer.insert_episode_batch(episodes_with_ids(list(range(1, 7))))
    assert buffer.can_sample(6) and not buffer.can_sample(7)
    with pytest.raises(ValueError):
        buffer.sample(7)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        ids = stored_ids(buffer.sample(4))
        torch.manual_seed(seed)
        assert stored_ids(buffer.uni_sample(4)) == ids
        assert len(set(ids)) == 4 and set(ids) <= set(range(1, 7))
        seen.update(ids)
    assert seen == set(range(1, 7))
    assert sorted(stored_ids(buffer.sample(6))) == list(range(1, 7))


def test_state_dict_round_trips_exactly():
    generator = torch.Generator().manual_seed(1)
    buffer = make_batch(6, cls=ReplayBuffer)
    for _ in range(3):
        episodes = make_batch(3)
        episodes.update(random_episodes(3, generator), ts=slice(0, T))
        episodes.update({"task": torch.rand(3, 2, generator=generator)})
        buffer.insert_episode_batch(episodes)
    buffer.insert_episode_batch(make_batch(1)[0:0])  # an empty batch changes nothing
    stream = io.BytesIO()
    torch.save(buffer.state_dict(), stream)
    restored = make_batch(6, cls=ReplayBuffer)
    stream.seek(0)
    restored.load_state_dict(torch.load(stream))
    assert (restored.buffer_index, restored.episodes_in_buffer) == (3, 6)
    for store in ("transition_data", "episode_data"):
        for field, value in getattr(buffer[:].data, store).items():
            assert torch.equal(getattr(restored[:].data, store)[field], value), field
    torch.manual_seed(5)
    original_sample = buffer.sample(3)
    torch.manual_seed(5)
    assert torch.equal(restored.sample(3)["obs"], original_sample["obs"])

    partial = make_batch(6, cls=ReplayBuffer)
    partial.insert_episode_batch(episodes_with_ids([3, 4]))
    state = partial.state_dict()
    assert state["transition_data"]["state"].shape[0] == 2
    restored.load_state_dict(state)
    assert stored_ids(restored) == [3, 4] and restored.buffer_index == 2
    assert restored.allocated_bytes() == 2 * restored.episode_bytes < restored.full_size_bytes()
    with pytest.raises(ValueError):
        make_batch(4, cls=ReplayBuffer).load_state_dict(state)


def test_storage_grows_with_the_episodes_and_its_estimate_is_exact():
    buffer = make_batch(5, cls=ReplayBuffer)
    assert buffer.allocated_bytes() == 0
    buffer.insert_episode_batch(episodes_with_ids([1]))
    assert buffer.allocated_bytes() == 2 * buffer.episode_bytes                 # one chunk
    buffer.insert_episode_batch(episodes_with_ids(list(range(2, 12))))
    tensors = [t for chunk in buffer._chunks for t in (*chunk.data.transition_data.values(),
                                                       *chunk.data.episode_data.values())]
    assert sum(t.numel() * t.element_size() for t in tensors) == buffer.full_size_bytes()
    assert buffer.full_size_bytes() == 5 * buffer.episode_bytes
    per_step = STATE_DIM * 4 + N_AGENTS * (OBS_DIM * 4 + 8 + N_ACTIONS * 4 + N_ACTIONS * 4) + 4 + 1 + 8
    assert buffer.episode_bytes == T * per_step + 2 * 4                          # + the episode-constant task


@pytest.mark.parametrize("chunk_episodes", [1, 3])
def test_chunked_storage_samples_exactly_as_one_block(chunk_episodes):
    whole = make_batch(7, cls=ReplayBuffer, chunk_episodes=7)
    chunked = make_batch(7, cls=ReplayBuffer, chunk_episodes=chunk_episodes)
    for ids in ([1, 2, 3], [4, 5, 6, 7], [8, 9]):
        whole.insert_episode_batch(episodes_with_ids(ids))
        chunked.insert_episode_batch(episodes_with_ids(ids))
    for seed in range(5):
        torch.manual_seed(seed)
        expected = whole.sample(5)
        torch.manual_seed(seed)
        got = chunked.sample(5)
        for field in expected.scheme:
            assert torch.equal(got[field], expected[field]), field
    assert stored_ids(chunked.sample_latest(4)) == [6, 7, 8, 9]


# ---------------------------------------------------------------- action selectors

def selector_args(**overrides):
    args = dict(epsilon_start=1.0, epsilon_finish=0.05, epsilon_anneal_time=100)
    args.update(overrides)
    return SimpleNamespace(**args)


def random_avail(batch_size, generator):
    avail = (torch.rand(batch_size, N_AGENTS, N_ACTIONS, generator=generator) < 0.4).int()
    avail[..., 0][avail.sum(-1) == 0] = 1  # every agent keeps at least one action
    return avail


@pytest.mark.parametrize("name", sorted(SELECTORS))
@pytest.mark.parametrize("test_mode", [False, True])
def test_selectors_never_pick_unavailable_actions(name, test_mode):
    torch.manual_seed(0)
    np.random.seed(0)
    generator = torch.Generator().manual_seed(0)
    selector = SELECTORS[name](selector_args(evaluation_epsilon=0.5))
    for _ in range(50):
        avail = random_avail(64, generator)
        outputs = torch.rand(64, N_AGENTS, N_ACTIONS, generator=generator)
        outputs[:8] = 1.0 - avail[:8].float()  # all probability / value on unavailable actions
        actions = selector.select_action(outputs, avail, t_env=10, test_mode=test_mode)
        assert actions.shape == (64, N_AGENTS) and actions.dtype == torch.long
        assert avail.gather(-1, actions.unsqueeze(-1)).eq(1).all()
    assert isinstance(selector.epsilon, float)


def test_epsilon_greedy_is_greedy_at_zero_and_uniform_at_one():
    generator = torch.Generator().manual_seed(2)
    avail = random_avail(2000, generator)
    q_values = torch.randn(2000, N_AGENTS, N_ACTIONS, generator=generator)
    greedy = q_values.masked_fill(avail == 0, -math.inf).argmax(-1)

    selector = SELECTORS["epsilon_greedy"](selector_args(epsilon_finish=0.0))
    assert torch.equal(selector.select_action(q_values, avail, t_env=100), greedy)
    assert selector.epsilon == 0.0
    assert torch.equal(selector.select_action(q_values, avail, t_env=0, test_mode=True), greedy)

    np.random.seed(0)
    selector = SELECTORS["epsilon_greedy"](selector_args(epsilon_start=1.0, epsilon_finish=1.0))
    row_avail = torch.tensor([0, 1, 1, 0, 1], dtype=torch.int).expand(20000, 1, N_ACTIONS)
    actions = selector.select_action(torch.randn(20000, 1, N_ACTIONS), row_avail, t_env=0)
    counts = torch.bincount(actions.flatten(), minlength=N_ACTIONS).float() / actions.numel()
    assert counts[[0, 3]].sum() == 0
    assert torch.allclose(counts[[1, 2, 4]], torch.full((3,), 1 / 3), atol=0.02)


def test_evaluation_epsilon_is_used_in_test_mode():
    np.random.seed(0)
    selector = SELECTORS["epsilon_greedy"](selector_args(epsilon_start=0.0, epsilon_finish=0.0,
                                                         evaluation_epsilon=1.0))
    q_values = torch.arange(float(N_ACTIONS)).expand(5000, 1, N_ACTIONS)
    avail = torch.ones(5000, 1, N_ACTIONS, dtype=torch.int)
    greedy_share = selector.select_action(q_values, avail, 0, test_mode=True).eq(N_ACTIONS - 1)
    assert abs(greedy_share.float().mean().item() - 1 / N_ACTIONS) < 0.03


def test_sampling_selectors_follow_the_masked_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]).expand(20000, 1, N_ACTIONS)
    avail = torch.tensor([1, 0, 1, 1, 1], dtype=torch.int).expand(20000, 1, N_ACTIONS)
    expected = torch.tensor([0.125, 0.0, 0.375, 0.5, 0.0])
    for name in ("multinomial", "soft_policies"):
        actions = SELECTORS[name](selector_args()).select_action(probs, avail, t_env=0)
        counts = torch.bincount(actions.flatten(), minlength=N_ACTIONS).float() / actions.numel()
        assert torch.allclose(counts, expected, atol=0.02), name
    multinomial = SELECTORS["multinomial"](selector_args())
    assert multinomial.select_action(probs, avail, 0, test_mode=True).eq(3).all()
    sampled = SELECTORS["multinomial"](selector_args(test_greedy=False)).select_action(
        probs, avail, 0, test_mode=True)
    assert sampled.unique().tolist() == [0, 2, 3]


# ---------------------------------------------------------------- schedules

def test_linear_and_exp_schedules_at_known_points():
    linear = DecayThenFlatSchedule(1.0, 0.05, 1000, decay="linear")
    assert [linear.eval(t) for t in (0, 500, 1000, 5000)] == pytest.approx([1.0, 0.525, 0.05, 0.05])
    rising = DecayThenFlatSchedule(0.0, 1.0, 10)
    assert rising.eval(2.5) == pytest.approx(0.25) and rising.eval(-1) == 0.0
    exp = DecayThenFlatSchedule(1.0, 0.01, 100, decay="exp")
    assert [exp.eval(t) for t in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.1, 0.01, 0.01])
    assert DecayThenFlatSchedule(1.0, 0.1, 0).eval(0) == 0.1
    with pytest.raises(ValueError):
        DecayThenFlatSchedule(1.0, 0.1, 10, decay="cosine")
    with pytest.raises(ValueError):
        DecayThenFlatSchedule(1.0, 0.0, 10, decay="exp")


# ---------------------------------------------------------------- running mean / std

@pytest.mark.parametrize("shape", [(), (3,)])
def test_running_mean_std_matches_numpy_over_streamed_batches(shape):
    rng = np.random.default_rng(0)
    stats = RunningMeanStd(epsilon=1e-8, shape=shape)
    seen = []
    for size in (1, 7, 50, 0, 300):
        batch = rng.normal(3.0, 2.0, size=(size, 4) + shape)
        seen.append(batch.reshape(-1, *shape))
        stats.update(torch.tensor(batch, dtype=torch.float32))
    values = np.concatenate(seen)
    assert stats.count == pytest.approx(len(values))
    assert np.allclose(stats.mean.numpy(), values.mean(0), atol=1e-4)
    assert np.allclose(stats.var.numpy(), values.var(0), rtol=1e-4)

    restored = RunningMeanStd(shape=shape)
    restored.load_state_dict(stats.state_dict())
    assert torch.equal(restored.mean, stats.mean) and torch.equal(restored.var, stats.var)
    assert restored.count == stats.count
