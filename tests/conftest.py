"""Shared test helpers: where the read-only fixtures live, and a skip when they are absent."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """``../shared/fixtures``, or a clean skip when this checkout has no shared folder beside it."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return FIXTURES


@pytest.fixture(autouse=True)
def _no_backbone_download(monkeypatch):
    """Tests never download: backbone_init=imagenet without an explicit test server fails fast (port 9)."""
    from src.model import pretrained

    monkeypatch.setattr(pretrained, "IMAGENET_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")
