"""The checkpoint folder protocol: all-or-nothing writes and named damage."""
import os

import pytest
import torch

from checkpoint import (CheckpointError, choose_step, drop_full_state, load_torch, verify_checkpoint,
                        write_checkpoint)


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


def test_a_lost_manifest_is_named_as_damage(tmp_path):
    write_checkpoint(str(tmp_path / "10"), write_two_files)
    write_checkpoint(str(tmp_path / "20"), write_two_files)
    os.remove(tmp_path / "20" / "manifest.json")
    with pytest.raises(CheckpointError, match=r"20 is damaged: its manifest.json is missing"):
        verify_checkpoint(str(tmp_path / "20"))
    epymarl = tmp_path / "epymarl" / "5"                 # EPyMARL's folders never had one
    epymarl.mkdir(parents=True)
    write_two_files(str(epymarl))
    assert verify_checkpoint(str(epymarl)) is False


def test_dropping_the_full_state_keeps_a_verifiable_models_checkpoint(tmp_path):
    def full(path):
        write_two_files(path)
        torch.save({"episodes": 3}, os.path.join(path, "buffer.th"))
        with open(os.path.join(path, "config.json"), "w") as f:
            f.write("{}")

    target = str(tmp_path / "30")
    write_checkpoint(target, full)
    drop_full_state(target)
    assert sorted(os.listdir(target)) == ["agent.th", "manifest.json", "opt.th"]
    assert verify_checkpoint(target)


@pytest.mark.parametrize("failure", ["oserror", "torch"])
def test_a_full_disk_is_named_and_leaves_nothing_behind(tmp_path, failure):
    """No full disk here: the write raises what the OS (ENOSPC) or torch.save (its C++ stream
    error, as seen on a full disk) raise."""
    import errno

    def disk_full(path):
        write_two_files(path)
        if failure == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . basic_ios::clear: iostream error")

    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*/40: the disk is full \(.* MB free\)"):
        write_checkpoint(str(tmp_path / "40"), disk_full)
    assert os.listdir(tmp_path) == []
