"""Pretrained VGG-19 backbones, folded into this network's input convention.

This network reads BGR images as ``x = p / 256 - 0.5`` (p in 0..255). Published VGG-19 weights expect other
inputs, so the first convolution is rewritten to give exactly the same conv1_1 response on x (in the image
interior; at the border the zero padding of x and of the original input differ):

- ``imagenet``: torchvision's VGG-19 (RGB, ``(p/255 - mean)/std``):
  ``W'[:, bgr(c)] = W[:, c] * 256 / (255 std_c)``, ``b' = b + sum W[:, c] (128/255 - mean_c) / std_c``;
- ``caffe:PATH``: ``VGG_ILSVRC_19_layers.caffemodel`` (BGR, ``p - mean_bgr``), the released init:
  ``W' = 256 W``, ``b' = b + sum W[:, c] (128 - mean_c)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
"""torchvision's VGG-19 ImageNet weights; the file name carries the first 8 hex digits of its sha256."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


def fold_imagenet(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 of torchvision's VGG (RGB, normalised) -> the same response on BGR ``x / 256 - 0.5``."""
    w, b = weight.double(), bias.double()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    scaled = w * (256.0 / (255.0 * std)).view(1, 3, 1, 1)
    shift = (w.sum((2, 3)) * ((128.0 / 255.0 - mean) / std)).sum(1)
    return scaled.flip(1).to(weight.dtype), (b + shift).to(bias.dtype)  # flip: RGB -> BGR input channels


def fold_caffe_vgg(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 of Caffe's VGG (BGR, ``p - mean_bgr``) -> the same response on BGR ``x / 256 - 0.5``."""
    w, b = weight.double(), bias.double()
    mean = torch.tensor(CAFFE_VGG_MEAN_BGR, dtype=torch.float64)
    shift = (w.sum((2, 3)) * (128.0 - mean)).sum(1)
    return (256.0 * w).to(weight.dtype), (b + shift).to(bias.dtype)


def imagenet_state(url: str | None = None) -> dict[str, torch.Tensor]:
    """torchvision's VGG-19 state dict, downloaded once into the torch hub cache (sha256-checked against the
    file name's hash) and read from there afterwards; an error naming the URL, the cache path and the way
    to pass a local file when it is neither cached nor downloadable."""
    url = url or IMAGENET_URL
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cache.is_file():
        log.info("backbone: downloading %s to %s", url, cache)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, progress=False)
    except RuntimeError as err:
        if "hash" in str(err):
            cache.unlink(missing_ok=True)
            raise RuntimeError(f"backbone_init=imagenet: {url} failed its sha256 check ({err}); nothing kept "
                               f"in {cache}") from err
        raise
    except OSError as err:  # URLError, timeouts, no route: offline without the cached file
        raise RuntimeError(
            f"backbone_init=imagenet: cannot download {url} ({err}) and it is not cached at {cache}. Put the "
            f"file there, or give a local copy: model.net.backbone_init=FILE (a VGG-19 state dict), or "
            f"model.net.backbone_init=none for random weights") from err
    return {k: v for k, v in state.items() if k.startswith("features.")}


def caffe_vgg_state(path: str | Path, features: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    """conv1_1 .. conv4_2 of a Caffe VGG-19 caffemodel (V1 ``layers`` or ``layer``) as ``features.N`` keys
    of ``features``, every shape checked (the classifier layers are skipped)."""
    from src.model import caffe

    layers, sha = caffe.read_caffemodel(path)
    mapping = {k: v for k, v in caffe.vgg_layer_map(features).items() if k in caffe.VGG_CONVS}
    own = {f"features.{k}": v for k, v in features.state_dict().items()}
    state = caffe.state_from_layers(layers, mapping, own, path, extra_ok=True)
    log.info("backbone: %s (sha256 %s)", path, sha)
    return state


def backbone_state(spec: str, features: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    """``imagenet`` or ``caffe:PATH`` -> a folded ``features.N`` state dict for this network's input."""
    if spec == "imagenet":
        state = imagenet_state()
        w, b = fold_imagenet(state["features.0.weight"], state["features.0.bias"])
    elif spec.startswith("caffe:"):
        state = caffe_vgg_state(spec[len("caffe:"):], features)
        w, b = fold_caffe_vgg(state["features.0.weight"], state["features.0.bias"])
    else:
        raise ValueError(f"backbone_init={spec}: not imagenet or caffe:PATH")
    return {**state, "features.0.weight": w, "features.0.bias": b}
