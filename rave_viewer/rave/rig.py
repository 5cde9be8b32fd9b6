"""A camera rig for ``rave build`` without a dataset: robust scene bounds, views around them, full-model targets.

Self-distillation needs views of the model and nothing else; their targets are the full model's own renders
(:func:`render_targets`). Placement, and why:

* **Bounds** (:func:`robust_bounds`). A PLY from a real capture carries floaters and a background far from the
  content (on ``demo_objects`` 68 % of the Gaussians are a sky shell 12 units out around objects of radius 1.5),
  so neither the bounding box nor plain percentiles find the content. Each Gaussian is weighted by its opacity
  times the opacity-summed density of its cell in a 64^3 grid over the current box; the box is then re-cut to
  the weighted 1st/99th percentiles per axis and the grid recomputed, up to :data:`BOUNDS_ITERATIONS` times.
  Dense content (where 3DGS densified because cameras looked closely) dominates; sparse shells and isolated
  floaters fall out of the box after one or two rounds. Centre = the middle of the weighted 2nd/98th
  percentiles per axis; radius = the weighted 95th percentile of (distance to the centre + the Gaussian's
  largest standard deviation). Floaters (1 % of the Gaussians 50x farther out) change the radius by < 10 %
  (tests/rave/test_rave_rig.py).
* **Shape** (:func:`choose_shape`, ``rig_shape: auto``). The weighted covariance of the core gives principal
  axes. A *flat* scene (thinnest spread < 0.5x the middle one: a ground, a table top, objects on a floor) is
  seen from a **hemisphere** around its thin axis: views from below would show the underside of the ground.
  The up direction is the thin axis snapped to a coordinate axis when within 25 degrees; its sign comes from
  a ground plane when there is one (the densest of 32 slabs along the axis holds >= 25 % of the content and
  at least twice as much stands on one side of it as on the other: up is that side), else from the common
  conventions (+z: Blender / Nerfstudio / our generator; -y: COLMAP / OpenCV worlds; +x). These statistics
  count every Gaussian inside the bounding sphere once (by opacity): density weights would reduce a ground
  with objects on it to the ground alone. Anything else (an isolated object) gets a full **sphere**. ``rig_shape`` and ``rig_up``
  override both.
* **Views**. Directions on a Fibonacci spiral (sphere: uniform in area; hemisphere: elevations 10..75 degrees,
  uniform in area), so every 8th view (the held-out test split) is itself spread over the rig. Distances
  cycle through ``rig_distances`` x the distance at which the bounding sphere just fills the field of view
  (3 factors: neighbouring views and the test views mix near and far). Square images; the side defaults to
  sqrt(N) rounded to 32 px and clamped to 128..512 (about one pixel per Gaussian per view), the field of view
  to 50 degrees, the count to 64 views (8 of them held out). Above 250k Gaussians ``rave build`` asks for
  fewer views and caps the side at 512 px (rave/budget.py; 1M: 37 views at 512 px).

``--cameras FILE`` replaces the rig by the user's own poses (scene/rig_cameras.py); everything after that is
the same.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import RaveError
from ..scene.cameras import Cameras, intrinsics, look_at
from ..scene.gaussians import Gaussians

GRID = 64  # density grid cells per axis
BOUNDS_ITERATIONS = 4  # box re-cuts (stops earlier once the box no longer shrinks)
RADIUS_QUANTILE = 0.95
FLAT_RATIO = 0.5  # thin spread / middle spread below this: a flat scene (hemisphere rig)
SNAP_DEGREES = 25.0  # a thin axis this close to a coordinate axis is that axis
GROUND_BINS = 32  # slabs along the thin axis in the ground test
GROUND_SHARE = 0.25  # weight share of the densest slab that makes it a ground plane
HEMISPHERE_ELEVATIONS = (10.0, 75.0)  # degrees above the "ground" plane
DEFAULT_VIEWS = 64
DEFAULT_FOV = 50.0
DEFAULT_DISTANCES = (0.8, 1.0, 1.3)
SIZE_RANGE = (128, 512)
SHAPES = ("auto", "sphere", "hemisphere")
UPS = ("auto", "+x", "-x", "+y", "-y", "+z", "-z")
_AXES = {"x": 0, "y": 1, "z": 2}
#: Up conventions when no ground plane decides: axis index -> sign.
_CONVENTION = {2: 1.0, 1: -1.0, 0: 1.0}


@dataclass
class SceneBounds:
    """Robust extent of a scene's content (see the module docstring).

    Attributes:
        center: [3] float64 centre.  radius: content radius (weighted 95th percentile).
        axes: [3, 3] float64 principal axes as rows, largest spread first.  spreads: [3] weighted std along them.
        ground: +1 / -1 when a ground plane was found at the low / high end of the thinnest axis (so "up" is
        +axes[2] / -axes[2]), 0 when none was.  ground_share: weight share of the densest slab along that axis.
        inliers: Gaussians with a non-zero density weight.
    """

    center: Tensor
    radius: float
    axes: Tensor
    spreads: Tensor
    ground: float
    ground_share: float
    inliers: int
    total: int


def _quantile(x: Tensor, w: Tensor, q: float | Tensor) -> Tensor:
    """Weighted quantile(s) of 1-D ``x`` (weights ``w`` >= 0, some positive): the smallest x whose cumulative
    weight reaches q of the total."""
    order = torch.argsort(x)
    xs, cw = x[order], torch.cumsum(w[order], 0)
    qs = torch.as_tensor(q, dtype=cw.dtype) * cw[-1]
    idx = torch.searchsorted(cw, qs.reshape(-1)).clamp(max=len(xs) - 1)
    out = xs[idx]
    return out.reshape(torch.as_tensor(q).shape)


def _density_weights(means: Tensor, alpha: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """alpha_i x (summed alpha in the grid cell of Gaussian i) for Gaussians inside [lo, hi], 0 outside."""
    span = (hi - lo).clamp_min(1e-12)
    inside = ((means >= lo) & (means <= hi)).all(dim=1)
    cell = ((means - lo) / span * GRID).floor().clamp(0, GRID - 1).long()
    flat = (cell[:, 0] * GRID + cell[:, 1]) * GRID + cell[:, 2]
    dens = torch.zeros(GRID**3, dtype=torch.float64).index_add_(0, flat[inside], alpha[inside])
    return torch.where(inside, alpha * dens[flat], torch.zeros_like(alpha))


def robust_bounds(g: Gaussians) -> SceneBounds:
    """Centre, radius and principal axes of the dense content of ``g`` (floaters and far shells ignored)."""
    n = len(g)
    if n == 0:
        raise RaveError("the scene is empty (0 Gaussians): nothing to place a camera rig around")
    m = g.means.detach().double().cpu()
    alpha = torch.sigmoid(g.opacities.detach().double().cpu())  # +-inf logits: exactly 1 / 0
    if not bool((alpha > 0).any()):
        alpha = torch.ones_like(alpha)
    sigma = torch.exp(g.scales.detach().double().cpu()).amax(dim=1)
    ones = torch.ones(n, dtype=torch.float64)
    lo = torch.stack([_quantile(m[:, j], ones, 0.01) for j in range(3)]) - 1e-9
    hi = torch.stack([_quantile(m[:, j], ones, 0.99) for j in range(3)]) + 1e-9
    w = alpha.clone()
    for _ in range(BOUNDS_ITERATIONS):
        w_new = _density_weights(m, alpha, lo, hi)
        if not bool((w_new > 0).any()):
            break
        w = w_new
        new_lo = torch.stack([_quantile(m[:, j], w, 0.01) for j in range(3)])
        new_hi = torch.stack([_quantile(m[:, j], w, 0.99) for j in range(3)])
        shrink = float(((new_hi - new_lo) / (hi - lo).clamp_min(1e-12)).max())
        lo, hi = torch.minimum(new_lo, new_hi), torch.maximum(new_lo, new_hi)
        if shrink > 0.9:  # the box no longer shrinks: converged
            break
    w_final = _density_weights(m, alpha, lo, hi)
    if bool((w_final > 0).any()):
        w = w_final
    q = torch.tensor([0.02, 0.98], dtype=torch.float64)
    ends = torch.stack([_quantile(m[:, j], w, q) for j in range(3)])  # [3, 2]
    center = ends.mean(dim=1)
    dist = (m - center).norm(dim=1) + sigma.clamp(max=float((hi - lo).norm()) + 1e-12)
    radius = float(_quantile(dist, w, RADIUS_QUANTILE))
    if not radius > 0 or not math.isfinite(radius):
        radius = max(float(sigma.max()) * 3.0, 1e-3)
    d = m - center
    # shape statistics: every Gaussian inside the bounding sphere counted once (by opacity), not by density,
    # which would reduce a ground with objects on it to the ground alone
    ws = torch.where(d.norm(dim=1) <= radius, alpha, torch.zeros_like(alpha))
    wn = (ws if bool((ws > 0).any()) else w) / (ws if bool((ws > 0).any()) else w).sum()
    cov = (d * wn[:, None]).T @ d
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)
    axes = evecs[:, order].T.contiguous()
    spreads = evals[order].clamp_min(0).sqrt()
    ground, share = _ground(d @ axes[2], wn)
    return SceneBounds(center, radius, axes, spreads, ground, share, int((w > 0).sum()), n)


def _ground(t: Tensor, w: Tensor) -> tuple[float, float]:
    """Ground test along the thin axis (coordinates ``t``, weights ``w`` summing to 1): the densest of
    :data:`GROUND_BINS` slabs over the weighted 1..99 % range holds >= :data:`GROUND_SHARE` of the weight and
    at least twice as much weight lies on one side of it as on the other: a plane with things standing on it.
    Returns (+1: up is +t, -1: up is -t, 0: no ground) and the densest slab's share."""
    if not bool((w > 0).any()):
        return 0.0, 0.0
    lo, hi = float(_quantile(t, w, 0.01)), float(_quantile(t, w, 0.99))
    if not hi > lo:
        return 0.0, 1.0
    width = (hi - lo) / GROUND_BINS
    k = ((t - lo) / width).floor()
    inside = (k >= 0) & (k < GROUND_BINS)
    hist = torch.zeros(GROUND_BINS, dtype=torch.float64).index_add_(0, k[inside].long(), w[inside])
    j = int(hist.argmax())
    share = float(hist[j])
    if share < GROUND_SHARE:
        return 0.0, share
    t0, t1 = lo + j * width, lo + (j + 1) * width
    above, below = float(w[t > t1 + width].sum()), float(w[t < t0 - width].sum())
    if above >= 2 * below and above > 0:
        return 1.0, share
    if below >= 2 * above and below > 0:
        return -1.0, share
    return 0.0, share


def _axis_vector(up: str) -> Tensor:
    v = torch.zeros(3, dtype=torch.float64)
    v[_AXES[up[1]]] = 1.0 if up[0] == "+" else -1.0
    return v


def _axis_name(v: Tensor) -> str:
    j = int(v.abs().argmax())
    if abs(float(v[j])) > 1 - 1e-9:
        return ("+" if float(v[j]) > 0 else "-") + "xyz"[j]
    return "(" + ", ".join(f"{float(x):.2f}" for x in v) + ")"


def choose_shape(b: SceneBounds, shape: str = "auto", up: str = "auto") -> tuple[str, Tensor, str]:
    """(shape, unit up vector [3] float64, the reason in words) for the rig around ``b`` (module docstring)."""
    if shape not in SHAPES:
        raise RaveError(f"rig shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if up not in UPS:
        raise RaveError(f"rig up axis must be one of {', '.join(UPS)}, got {up!r}")
    thin, s = b.axes[2], b.spreads
    flat = bool(s[2] < FLAT_RATIO * s[1])
    reasons = []
    if up != "auto":
        up_v = _axis_vector(up)
        reasons.append(f"up {up} as asked")
    else:
        j = int(thin.abs().argmax())
        snapped = math.degrees(math.acos(min(1.0, abs(float(thin[j]))))) <= SNAP_DEGREES
        axis = torch.zeros(3, dtype=torch.float64)
        if snapped:
            axis[j] = 1.0
        else:
            axis = thin / thin.norm()
        toward = 1.0 if float(thin @ axis) >= 0 else -1.0  # +thin expressed along +axis
        if b.ground != 0:
            sign = b.ground * toward
            why = f"a ground plane below holds {100 * b.ground_share:.0f} % of the content"
        elif snapped:
            sign = _CONVENTION[j]
            why = "no ground plane found: the usual convention for that axis"
        else:
            sign = 1.0 if float(axis[int(axis.abs().argmax())]) > 0 else -1.0
            why = "no ground plane found: sign of its largest component"
        up_v = sign * axis
        reasons.append(f"up {_axis_name(up_v)} (thinnest principal axis; {why})")
    if shape == "auto":
        shape = "hemisphere" if flat else "sphere"
        ratio = float(s[2] / s[1].clamp_min(1e-300))
        reasons.insert(0, f"{'flat' if flat else 'not flat'} scene (thin/middle spread {ratio:.2f})")
    return shape, up_v, "; ".join(reasons)


def default_size(n_gaussians: int) -> int:
    """Rig image side: sqrt(N) rounded to 32 px, clamped to 128..512 (about one pixel per Gaussian per view)."""
    side = 32 * round(math.sqrt(max(n_gaussians, 1)) / 32)
    return int(min(max(side, SIZE_RANGE[0]), SIZE_RANGE[1]))


def _directions(n: int, shape: str) -> Tensor:
    """[n, 3] unit directions in a frame whose +z is up: a Fibonacci spiral (uniform in area)."""
    golden = math.pi * (3.0 - math.sqrt(5.0))
    i = torch.arange(n, dtype=torch.float64)
    if shape == "sphere":
        z = 1.0 - 2.0 * (i + 0.5) / n
    else:
        lo, hi = (math.sin(math.radians(e)) for e in HEMISPHERE_ELEVATIONS)
        z = lo + (hi - lo) * (i + 0.5) / n
    r = (1.0 - z * z).clamp_min(0).sqrt()
    az = i * golden
    return torch.stack([r * torch.cos(az), r * torch.sin(az), z], dim=1)


def _frame(up: Tensor) -> Tensor:
    """[3, 3] rows e1, e2, up: an orthonormal frame with the given up."""
    up = up / up.norm()
    ref = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(up @ ref)) > 0.9:
        ref = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = torch.linalg.cross(up, ref)
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)
    return torch.stack([e1, e2, up])


@dataclass
class Rig:
    """Cameras around a scene (no images yet) and how they were chosen."""

    cameras: Cameras
    shape: str
    up: Tensor
    fov_deg: float
    distances: list[float]
    bounds: SceneBounds | None
    reason: str
    source: str = "rig"
    test_every: int = 8
    extra: dict = field(default_factory=dict)

    def split(self) -> tuple[Cameras, Cameras]:
        """(scoring/fine-tuning views, held-out test views): every ``test_every``-th view (0, 8, ...) is held out;
        a single view is both."""
        n = len(self.cameras)
        test = [i for i in range(n) if i % self.test_every == 0]
        train = [i for i in range(n) if i % self.test_every != 0]
        if not train:
            train = test = list(range(n))
        return self.cameras[train], self.cameras[test]

    def describe(self) -> str:
        """One line for the start of the build."""
        c = self.cameras
        train, test = self.split()
        where = ""
        if self.bounds is not None:
            b = self.bounds
            ctr = ", ".join(f"{float(x):.3g}" for x in b.center)
            where = (f"; content centre ({ctr}), radius {b.radius:.3g} ({b.inliers:,} of {b.total:,} Gaussians in "
                     f"the core)")
        if self.source == "rig":
            dist = "/".join(f"{d:.3g}" for d in self.distances)
            return (f"camera rig: {len(c)} views on a {self.shape} ({self.reason}), {len(train)} for scoring and "
                    f"fine-tuning + {len(test)} held out (1 in {self.test_every}), {c.width}x{c.height} px, "
                    f"field of view {self.fov_deg:.3g} deg, distances {dist}{where}")
        return (f"cameras from {self.source}: {len(c)} views, {len(train)} for scoring and fine-tuning + {len(test)} "
                f"held out (1 in {self.test_every}), {c.width}x{c.height} px{where}")

    def to_meta(self) -> dict:
        """JSON-able record for the checkpoint's ``meta["rig"]``."""
        d = {"source": self.source, "views": len(self.cameras), "width": self.cameras.width,
             "height": self.cameras.height, "test_every": self.test_every}
        if self.source == "rig":
            d.update(shape=self.shape, up=[float(x) for x in self.up], fov_deg=float(self.fov_deg),
                     distances=[float(x) for x in self.distances], reason=self.reason)
        if self.bounds is not None:
            d.update(center=[float(x) for x in self.bounds.center], radius=float(self.bounds.radius))
        return d


def place_rig(g: Gaussians, *, views: int | None = None, size: int | None = None, fov_deg: float | None = None,
              shape: str = "auto", up: str = "auto", distances: list[float] | tuple[float, ...] | None = None,
              test_every: int = 8, bounds: SceneBounds | None = None) -> Rig:
    """Cameras looking at the content centre from a sphere or hemisphere around it (module docstring)."""
    views = DEFAULT_VIEWS if views is None else int(views)
    if views < 1:
        raise RaveError(f"the rig needs at least 1 view, got {views}")
    size = default_size(len(g)) if size is None else int(size)
    fov_deg = DEFAULT_FOV if fov_deg is None else float(fov_deg)
    if not 0 < fov_deg < 180:
        raise RaveError(f"the rig's field of view must be in (0, 180) degrees, got {fov_deg}")
    distances = list(DEFAULT_DISTANCES if distances is None else distances)
    if not distances or any(not (d > 0 and math.isfinite(d)) for d in distances):
        raise RaveError(f"rig distances must be positive numbers, got {distances}")
    b = robust_bounds(g) if bounds is None else bounds
    shape, up_v, reason = choose_shape(b, shape, up)
    fit = b.radius / math.sin(math.radians(fov_deg) / 2)  # the bounding sphere just fills the view
    frame = _frame(up_v)
    dirs = _directions(views, shape) @ frame  # world directions
    K = intrinsics(size, size, math.radians(fov_deg))
    vms, Ks = [], []
    for i in range(views):
        eye = b.center + dirs[i] * fit * distances[i % len(distances)]
        vms.append(look_at(eye, b.center, up_v))  # image up = the rig's up
        Ks.append(K)
    cams = Cameras(torch.stack(vms), torch.stack(Ks).float(), size, size, None,
                   [f"rig_{i:03d}" for i in range(views)])
    return Rig(cams, shape, up_v, fov_deg, [fit * d for d in distances], b, reason, test_every=test_every)


def rig_from_cameras(cams: Cameras, source: str, *, test_every: int = 8, g: Gaussians | None = None) -> Rig:
    """A :class:`Rig` of user-given cameras (``--cameras FILE``)."""
    b = robust_bounds(g) if g is not None and len(g) else None
    return Rig(cams, "given", torch.zeros(3, dtype=torch.float64), float("nan"), [], b, "", source=source,
               test_every=test_every)


def scene_scale(cams: Cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (as datasets.load_dataset), 1.0 if one."""
    c = cams.centers.double()
    r = float((c - c.mean(dim=0)).norm(dim=1).max()) if len(c) > 1 else 0.0
    return 1.1 * r if r > 0 else 1.0


@torch.no_grad()
def render_targets(model, cams: Cameras, *, background: Tensor | None = None, backend: str = "auto",
                   batch: int = 4, progress: bool = True) -> Cameras:
    """``cams`` with images = the full model's renders, clamped to [0, 1] like photos. ``model``: a
    :class:`~rave_viewer.rave.units.UnitModel` (rendered as it is) or Gaussians (with ``background``, ``backend``)."""
    from .units import GaussianUnits

    if isinstance(model, Gaussians):
        model = GaussianUnits(model, backend=backend, background=background)
    imgs = []
    with tqdm(total=len(cams), desc="rig: render targets (full model)", unit="view", disable=not progress,
              leave=False) as bar:
        for s in range(0, len(cams), batch):
            c = cams[list(range(s, min(s + batch, len(cams))))]
            imgs.append(model.render(c).clamp(0, 1).float().cpu())
            bar.update(len(c))
    return Cameras(cams.viewmats, cams.Ks, cams.width, cams.height, torch.cat(imgs), list(cams.names))


def say(msg: str, progress: bool) -> None:
    """Print a start-of-build line on stderr (not with --quiet)."""
    if progress:
        print(msg, file=sys.stderr, flush=True)


__all__ = ["Rig", "SceneBounds", "choose_shape", "default_size", "place_rig", "render_targets", "rig_from_cameras",
           "robust_bounds", "scene_scale"]
