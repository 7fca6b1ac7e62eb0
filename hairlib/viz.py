"""Pictures: image grids with row labels (for notebooks, the demo and results/)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from hairlib.methods.global_dir import GlobalDirections, global_edit

__all__ = ["to_uint8", "grid", "overlay_mask", "global_sliders", "plot_losses", "plot_tradeoff", "plot_sweep"]

ImageBatch = Union[torch.Tensor, np.ndarray]


def to_uint8(images: ImageBatch) -> np.ndarray:
    """[N, 3, H, W] float in [-1, 1] (torch) or [N, H, W, 3] uint8 -> [N, H, W, 3] uint8."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        if x.ndim == 3:
            x = x[None]
        if x.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] images, got {tuple(images.shape)}")
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] images, got {x.dtype} {x.shape}")
    return x


def overlay_mask(images: ImageBatch, masks: np.ndarray, color=(255, 40, 200), alpha: float = 0.55) -> np.ndarray:
    """Tint the pixels where ``masks`` ([N, H, W] bool) is true; returns uint8 [N, H, W, 3]."""
    x = to_uint8(images).astype(np.float32)
    m = np.asarray(masks, dtype=bool)[..., None]
    tint = np.asarray(color, np.float32)
    return np.where(m, (1 - alpha) * x + alpha * tint, x).round().astype(np.uint8)


def grid(rows: Sequence[ImageBatch], labels: Optional[Sequence[str]] = None, scale: int = 2,
         pad: int = 2, label_width: int = 0) -> Image.Image:
    """A picture: one row per batch (each [N, 3, H, W] in [-1, 1] or uint8 [N, H, W, 3]),
    images scaled up ``scale`` times (nearest), optional text labels at the left of each row."""
    rows = [to_uint8(r) for r in rows]
    if not rows:
        raise ValueError("grid() needs at least one row")
    h, w = rows[0].shape[1] * scale, rows[0].shape[2] * scale
    ncol = max(len(r) for r in rows)
    if labels and not label_width:
        label_width = 8 + 6 * max(len(s) for s in labels)
    canvas = Image.new("RGB", (label_width + ncol * (w + pad) + pad, len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, r in enumerate(rows):
        y = pad + i * (h + pad)
        if labels:
            draw.text((4, y + h // 2 - 5), labels[i], fill=(0, 0, 0))
        for j, img in enumerate(r):
            tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_width + pad + j * (w + pad), y))
    return canvas


def plot_losses(log: Sequence[dict], panels: dict, window: int = 5):
    """Training curves from a JSON-lines log (``hairlib.train.checkpoint.read_log``): one panel per
    ``{title: [loss names]}``, each loss as a running mean over ``window`` of its logged values
    (a loss logged only on the steps its condition was drawn is averaged over those), with its
    first and last running means in the legend. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels.items()):
        for name in names:
            pts = [(e["step"], e[name]) for e in log if isinstance(e.get(name), (int, float))]
            if not pts:
                continue
            steps, values = map(np.asarray, zip(*pts))
            k = max(1, min(window, len(values)))
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, label=f"{name}: {smooth[0]:.3g} -> {smooth[-1]:.3g}")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_tradeoff(runs: dict, x: str = "identity", y: str = "success"):
    """Each method's edits as points of ``y`` against ``x`` (``evaluate`` rows per method: success
    against identity by default), one colour per method, each point labelled with its edit.
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, rows in runs.items():
        pts = [(float(r[x]), float(r[y]), r["task"]) for r in rows if r.get(x) not in (None, "") and r.get(y) not in (None, "")]
        if not pts:
            continue
        xs, ys, names = zip(*pts)
        ax.scatter(xs, ys, label=method)
        for a, b, t in pts:
            ax.annotate(t, (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep(frames: dict, columns: Sequence[str] = ("success", "identity")):
    """Strength sweeps (``tables.strength_sweep`` DataFrames, one per edit name): one panel per
    column, each edit a line against its strength. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for name, df in frames.items():
            ax.plot(df.index, df[col], marker="o", label=name)
        ax.set_title(col)
        ax.set_xlabel(next(iter(frames.values())).index.name or "strength")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def global_sliders(world, latents: torch.Tensor, text: str, directions=None, *, neutral: Optional[str] = None,
                   scale: int = 2):
    """An ipywidgets view of a StyleCLIP global direction: sliders for alpha (strength) and beta
    (disentanglement threshold), the edited faces and the number of channels touched.
    Returns the widget (display it as a notebook cell's last value)."""
    import io

    import ipywidgets as W

    gd = directions or GlobalDirections.for_world(world)
    image = W.Image(format="png")
    caption = W.Label()

    def update(alpha: float, beta: float):
        r = global_edit(world, latents, text, neutral=neutral, alpha=alpha, beta=beta, directions=gd, progress=False)
        buf = io.BytesIO()
        grid([r.source_images, r.images], scale=scale).save(buf, format="png")
        image.value = buf.getvalue()
        caption.value = f"{text!r}: alpha {alpha:+.1f}, beta {beta:.2f} -> {r.info['channels_touched']} channels touched"

    alpha = W.FloatSlider(value=4.1, min=-10, max=10, step=0.1, description="alpha")
    beta = W.FloatSlider(value=0.15, min=0.0, max=0.4, step=0.01, description="beta")
    for slider in (alpha, beta):
        slider.observe(lambda change: update(alpha.value, beta.value), names="value")
    update(alpha.value, beta.value)
    return W.VBox([W.HBox([alpha, beta]), caption, image])
