"""Import a released Caffe model: ``python -m src.import_caffe caffemodel=PATH out=CKPT [network=body135]``.

Reads the ``.caffemodel`` with :mod:`src.model.caffe` (no Caffe, no protoc), maps every layer onto the
network of ``network``'s preset (``body135`` = ``conf/model/deep_wholebody``), checks every shape, and
writes a checkpoint in the format :mod:`src.core.checkpoint` reads (``src.predict``, ``src.evaluate``,
``src.export``, ``model.init_from``). Prints the parameter count and the sha256 of the source file. A
missing, extra or mis-shaped layer, a truncated file or another network's caffemodel is ``error: ...``
naming the layer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from src.core.checkpoint import plain
from src.model import caffe
from src.model.net import count_parameters


def import_caffe(caffemodel: str | Path, out: str | Path, model_cfg: dict) -> dict:
    """Import ``caffemodel`` into the network of ``model_cfg`` (a ``conf/model`` preset) and write ``out``."""
    start = time.perf_counter()
    net, sha = caffe.import_network(caffemodel, plain(model_cfg["net"]))
    seconds = time.perf_counter() - start
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(caffe.checkpoint_dict(net, plain(model_cfg), caffemodel, sha), out)
    return {"parameters": count_parameters(net), "sha256": sha, "seconds": seconds, "out": str(out)}


@hydra.main(version_base="1.3", config_path="../conf", config_name="import_caffe")
def main(cfg: DictConfig) -> None:
    preset = caffe.NETWORKS.get(cfg.network)
    if preset is None:
        sys.exit(f"error: network={cfg.network}: not one of {sorted(caffe.NETWORKS)}")
    model_cfg = hydra.compose(overrides=[f"+model={preset}"]).model
    try:
        info = import_caffe(cfg.caffemodel, cfg.out, plain(model_cfg))
    except (caffe.CaffeError, OSError) as err:
        sys.exit(f"error: {err}")
    print(f"{cfg.caffemodel}: sha256 {info['sha256']}")
    print(f"{cfg.network} ({preset}): {info['parameters']:,} parameters, read in {info['seconds']:.1f} s")
    print(f"checkpoint written to {info['out']}")


if __name__ == "__main__":
    main()
