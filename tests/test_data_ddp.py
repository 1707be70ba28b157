"""The datamodule under real DDP: two CPU ranks (Lightning ``ddp_spawn``, gloo) with loader workers.

Checked: every rank runs the same number of training steps, each batch from the same single source on both
ranks (``mix: per_batch``); the ranks never see the same sample; validation
(uneven shards per rank, no collectives per step) gathers the image ids once at epoch end with
``all_gather_object`` and, deduplicated, they are exactly the val set.
"""

import json
import os
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from shard_helpers import write_source

from datamodules.wholebody import WholeBodyDataModule

EPOCHS, BATCHES = 2, 4


class Probe(L.LightningModule):
    """Records what each rank sees and writes it to ``out/rank<r>.json`` at the end of fit."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.keys, self.sources, self.steps, self.val_ids, self.gathered, self.env = [], [], 0, [], [], {}

    def training_step(self, batch, batch_idx):
        self.env = self.env or {"env": [os.environ.get("RANK"), os.environ.get("WORLD_SIZE")]}
        self.keys += batch["key"]
        self.sources.append(sorted(set(batch["source"])))
        self.steps += 1
        return (self.w * batch["image"].float().mean()).sum() + self.w.pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.val_ids += [int(i) for i in batch["image_id"]]  # no collective here: ranks differ in batches

    def on_validation_epoch_end(self):
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.val_ids)
        self.gathered.append({"per_rank": [len(p) for p in parts],
                              "ids": sorted({i for p in parts for i in p})})
        self.val_ids = []

    def on_fit_end(self):
        record = {"steps": self.steps, "keys": self.keys, "sources": self.sources, "gathered": self.gathered,
                  **self.env}
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(record))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_two_ranks_split_train_and_val(tmp_path):
    root = tmp_path / "shards"
    write_source(root, "body", n=16, shards=4, size=(24, 24))
    write_source(root, "hand", n=10, shards=1, size=(24, 24), groups=("lhand", "rhand"))  # < world: by key
    write_source(root, "body", "val", n=11, shards=5, size=(24, 32), first_id=500)
    dm = WholeBodyDataModule({"body": {"probability": 0.6, "policy": "body"},
                              "hand": {"probability": 0.4, "policy": "hand"}},
                             val={"body": {"policy": "body"}}, root=str(root), crop=16, batch_size=2,
                             batches_per_epoch=BATCHES, num_workers=1, val_num_workers=2, val_size=24,
                             shuffle_buffer=4, mix="per_batch")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=EPOCHS, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(Probe(str(tmp_path)), datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [EPOCHS * BATCHES] * 2
    assert [r["env"] for r in ranks] == [["0", "2"], ["1", "2"]]
    keys = [set(r["keys"]) for r in ranks]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert any(k.startswith("hand") for k in keys[0]) and any(k.startswith("hand") for k in keys[1])
    # per_batch: each step's batch is from one source, the same on both ranks
    assert ranks[0]["sources"] == ranks[1]["sources"] and all(len(s) == 1 for s in ranks[0]["sources"])
    for r in ranks:
        assert len(r["gathered"]) == EPOCHS
        for g in r["gathered"]:
            assert g["ids"] == list(range(500, 511))  # each val image evaluated, once after dedup
            assert sum(g["per_rank"]) == 11  # and read by exactly one rank
