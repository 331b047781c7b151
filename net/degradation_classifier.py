"""A small multi-label classifier of the degradations an image shows (the blind route: the image says
what to restore when no instruction does).

One sigmoid per label, so a rainy, noisy photo is both, and a clean one is none (every probability
below 0.5). Labels are task names (``utils.tasks.TASKS``: ``denoise``, ``derain``, ``dehaze``, ``deblur``,
``lowlight``): a prediction names the task that removes what it found, and a new task is one more label. The net reads native-resolution crops:
noise and rain streaks are one or two pixels wide and vanish when an image is shrunk. A large image
is classified from a bounded number of crops of the side the classifier trained on
(:func:`predict_degradations`), so the cost does not grow with its size.

Three parts feed one MLP head:

* a tiny CNN on RGB and its high-pass residual (where noise and streaks live), with global average
  and max pooling;
* hand-made statistics of the crop (:func:`crop_statistics`): noise-level estimates, and the
  dark-channel and contrast statistics of haze;
* a dense head on the stride-4 features, trained to mark the cells that hold rain streaks; its
  pooled logits also feed the head. It gives one target per 4x4 cell instead of one per crop, which
  is what makes rain learnable in a CPU budget.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError
from utils.tasks import PAPER_TASKS

DEFAULT_LABELS = PAPER_TASKS  # the paper's three tasks; a checkpoint's classifier has its training tasks
DENSE_CAPABLE = ("derain",)  # labels whose per-pixel map the sample generator can give (dense targets)
STAT_FRACTIONS = (0.05, 0.25, 0.5, 0.9)  # quantiles taken of the sorted block values
NUM_STATS = 7 * len(STAT_FRACTIONS) + 3
DENSE_STRIDE = 4  # the dense head's cells are DENSE_STRIDE x DENSE_STRIDE pixels
TRAINING_CROP = 64  # side of the crops the classifier trains on, and reads images in (its ``crop``)
GLOBAL_SIDE = 128  # shorter side of the whole-image view haze and darkness are read from
MIN_SIDE = 32  # the smallest image side the classifier reads
MAX_CROPS = 16  # crops read from one image at most
GLOBAL_LABELS = ("dehaze", "lowlight")  # read from the whole image shrunk (global_view), the others from crops
THRESHOLD = 0.5  # a label is present when its probability is above this
# a reading is unsure where a probability lies within this of THRESHOLD (chosen on validation data:
# BENCHMARKS, "The degradation classifier"); the decision stays the threshold's (but see `shown`), the line says so
UNSURE_MARGIN = 0.2
CLEAR = 0.9  # an image "clearly shows" a label read at or above this; unsure readings beside it are left out


def immerkaer(x: torch.Tensor) -> torch.Tensor:
    """|x * M| / 6 for Immerkaer's noise-estimation mask M = [1 -2 1]^T [1 -2 1] (1996): blind to
    edges and ramps to first order, so on a photo it mostly answers to noise. B x C x H x W ->
    B x C x (H-2) x (W-2) (the valid part)."""
    d = x[..., :, :-2] - 2 * x[..., :, 1:-1] + x[..., :, 2:]
    return (d[..., :-2, :] - 2 * d[..., 1:-1, :] + d[..., 2:, :]).abs() / 6.0


def _block_quantiles(maps: torch.Tensor, block: int) -> torch.Tensor:
    """B x C x H x W -> B x C*len(STAT_FRACTIONS): quantiles of the block means."""
    v = F.avg_pool2d(maps, block).flatten(2).sort(dim=2).values  # B x C x N blocks
    n = v.shape[2]
    idx = torch.tensor([min(n - 1, int(round(f * (n - 1)))) for f in STAT_FRACTIONS], device=v.device)
    return v[:, :, idx].flatten(1)


def crop_statistics(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W in [0, 1] (H, W >= MIN_SIDE) -> B x NUM_STATS hand-made statistics of each crop.

    Noise: block quantiles of Immerkaer's residual of the luminance, of the colour differences
    (Gaussian noise is independent per channel, photo detail mostly shared by the channels) and of
    the half-resolution luminance (white noise halves there, texture does not). Haze (He et al.'s
    dark-channel prior: haze lifts the darkest pixels toward the airlight and flattens contrast):
    block quantiles of the local minima of the dark channel, of the local maxima of the bright
    channel, of the saturation and of the local contrast; the dark channel's minimum, the mean and
    the std of the luminance.
    """
    y = x.mean(dim=1, keepdim=True)  # B x 1 x H x W
    res = immerkaer(torch.cat([y, x - y], 1))  # luminance and colour differences (zero on grey pixels)
    res_y, res_c = res[:, :1], res[:, 1:].mean(1, keepdim=True)
    y2 = F.avg_pool2d(y, 2)
    res_y2 = immerkaer(y2)
    xs = F.avg_pool2d(x, 2)  # light smoothing, so the noise does not set the extremes
    dark, bright = xs.amin(1, keepdim=True), xs.amax(1, keepdim=True)
    sat = (bright - dark) / (bright + 1e-2)
    mean8 = F.avg_pool2d(y2, 4)
    contrast = (F.avg_pool2d(y2 * y2, 4) - mean8 * mean8).clamp_min(0).sqrt() / (mean8 + 0.05)
    noise = torch.log(torch.cat([_block_quantiles(res_y, 8), _block_quantiles(res_c, 8),
                                 _block_quantiles(res_y2, 4)], 1) + 1e-4)
    return torch.cat([
        noise,
        _block_quantiles(-F.max_pool2d(-dark, 4), 1),
        _block_quantiles(F.max_pool2d(bright, 4), 1),
        _block_quantiles(sat, 4),
        torch.log(_block_quantiles(contrast, 1) + 1e-3),
        dark.flatten(1).amin(1, keepdim=True),
        y.flatten(1).mean(1, keepdim=True),
        y.flatten(1).std(1, keepdim=True),
    ], dim=1)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DegradationClassifier(nn.Module):
    """Multi-label degradation classifier (see the module docstring).

    ``labels`` names the outputs, one logit each, in order. ``width`` is the stem's channels (0: no
    CNN, the statistics alone); the stem has stride 2, then each of ``stages`` halves the resolution
    and doubles the channels (capped at 4x width; the first stage has two blocks). ``highpass`` adds
    the image minus its 3x3 binomial blur as three more input channels, ``stats`` the crop
    statistics to the head. ``dense_labels`` (a subset of ``labels`` among ``DENSE_CAPABLE``) get
    the dense head; None: those of ``labels`` that can have one. ``crop`` is the side of the crops it
    trained on: it reads an image in crops of that side, as its pooled maxima and batch statistics
    were learnt there (larger crops make it see rain in clean photos).
    """

    def __init__(
        self,
        labels: Sequence[str] = DEFAULT_LABELS,
        width: int = 16,
        stages: int = 4,
        highpass: bool = True,
        stats: bool = True,
        dense_labels: Sequence[str] | None = None,
        crop: int = TRAINING_CROP,
    ) -> None:
        super().__init__()
        self.labels = tuple(labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct and at least one, got {self.labels}")
        if dense_labels is None:
            dense_labels = tuple(t for t in self.labels if t in DENSE_CAPABLE) if width else ()
        self.dense_labels = tuple(dense_labels)
        if set(self.dense_labels) - set(self.labels):
            raise ValueError(f"dense labels {self.dense_labels} must be among the labels {self.labels}")
        if self.dense_labels and not width:
            raise ValueError("the dense head needs the CNN (width > 0)")
        if crop < MIN_SIDE:
            raise ValueError(f"crop must be at least {MIN_SIDE}, got {crop}")
        self.crop = crop
        self.config = {"width": width, "stages": stages, "highpass": highpass, "stats": stats,
                       "dense_labels": list(self.dense_labels), "crop": crop}
        self.highpass, self.stats = highpass, stats
        blur = torch.tensor([1.0, 2.0, 1.0]) / 4.0
        self.register_buffer("blur", (blur[:, None] * blur[None, :]).expand(3, 1, 3, 3).clone(), persistent=False)
        layers: list[nn.Module] = []
        c = width
        if width:
            layers.append(_block(6 if highpass else 3, width, 2))
            for _ in range(stages):
                cout = min(2 * c, 4 * width)
                layers += [_block(c, cout, 2), _block(cout, cout, 1)] if c == width else [_block(c, cout, 2)]
                c = cout
        self.features = nn.ModuleList(layers)
        # after features[2] (stem + first stage) the features are at stride DENSE_STRIDE
        self.dense = nn.Conv2d(2 * width, len(self.dense_labels), 1) if self.dense_labels else None
        self.feature_dim = (2 * c if width else 0) + (NUM_STATS if stats else 0) + 2 * len(self.dense_labels)
        if not self.feature_dim:
            raise ValueError("the classifier needs the CNN (width > 0) or the statistics")
        self.head = nn.Sequential(nn.BatchNorm1d(self.feature_dim), nn.Linear(self.feature_dim, 64),
                                  nn.ReLU(inplace=True), nn.Linear(64, len(self.labels)))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        if not self.highpass:
            return x - 0.5
        residual = x - F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.blur, groups=3)
        return torch.cat([x - 0.5, 8.0 * residual], dim=1)  # B x 6 x H x W

    def forward_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B x 3 x H x W in [0, 1] -> (B x L logits, B x D x H/4 x W/4 dense logits or None)."""
        parts, dense = [], None
        if len(self.features):
            f = self._inputs(x)
            for i, layer in enumerate(self.features):
                f = layer(f)
                if i == 2 and self.dense is not None:
                    dense = self.dense(f)
            parts += [f.mean(dim=(2, 3)), f.amax(dim=(2, 3))]
            if dense is not None:
                parts += [dense.mean(dim=(2, 3)), dense.amax(dim=(2, 3))]
        if self.stats:
            parts.append(crop_statistics(x))
        return self.head(torch.cat(parts, dim=1)), dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [0, 1] -> B x L logits."""
        return self.forward_dense(x)[0]


def crop_boxes(h: int, w: int, size: int = TRAINING_CROP, max_crops: int = MAX_CROPS) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of at most ``max_crops`` crops spread evenly over an h x w image:
    crops of ``size`` (or the image's side where it is shorter), on the grid that tiles the image
    when that is small enough, else on the largest grid within ``max_crops`` whose cells are closest
    to square; the outer crops are flush with the edges."""
    ch, cw = min(h, size), min(w, size)
    need_y, need_x = -(-h // ch), -(-w // cw)  # crops that tile the image
    grids = [(ny, nx) for ny in range(1, need_y + 1) for nx in range(1, need_x + 1) if ny * nx <= max_crops]
    ny, nx = max(grids, key=lambda g: (g[0] * g[1], -abs(np.log((h / g[0]) / (w / g[1])))))
    ys = np.linspace(0, h - ch, ny).round().astype(int) if ny > 1 else [(h - ch) // 2]
    xs = np.linspace(0, w - cw, nx).round().astype(int) if nx > 1 else [(w - cw) // 2]
    return [(int(y), int(x), ch, cw) for y in ys for x in xs]


def check_size(h: int, w: int, what: str = "the image") -> None:
    """A one-line UserError for an image too small to classify."""
    if min(h, w) < MIN_SIDE:
        raise UserError(f"{what} is {w}x{h} pixels, too small to classify: the degradation classifier needs "
                        f"at least {MIN_SIDE}x{MIN_SIDE}; name the task with --task or --instruction")


def global_view(image: np.ndarray, size: int = GLOBAL_SIDE) -> np.ndarray:
    """The whole uint8 H x W x 3 image shrunk by area averaging so that its shorter side is ``size``
    and its longer at most 4 x ``size`` (a panorama is squeezed): where haze and darkness show, over
    the whole scene, at a cost bounded for any size. An image already that small is returned as is."""
    h, w = image.shape[:2]
    scale = min(1.0, size / min(h, w))
    nh, nw = (min(4 * size, max(MIN_SIDE, round(side * scale))) for side in (h, w))
    if (nh, nw) == (h, w):
        return image
    out = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # 1 x 3 x H x W
    out = F.interpolate(out, size=(nh, nw), mode="area")  # 1 x 3 x nh x nw
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()  # nh x nw x 3


@torch.no_grad()
def read_logits(
    net: DegradationClassifier, image: np.ndarray, max_crops: int = MAX_CROPS, what: str = "the image",
) -> dict[str, torch.Tensor]:
    """{label: its logits} for one uint8 H x W x 3 RGB image of any size (both sides >= MIN_SIDE):
    noise and rain (one or two pixels wide) read at native resolution, one logit per crop of at most
    ``max_crops`` crops of the side the classifier trained on (``net.crop``); haze and darkness
    (``GLOBAL_LABELS``, which a crop of sky cannot show) one logit of the whole image shrunk to
    GLOBAL_SIDE pixels on its shorter side (:func:`global_view`). The cost is bounded for any size.
    ``what`` names the image in the error for one too small."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    check_size(h, w, what)
    was_training = net.training
    net.eval()
    crops = np.stack([image[y:y + ch, x:x + cw] for y, x, ch, cw in crop_boxes(h, w, net.crop, max_crops)])
    device = next(net.parameters()).device

    def logits(batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # N x 3 x h x w
        return net(x).cpu()  # N x L

    local = logits(crops)
    whole = logits(global_view(image)[None]) if set(GLOBAL_LABELS) & set(net.labels) else local
    net.train(was_training)
    return {t: (whole if t in GLOBAL_LABELS else local)[:, j] for j, t in enumerate(net.labels)}


def predict_degradations(
    net: DegradationClassifier, image: np.ndarray, max_crops: int = MAX_CROPS, what: str = "the image",
) -> dict[str, float]:
    """{label: probability} for one uint8 H x W x 3 RGB image of any size: the mean over the crops
    (noise, rain) or the whole view (haze, darkness) of :func:`read_logits`'s sigmoid. A label is
    present when its probability is above THRESHOLD; none present means a clean image."""
    return {t: float(torch.sigmoid(v).mean()) for t, v in read_logits(net, image, max_crops, what).items()}


def threshold_shift(threshold: float) -> float:
    """logit(threshold): what a label's output bias is lowered by to move its decision point from
    THRESHOLD (0.5, logit 0) to ``threshold``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"a threshold is a probability strictly between 0 and 1, got {threshold}")
    return float(np.log(threshold / (1.0 - threshold)))


def set_thresholds(net: DegradationClassifier, thresholds: dict[str, float]) -> None:
    """Move each named label's decision point to ``thresholds[label]`` in place: its output bias is
    lowered by :func:`threshold_shift`, so that a crop's probability is above THRESHOLD exactly where
    it was above ``threshold`` before. Probabilities, the unsure band and every caller stay as they are."""
    with torch.no_grad():
        bias = net.head[-1].bias
        for label, t in thresholds.items():
            bias[net.labels.index(label)] -= threshold_shift(t)


def unsure(probabilities: dict[str, float], margin: float = UNSURE_MARGIN) -> tuple[str, ...]:
    """The labels whose probability is within ``margin`` of THRESHOLD: the reading could go either way."""
    return tuple(t for t, p in probabilities.items() if abs(p - THRESHOLD) < margin)


def present(probabilities: dict[str, float], threshold: float = THRESHOLD) -> tuple[str, ...]:
    """The labels above ``threshold``, in the classifier's order (empty: the image looks clean)."""
    return tuple(t for t, p in probabilities.items() if p > threshold)


def shown(probabilities: dict[str, float], margin: float = UNSURE_MARGIN) -> tuple[str, ...]:
    """What the blind route restores: the labels :func:`present`, less the unsure ones (within
    ``margin`` of THRESHOLD) when the image clearly shows another (at CLEAR or above). A degradation
    read clearly explains a weak second reading more often than a second degradation does: grain
    lifts a photo's rain and haze readings (docs/benchmarks/routes.md, "A clear reading first")."""
    seen = present(probabilities)
    if not any(probabilities[t] >= CLEAR for t in seen):
        return seen
    return tuple(t for t in seen if probabilities[t] >= THRESHOLD + margin)
