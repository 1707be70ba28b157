"""Starting points: the folded VGG-19 backbones (imagenet, caffe:PATH), the hash-checked download and its
cache, the offline error before any data is read, and fine-tuning with ``model.init_from``."""

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from src.model import pretrained
from src.model.net import VGG19, PoseNet, init_backbone
from src.targets import Targets
from tests.caffe_writer import caffemodel, encode_layer

ROOT = Path(__file__).resolve().parents[1]
CAFFE_VGG = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
             "conv4_1", "conv4_2", "conv4_3", "conv4_4"]  # the 2014 file: the whole conv4 block and more


def random_vgg() -> VGG19:
    torch.manual_seed(0)
    net = VGG19()
    for m in net.features:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    return net.eval()


def image(h: int = 160, w: int = 160) -> torch.Tensor:
    """A BGR 0..255 image [1, 3, H, W] (float)."""
    return torch.randint(0, 256, (1, 3, h, w), generator=torch.Generator().manual_seed(2)).float()


def assert_same_interior(folded: VGG19, reference: VGG19, x: torch.Tensor, ref_in: torch.Tensor) -> None:
    """conv1_1 equal away from the 1-pixel border, the stride-8 features away from their receptive field's
    reach of the border (VGG conv4_2: 84 px = 6 cells)."""
    with torch.no_grad():
        c1 = F.conv2d(x, folded.features[0].weight, folded.features[0].bias, padding=1)
        r1 = F.conv2d(ref_in, reference.features[0].weight, reference.features[0].bias, padding=1)
        assert (c1 - r1)[..., 1:-1, 1:-1].abs().max() <= 1e-3 * r1.abs().max()
        assert (c1 - r1)[..., 0, :].abs().max() > 1e-3  # the border differs: zero padding of another input
        got, want = folded(x), reference(ref_in)
    assert (got - want)[..., 6:-6, 6:-6].abs().max() <= 1e-4 * want.abs().max()


def test_imagenet_fold_gives_torchvision_features_on_our_input():
    ref = random_vgg()  # as torchvision's VGG-19: RGB input (p/255 - mean)/std
    folded = VGG19().eval()
    w, b = pretrained.fold_imagenet(ref.features[0].weight, ref.features[0].bias)
    folded.load_state_dict({**ref.state_dict(), "features.0.weight": w, "features.0.bias": b})
    p = image()
    x = p / 256 - 0.5  # this network's input, BGR
    rgb = p.flip(1) / 255
    mean, std = torch.tensor(pretrained.IMAGENET_MEAN), torch.tensor(pretrained.IMAGENET_STD)
    assert_same_interior(folded, ref, x, (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))


def test_caffe_vgg_fold_reads_the_2014_v1_file_and_gives_caffe_features(tmp_path):
    ref = random_vgg()  # as Caffe's VGG-19: BGR input p - mean_bgr
    convs = [m for m in ref.features if isinstance(m, torch.nn.Conv2d)]
    rng = np.random.default_rng(0)
    layers = [encode_layer("data", "", [], True)]
    for name in CAFFE_VGG:
        if name in ("conv4_3", "conv4_4"):
            blobs = [rng.standard_normal((512, 512, 3, 3), dtype=np.float32)[:8], np.zeros(8, "f4")]
        else:
            conv = convs[CAFFE_VGG.index(name)]
            blobs = [conv.weight.detach().numpy(), conv.bias.detach().numpy()]
        layers += [encode_layer(name, "Convolution", blobs, True),
                   encode_layer(f"relu{name[4:]}", "ReLU", [], True)]
    fc6 = [np.zeros((1, 1, 16, 8), "f4"), np.zeros(16, "f4")]
    layers.append(encode_layer("fc6", "InnerProduct", fc6, True))
    path = tmp_path / "VGG_ILSVRC_19_layers.caffemodel"
    path.write_bytes(caffemodel(layers, "VGG_ILSVRC_19_layers"))
    folded = VGG19().eval()
    init_backbone(folded, f"caffe:{path}")
    assert torch.equal(folded.features[21].weight, ref.features[21].weight)
    p = image(160, 128)
    mean = torch.tensor(pretrained.CAFFE_VGG_MEAN_BGR).view(1, 3, 1, 1)
    assert_same_interior(folded, ref, p / 256 - 0.5, p - mean)
    # a file without conv3_2 is an error naming it
    kept = [la for la, n in zip(layers[1::2], CAFFE_VGG, strict=False) if n != "conv3_2"]
    path.write_bytes(caffemodel(kept))
    with pytest.raises(ValueError, match="layer conv3_2 is missing"):
        init_backbone(VGG19(), f"caffe:{path}")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(a folder served on 127.0.0.1, its base URL); the torch hub cache moved into tmp_path."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield root, f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def test_imagenet_download_is_hash_checked_cached_and_folded(served, monkeypatch):
    root, base, server = served
    ref = random_vgg()
    state = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 2)
    torch.save(state, root / "tmp.pth")
    sha = hashlib.sha256((root / "tmp.pth").read_bytes()).hexdigest()
    (root / "tmp.pth").rename(root / f"vgg19-{sha[:8]}.pth")
    monkeypatch.setattr(pretrained, "IMAGENET_URL", f"{base}/vgg19-{sha[:8]}.pth")
    net = PoseNet(VGG19(), [8], [[1, 4, 8]], [[1, 4, 8]], backbone_init="imagenet")
    cache = Path(torch.hub.get_dir()) / "checkpoints" / f"vgg19-{sha[:8]}.pth"
    assert cache.is_file() and str(cache).startswith(str(root.parent))
    w, b = pretrained.fold_imagenet(ref.features[0].weight, ref.features[0].bias)
    assert torch.allclose(net.backbone.features[0].weight, w)
    assert torch.equal(net.backbone.features[0].bias, b)
    assert torch.equal(net.backbone.features[21].weight, ref.features[21].weight)
    server.shutdown()  # the second network reads the cache: no server needed
    again = PoseNet(VGG19(), [8], [[1, 4, 8]], [[1, 4, 8]], backbone_init="imagenet")
    assert torch.equal(again.backbone.features[0].weight, net.backbone.features[0].weight)


def test_a_bad_hash_is_refused_and_nothing_is_cached(served, monkeypatch):
    root, base, _ = served
    torch.save({"features.0.weight": torch.zeros(1)}, root / "vgg19-0badc0de.pth")
    monkeypatch.setattr(pretrained, "IMAGENET_URL", f"{base}/vgg19-0badc0de.pth")
    with pytest.raises(RuntimeError, match="failed its sha256 check"):
        init_backbone(VGG19(), "imagenet")
    assert not (Path(torch.hub.get_dir()) / "checkpoints" / "vgg19-0badc0de.pth").exists()


def test_offline_without_cache_fails_at_model_construction_before_any_data(tmp_path, monkeypatch):
    from src.train import train

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["model=deep_wholebody", f"data.root={tmp_path / 'no_data'}",
                                          f"run_dir={tmp_path / 'run'}", "logger=csv"])
    with pytest.raises(InstantiationException) as err:
        train(cfg)
    msg = str(err.value)
    assert pretrained.IMAGENET_URL in msg and str(tmp_path / "torch") in msg
    assert "backbone_init=FILE" in msg and "src.training.module.PoseModule" in msg


def test_backbone_weights_still_works_as_a_deprecated_alias(tmp_path, caplog):
    ref = random_vgg()
    torch.save({f"features.{k}": v for k, v in ref.features.state_dict().items()}, tmp_path / "vgg.pth")
    net = PoseNet(VGG19(), [8], [[1, 4, 8]], [[1, 4, 8]], backbone_init="imagenet",
                  backbone_weights=str(tmp_path / "vgg.pth"))  # the file wins, no download
    assert torch.equal(net.backbone.features[0].weight, ref.features[0].weight)
    assert "deprecated" in caplog.text


# -- fine-tuning ---------------------------------------------------------------------------------------------
def tiny(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("train", overrides=["model=tiny", "model.input_size=64", *overrides]).model


def batches(n: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    kp = torch.zeros(2, 1, 135, 3)
    kp[..., :2] = 8 + 48 * torch.rand(2, 1, 135, 2, generator=gen)
    kp[..., 2] = 1
    target, weight = Targets()(kp, torch.ones(2, 135, dtype=torch.bool), None, (64, 64))
    return [{"image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen),
             "target": target, "weight": weight} for _ in range(n)]


class FirstStep(L.Callback):
    """Records the step and one tensor when the first training batch starts."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not hasattr(self, "step"):
            self.step = trainer.global_step
            self.weight = module.net.cm_stages[0].out.weight.detach().clone()
            self.lrs = [(g["lr"], g["initial_lr"]) for g in trainer.optimizers[0].param_groups]


def test_init_from_starts_a_fresh_run_from_the_checkpoint_weights(tmp_path):
    source = instantiate(tiny(), _recursive_=False)
    with torch.no_grad():
        for p in source.net.parameters():
            p.add_(torch.randn_like(p))  # away from any initialisation
    path = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams),
                "global_step": 777}, path)
    module = instantiate(tiny(f"model.init_from={path}"), _recursive_=False)
    for (k, a), b in zip(source.net.state_dict().items(), module.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    first = FirstStep()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[first])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches(), batch_size=None))
    assert first.step == 0 and trainer.global_step == 2  # not 777: weights only
    assert torch.equal(first.weight, source.net.cm_stages[0].out.weight)
    assert all(lr == start for lr, start in first.lrs)  # the schedule starts at its start


def test_init_from_another_output_layout_copies_its_channels_by_name(tmp_path):
    """A body-foot checkpoint into a BODY_135 run: the 25 shared heatmaps (every BODY_FOOT name is a BODY_135
    name) and the 35 shared pairs are copied, strict or not; the other channels keep their initialisation."""
    other = instantiate(tiny("layout=body_foot"), _recursive_=False)
    path = tmp_path / "body_foot.ckpt"
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, path)
    module = instantiate(tiny(f"model.init_from={path}"), _recursive_=False)
    assert torch.equal(module.net.adapter[0].weight, other.net.adapter[0].weight)
    ours, theirs = module.net.cm_stages[0].out.weight, other.net.cm_stages[0].out.weight
    assert ours.shape[0] == 135 and torch.equal(ours[:25], theirs)
