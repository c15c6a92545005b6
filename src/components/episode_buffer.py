"""EpisodeBatch, the padded batch of episodes every runner writes and every learner reads, and
ReplayBuffer, a ring buffer of episodes built on it.

Fields live in ``data.transition_data`` as ``[batch, time, (group,) *vshape]`` tensors and, for
``episode_const`` fields, in ``data.episode_data`` as ``[batch, (group,) *vshape]``. The
``filled`` field (1 where a timestep holds data) is added to every scheme; it is the padding mask.
ReplayBuffer keeps its episodes in EpisodeBatch chunks allocated as episodes arrive.
"""
import math
from types import SimpleNamespace

import numpy as np
import torch

FILLED = "filled"


def _as_shape(vshape):
    return (vshape,) if isinstance(vshape, int) else tuple(vshape)


def _without_ones(shape):
    return [size for size in shape if size != 1]


class EpisodeBatch:
    """A batch of ``batch_size`` episodes padded to ``max_seq_length`` timesteps.

    ``scheme`` maps a field to ``{"vshape", "group" (optional), "dtype" (default float32),
    "episode_const" (optional)}``; ``groups`` maps a group name to its size (``{"agents": n}``);
    ``preprocess`` maps a source field to ``(new_field, [transforms])``, and the new field is
    recomputed whenever the source field is written. ``data`` (internal) wraps existing tensors
    without allocating; ``scheme`` must then already hold the derived and ``filled`` fields.
    """

    def __init__(self, scheme, groups, batch_size, max_seq_length, data=None, preprocess=None,
                 device="cpu"):
        self.scheme = {field: dict(info) for field, info in scheme.items()}
        self.groups = groups
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.preprocess = {} if preprocess is None else preprocess
        self.device = device
        if data is None:
            self._add_derived_fields()
            self.data = SimpleNamespace(transition_data={}, episode_data={})
            self._allocate()
        else:
            self.data = data

    def _add_derived_fields(self):
        if FILLED in self.scheme:
            raise ValueError(f"'{FILLED}' is a reserved field name")
        for source, (new_field, transforms) in self.preprocess.items():
            source_info = self.scheme[source]
            vshape, dtype = source_info["vshape"], source_info.get("dtype", torch.float32)
            for transform in transforms:
                vshape, dtype = transform.infer_output_info(vshape, dtype)
            info = {"vshape": vshape, "dtype": dtype}
            for key in ("group", "episode_const"):
                if key in source_info:
                    info[key] = source_info[key]
            self.scheme[new_field] = info
        self.scheme[FILLED] = {"vshape": (1,), "dtype": torch.long}

    def _allocate(self):
        for field, info in self.scheme.items():
            shape = _as_shape(info["vshape"])
            if "group" in info:
                shape = (self.groups[info["group"]],) + shape
            dtype = info.get("dtype", torch.float32)
            if info.get("episode_const", False):
                store, leading = self.data.episode_data, (self.batch_size,)
            else:
                store, leading = self.data.transition_data, (self.batch_size, self.max_seq_length)
            store[field] = torch.zeros(leading + shape, dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ writing

    def update(self, data, bs=slice(None), ts=slice(None), mark_filled=True):
        """Write ``{field: value}`` into episodes ``bs`` at timesteps ``ts``.

        ``bs``: int, slice, list or LongTensor of episodes; ``ts``: int or slice. Values may be
        lists, numpy arrays or tensors; sizes of 1 may be missing or extra (a runner writes one
        env's per-agent list into ``[1, 1, n_agents, d]``), otherwise torch broadcasting applies.
        With ``mark_filled``, the slots of the first transition field written get ``filled = 1``.
        Episode-constant fields ignore ``ts``.
        """
        bs = self._index(bs, self.batch_size)
        ts = self._index(ts, self.max_seq_length)
        if isinstance(ts, torch.Tensor):
            raise TypeError("update takes an int or a slice of timesteps")
        for field, value in data.items():
            if field in self.data.transition_data:
                store, index = self.data.transition_data, (bs, ts)
                if mark_filled:
                    store[FILLED][index] = 1
                    mark_filled = False
            elif field in self.data.episode_data:
                store, index = self.data.episode_data, (bs,)
            else:
                raise KeyError(f"{field!r} is not a field of this batch")
            self._write(store[field], index, value)
            if field in self.preprocess:
                new_field, transforms = self.preprocess[field]
                derived = store[field][index]
                for transform in transforms:
                    derived = transform.transform(derived)
                self._write(store[new_field], index, derived)

    @staticmethod
    def _write(target, index, value):
        """Copy ``value`` into ``target[index]``, converting dtype and device on the way."""
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(np.ascontiguousarray(value))
        dest = target[index]
        if dest.numel() == 0:
            return
        # copy_ broadcasts a value matching dest's trailing dims; otherwise drop/add sizes of 1.
        trailing = dest.shape[dest.dim() - value.dim():] if value.dim() <= dest.dim() else None
        if value.shape != trailing and _without_ones(value.shape) == _without_ones(dest.shape):
            value = value.reshape(dest.shape)
        if all(isinstance(part, slice) for part in index):
            dest.copy_(value)
        else:
            target[index] = value.to(device=target.device, dtype=target.dtype)

    def _index(self, index, size):
        """Turn an episode/timestep index into a slice or a LongTensor; an int keeps its dim."""
        if isinstance(index, (int, np.integer)):
            position = int(index) + size if index < 0 else int(index)
            if not 0 <= position < size:
                raise IndexError(f"index {index} is out of range for size {size}")
            return slice(position, position + 1)
        if isinstance(index, slice):
            return index
        return torch.as_tensor(np.asarray(index) if isinstance(index, list) else index,
                               dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ reading

    def __getitem__(self, item):
        """``batch["obs"]`` is the tensor; ``batch[("obs", "state")]`` a batch sharing those fields
        (and ``filled``); ``batch[bs]`` or ``batch[bs, ts]`` a batch of those episodes and
        timesteps (views for ints and slices, copies for lists and tensors)."""
        if isinstance(item, str):
            if item in self.data.transition_data:
                return self.data.transition_data[item]
            if item in self.data.episode_data:
                return self.data.episode_data[item]
            raise KeyError(f"{item!r} is not a field of this batch")
        if isinstance(item, tuple) and all(isinstance(field, str) for field in item):
            return self._select_fields(item)

        bs, ts = item if isinstance(item, tuple) else (item, slice(None))
        bs = self._index(bs, self.batch_size)
        ts = self._index(ts, self.max_seq_length)
        data = SimpleNamespace(
            transition_data={f: v[bs][:, ts] for f, v in self.data.transition_data.items()},
            episode_data={f: v[bs] for f, v in self.data.episode_data.items()},
        )
        filled = data.transition_data[FILLED]
        return EpisodeBatch(self.scheme, self.groups, filled.shape[0], filled.shape[1], data=data,
                            preprocess=self.preprocess, device=self.device)

    def _select_fields(self, fields):
        data = SimpleNamespace(transition_data={}, episode_data={})
        for field in dict.fromkeys(fields + (FILLED,)):
            if field in self.data.transition_data:
                data.transition_data[field] = self.data.transition_data[field]
            elif field in self.data.episode_data:
                data.episode_data[field] = self.data.episode_data[field]
            else:
                raise KeyError(f"{field!r} is not a field of this batch")
        scheme = {field: self.scheme[field] for field in data.transition_data}
        scheme.update({field: self.scheme[field] for field in data.episode_data})
        groups = {info["group"]: self.groups[info["group"]] for info in scheme.values()
                  if "group" in info}
        preprocess = {src: spec for src, spec in self.preprocess.items()
                      if src in scheme and spec[0] in scheme}
        return EpisodeBatch(scheme, groups, self.batch_size, self.max_seq_length, data=data,
                            preprocess=preprocess, device=self.device)

    def max_t_filled(self):
        """The largest number of filled timesteps of any episode (an int)."""
        return int(self.data.transition_data[FILLED].sum(dim=1).max())

    def to(self, device):
        """Move every tensor to ``device`` in place; returns self."""
        for store in (self.data.transition_data, self.data.episode_data):
            for field, value in store.items():
                store[field] = value.to(device)
        self.device = device
        return self

    def __repr__(self):
        return (f"EpisodeBatch(batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
                f"fields={list(self.scheme)}, groups={self.groups}, device={self.device})")


class ReplayBuffer:
    """A ring buffer of up to ``buffer_size`` episodes of ``max_seq_length`` steps; the oldest are
    overwritten first.

    Storage grows as episodes arrive, in chunks of ``chunk_episodes`` episodes (EpisodeBatches of
    about ``CHUNK_BYTES``), so a large buffer costs memory only for the episodes it holds;
    ``full_size_bytes`` is what it takes when full. Reading -- ``buffer[field]``,
    ``buffer[episodes]``, ``sample`` -- sees the stored episodes in slot order, as an EpisodeBatch.
    """

    CHUNK_BYTES = 64 * 2 ** 20

    def __init__(self, scheme, groups, buffer_size, max_seq_length, preprocess=None, device="cpu",
                 chunk_episodes=None):
        self._layout = EpisodeBatch(scheme, groups, 0, max_seq_length, preprocess=preprocess,
                                    device=device)
        self._source_scheme = scheme
        self.scheme = self._layout.scheme
        self.groups = groups
        self.preprocess = self._layout.preprocess
        self.max_seq_length = max_seq_length
        self.device = device
        self.buffer_size = buffer_size
        self.episode_bytes = sum(math.prod(value.shape[1:]) * value.element_size()
                                 for value in self._stores(self._layout))
        self.chunk_episodes = chunk_episodes or max(1, min(buffer_size, self.CHUNK_BYTES // self.episode_bytes))
        self._chunks = []
        self.buffer_index = 0
        self.episodes_in_buffer = 0

    @staticmethod
    def _stores(batch):
        return [*batch.data.transition_data.values(), *batch.data.episode_data.values()]

    def full_size_bytes(self):
        """Bytes of storage when all ``buffer_size`` episodes are held."""
        return self.buffer_size * self.episode_bytes

    def allocated_bytes(self):
        """Bytes of storage allocated so far."""
        return sum(value.numel() * value.element_size() for chunk in self._chunks for value in self._stores(chunk))

    # ------------------------------------------------------------------ writing

    def insert_episode_batch(self, ep_batch):
        """Copy every episode of ``ep_batch`` in, wrapping around the end of the buffer."""
        start = 0
        while start < ep_batch.batch_size:
            count = min(ep_batch.batch_size - start, self.buffer_size - self.buffer_index)
            self._copy_in(ep_batch[start:start + count], self.buffer_index)
            start += count
            self.buffer_index = (self.buffer_index + count) % self.buffer_size
            self.episodes_in_buffer = min(self.episodes_in_buffer + count, self.buffer_size)

    def _chunk(self, index):
        """Chunk ``index``, allocating the chunks up to it on first use."""
        while len(self._chunks) <= index:
            size = min(self.chunk_episodes, self.buffer_size - len(self._chunks) * self.chunk_episodes)
            self._chunks.append(EpisodeBatch(self._source_scheme, self.groups, size, self.max_seq_length,
                                             preprocess=self.preprocess, device=self.device))
        return self._chunks[index]

    def _copy_in(self, ep_batch, slot):
        """Write the episodes of ``ep_batch`` to slots ``slot, slot + 1, ...`` (no wrap-around)."""
        done = 0
        while done < ep_batch.batch_size:
            index, local = divmod(slot + done, self.chunk_episodes)
            chunk = self._chunk(index)
            count = min(ep_batch.batch_size - done, chunk.batch_size - local)
            slots, rows = slice(local, local + count), slice(done, done + count)
            length = ep_batch.max_seq_length
            for field, target in chunk.data.transition_data.items():
                if length < self.max_seq_length:
                    target[slots, length:] = 0
                target[slots, :length] = ep_batch.data.transition_data[field][rows]
            for field, target in chunk.data.episode_data.items():
                target[slots] = ep_batch.data.episode_data[field][rows]
            done += count

    # ------------------------------------------------------------------ reading

    def _gather(self, slots):
        """An EpisodeBatch holding copies of the episodes in ``slots`` (a LongTensor), in order."""
        chunk_of, local = slots // self.chunk_episodes, slots % self.chunk_episodes
        rows_of = [(self._chunks[index], chunk_of == index) for index in torch.unique(chunk_of).tolist()]
        data = SimpleNamespace(transition_data={}, episode_data={})
        for store in ("transition_data", "episode_data"):
            for field, layout in getattr(self._layout.data, store).items():
                out = torch.empty((len(slots),) + tuple(layout.shape[1:]), dtype=layout.dtype, device=self.device)
                for chunk, rows in rows_of:
                    out[rows] = getattr(chunk.data, store)[field][local[rows]]
                getattr(data, store)[field] = out
        return EpisodeBatch(self.scheme, self.groups, len(slots), self.max_seq_length, data=data,
                            preprocess=self.preprocess, device=self.device)

    def __getitem__(self, item):
        """``buffer[field]``: that field of every stored episode; ``buffer[episodes]`` (int, slice,
        list or LongTensor of stored slots): an EpisodeBatch of those episodes."""
        if isinstance(item, str):
            return self[:][item]
        if isinstance(item, (int, np.integer)):
            item = [item]
        slots = torch.arange(self.episodes_in_buffer)[item]
        return self._gather(slots)

    def max_t_filled(self):
        """The largest number of filled timesteps of any stored episode (an int)."""
        return self[:].max_t_filled()

    def can_sample(self, batch_size):
        return self.episodes_in_buffer >= batch_size

    def sample(self, batch_size):
        """``batch_size`` distinct stored episodes, chosen uniformly with torch's global RNG."""
        if not self.can_sample(batch_size):
            raise ValueError(f"cannot sample {batch_size} of {self.episodes_in_buffer} episodes")
        return self._gather(torch.randperm(self.episodes_in_buffer)[:batch_size])

    def uni_sample(self, batch_size):
        """Uniform sample without replacement (EPyMARL's name for ``sample``)."""
        return self.sample(batch_size)

    def sample_latest(self, batch_size):
        """The ``batch_size`` most recently inserted episodes, oldest first."""
        if not self.can_sample(batch_size):
            raise ValueError(f"cannot sample {batch_size} of {self.episodes_in_buffer} episodes")
        offsets = torch.arange(self.buffer_index - batch_size, self.buffer_index)
        return self._gather(offsets % self.buffer_size)

    # ------------------------------------------------------------------ saving

    def state_dict(self):
        """The stored episodes (CPU copies) and ring indices; empty slots are not saved."""
        stored = self[:].to("cpu")
        return {"buffer_size": self.buffer_size, "buffer_index": self.buffer_index,
                "episodes_in_buffer": self.episodes_in_buffer,
                "transition_data": stored.data.transition_data, "episode_data": stored.data.episode_data}

    def load_state_dict(self, state):
        if state["buffer_size"] != self.buffer_size:
            raise ValueError(f"saved buffer holds {state['buffer_size']} episodes, "
                             f"this one {self.buffer_size}")
        stored = state["episodes_in_buffer"]
        for name in ("transition_data", "episode_data"):
            layout, saved = getattr(self._layout.data, name), state[name]
            if set(saved) != set(layout):
                raise ValueError(f"saved {name} fields {sorted(saved)} differ from {sorted(layout)}")
            for field, target in layout.items():
                if saved[field].shape[1:] != target.shape[1:]:
                    raise ValueError(f"saved field {field!r} has shape "
                                     f"{tuple(saved[field].shape)}, expected (*, "
                                     f"{', '.join(map(str, target.shape[1:]))})")
        data = SimpleNamespace(transition_data=state["transition_data"], episode_data=state["episode_data"])
        self._chunks = []
        self._copy_in(EpisodeBatch(self.scheme, self.groups, stored, self.max_seq_length, data=data,
                                   preprocess=self.preprocess), 0)
        self.buffer_index = state["buffer_index"]
        self.episodes_in_buffer = stored

    def __repr__(self):
        return (f"ReplayBuffer({self.episodes_in_buffer}/{self.buffer_size} episodes, "
                f"max_seq_length={self.max_seq_length}, fields={list(self.scheme)}, "
                f"groups={self.groups}, device={self.device})")
