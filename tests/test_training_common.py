import dataclasses
import random
from typing import Literal, Optional

import numpy as np
import pytest
import torch

from osdface.training.checkpoint import CheckpointManager, trainable_state_dict
from osdface.training.common import RunLogger, batches_from, save_grid
from osdface.training.config import ConfigError, config_to_dict, load_config


@dataclasses.dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class Cfg:
    name: str = "run"
    steps: int = 10
    loss: Literal["hinge", "vanilla"] = "hinge"
    roots: tuple[str, ...] = ("a",)
    resume: Optional[str] = None
    optim: Optim = dataclasses.field(default_factory=Optim)


@dataclasses.dataclass
class Prec:
    precision: Literal["no", "fp16", "bf16"] = "bf16"
    flag: bool = True


def test_config_layers_and_type_checks(tmp_path):
    (tmp_path / "c.yaml").write_text("steps: 20\noptim:\n  lr: 2.0e-4\n")
    cfg = load_config(Cfg, tmp_path / "c.yaml", ["optim.betas=[0.5, 0.9]", "roots=[x, y]", "loss=vanilla", "optim.lr=1"])
    assert cfg.steps == 20 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert load_config(Cfg, overrides=["optim.lr=1e-4"]).optim.lr == 1e-4  # YAML reads "1e-4" as text
    (tmp_path / "p.yaml").write_text("precision: no\nflag: off\n")  # YAML 1.1 booleans
    p = load_config(Prec, tmp_path / "p.yaml")
    assert p.precision == "no" and p.flag is False
    assert load_config(Prec, overrides=["precision=no", "flag=yes"]) == Prec("no", True)
    assert cfg.optim.betas == (0.5, 0.9) and cfg.roots == ("x", "y") and cfg.loss == "vanilla"
    assert config_to_dict(cfg)["optim"] == {"lr": 1.0, "betas": [0.5, 0.9]}
    assert load_config(Cfg, base=config_to_dict(cfg)) == cfg  # what a checkpoint stores, read back
    with pytest.raises(ConfigError, match="unknown config key optim.lrr; valid keys here: optim.betas, optim.lr"):
        load_config(Cfg, overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_config(Cfg, overrides=["steps=ten"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Cfg, overrides=["loss=l1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Cfg, overrides=["steps"])


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = torch.nn.Linear(3, 3).requires_grad_(False)
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))

    def forward(self, x):
        return self.body(self.frozen(x))


def test_checkpoint_round_trip_trainable_only_rng_and_pruning(tmp_path):
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    net.train()(torch.randn(8, 3)).sum().backward()
    opt.step(), sched.step()
    keys = set(trainable_state_dict(net))
    assert keys == {"body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias", "body.1.running_mean",
                    "body.1.running_var", "body.1.num_batches_tracked"}
    manager = CheckpointManager(tmp_path / "ck", keep_last=2)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    for step in (1, 2, 3):
        manager.save(step, {"net": net}, {"g": opt}, {"g": sched}, {"epoch": 0}, {"name": "x"})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    assert [p.name for p in manager.checkpoints()] == ["checkpoint-2", "checkpoint-3"]
    assert not list((tmp_path / "ck").glob(".*"))  # no temporary folders left

    other, other_opt = Net(), None
    other_opt = torch.optim.AdamW([p for p in other.parameters() if p.requires_grad], lr=1e-3)
    other_sched = torch.optim.lr_scheduler.LambdaLR(other_opt, lambda s: 1.0)
    state = CheckpointManager.load(manager.latest(), {"net": other}, {"g": other_opt}, {"g": other_sched})
    assert state["step"] == 3 and state["config"] == {"name": "x"}
    for k, v in trainable_state_dict(net).items():
        assert torch.equal(v, trainable_state_dict(other)[k])
    assert not torch.equal(other.frozen.weight, net.frozen.weight)  # frozen weights are not stored
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


class Numbers(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"i": i, "epoch": self.epoch}


def test_resumed_batches_equal_uninterrupted_stream():
    ds = Numbers(10)
    full = [(e, s, b["i"].tolist()) for (e, s, b), _ in zip(batches_from(ds, 3, seed=7), range(9))]
    resumed = [(e, s, b["i"].tolist()) for (e, s, b), _ in zip(batches_from(ds, 3, seed=7, start_step=4), range(5))]
    assert resumed == full[4:]
    assert full[0][2] != full[3][2] and full[3][0] == 1  # 3 steps per epoch, reshuffled each epoch
    ranks = [[b["i"].tolist() for (_, _, b), _ in zip(batches_from(ds, 2, seed=7, rank=r, world_size=2), range(2))]
             for r in (0, 1)]
    assert not set(sum(ranks[0], [])) & set(sum(ranks[1], []))  # ranks see disjoint samples


def test_grid_and_logger(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    a, b = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 4, 4)
    grid = save_grid([a, b], tmp_path / "g.png")
    assert grid.shape == (16, 16, 3) and grid[0, 0, 0] == 128 and grid[0, 15, 0] == 255
    log = RunLogger(tmp_path / "run")
    log.scalars({"loss/total": 0.5}, 3)
    log.grid("val", [a, b], 3)
    log.close()
    events = EventAccumulator(str(tmp_path / "run" / "logs"))
    events.Reload()
    assert events.Scalars("loss/total")[0].value == 0.5 and events.Tags()["images"] == ["val"]
    assert (tmp_path / "run" / "samples" / "val-step-000003.png").is_file()
