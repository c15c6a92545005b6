"""The checkpoint folder protocol: all-or-nothing writes and named damage."""
import os

import pytest
import torch

from checkpoint import CheckpointError, choose_step, load_torch, verify_checkpoint, write_checkpoint


def write_two_files(path):
    torch.save({"w": torch.arange(3)}, os.path.join(path, "agent.th"))
    torch.save({"step": 1}, os.path.join(path, "opt.th"))


def test_a_crash_while_writing_leaves_no_checkpoint_and_the_next_save_cleans_up(tmp_path):
    target = tmp_path / "100"

    def crash(path):
        write_two_files(path)
        raise KeyboardInterrupt  # the process dies half-way

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(str(target), crash)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()][0].startswith("100.tmp-")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        choose_step(str(tmp_path), 0)

    write_checkpoint(str(target), write_two_files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100"]
    assert verify_checkpoint(str(target))
    assert torch.equal(load_torch(str(target), "agent.th")["w"], torch.arange(3))


def test_rewriting_a_step_replaces_it_whole(tmp_path):
    target = str(tmp_path / "5")
    write_checkpoint(target, write_two_files)
    write_checkpoint(target, lambda path: torch.save({"w": 7}, os.path.join(path, "agent.th")))
    assert sorted(os.listdir(target)) == ["agent.th", "manifest.json"]
    assert load_torch(target, "agent.th") == {"w": 7}


def test_damage_is_named_and_steps_are_chosen(tmp_path):
    for step in (10, 20, 30):
        write_checkpoint(str(tmp_path / str(step)), write_two_files)
    assert choose_step(str(tmp_path), 0) == 30 and choose_step(str(tmp_path), 18) == 20
    (tmp_path / "20" / "opt.th").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"20 is damaged: opt.th"):
        verify_checkpoint(str(tmp_path / "20"))
    os.remove(tmp_path / "30" / "agent.th")
    with pytest.raises(CheckpointError, match=r"30 is incomplete: agent.th is missing"):
        verify_checkpoint(str(tmp_path / "30"))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_torch(str(tmp_path / "20"), "opt.th")
