"""Checkpoints load weights-only everywhere regnet reads one; a hostile pickle is refused in one line.

The hostile checkpoint (tests/conftest.py ``malicious_checkpoint``) creates a marker file when unpickled with
``weights_only=False``: every test asserts the marker was never created and the refusal names the file.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from regnet.checkpoints import UntrustedCheckpoint, load_checkpoint

# --- the loading function ---------------------------------------------------------------------------------


def test_the_hostile_checkpoint_really_runs_code_when_trusted(malicious_checkpoint):
    """The test's pickle is real: opting in (trust=True) unpickles it, and that creates the marker."""
    path, marker = malicious_checkpoint
    load_checkpoint(path, trust=True)
    assert marker.exists()


def test_load_checkpoint_refuses_in_one_line_naming_file_global_and_opt_in(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(UntrustedCheckpoint) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message
    assert str(path) in message and "getattr" in message and "trust_checkpoint=true" in message
    assert isinstance(info.value, ValueError)  # bad input: exit 2 on the command line
    assert "--trust-checkpoints" in str(UntrustedCheckpoint(path, "x", opt_in="--trust-checkpoints"))


def test_an_unknown_class_is_refused_by_name(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "extra": pickle.PickleError("a class regnet never writes")}, path)
    with pytest.raises(UntrustedCheckpoint, match=r"pickle\.PickleError|_pickle\.PickleError"):
        load_checkpoint(path)


def test_weights_and_plain_values_load_weights_only(tmp_path):
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 3, "names": ["a"], "x": (1.5, None)}, path)
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_a_corrupt_file_is_not_called_untrusted(tmp_path):
    """Trusting a truncated or garbage file would not make it loadable: its own error, not a refusal."""
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"garbage")
    with pytest.raises(Exception) as info:
        load_checkpoint(garbage)
    assert not isinstance(info.value, UntrustedCheckpoint)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(100)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(Exception) as info:
        load_checkpoint(truncated)
    assert not isinstance(info.value, UntrustedCheckpoint)
