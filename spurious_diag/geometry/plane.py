"""The plane through three parameter vectors, and points projected onto it (the paper's loss-landscape view).

Given three states of one model, θ_a, θ_b and θ_end (state dicts: name → tensor), the plane
through θ_a is spanned by d1 = θ_b − θ_a and d2 = θ_end − θ_b, so θ_a, θ_b and θ_end sit at
the plane coordinates (0, 0), (1, 0) and (1, 1). The directions are not orthogonalized: a unit
of x is one θ_b − θ_a, a unit of y one θ_end − θ_b. A state θ projects to the least-squares
(x, y) minimizing ‖θ − θ_a − x·d1 − y·d2‖, solved through the 2×2 Gram matrix of (d1, d2).

All math runs in float64 on the tensors' own device; inputs may be any floating dtype and
carry ``requires_grad`` (nothing here builds a graph). Like the rest of :mod:`..geometry`, this
module imports nothing else of the package, so bad inputs raise :class:`PlaneInputError`, a
``ValueError`` naming the offending tensor (the probes turn it into the package's own errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

import torch

__all__ = ["Plane", "PlanePoint", "PlaneInputError", "plane_through", "project", "point_on", "COLLINEAR_SIN2"]

# 1 − cos²(d1, d2) below this: d2 adds no second direction worth the name (a 1e-5 rad angle).
COLLINEAR_SIN2 = 1e-10

StateDict = Mapping[str, torch.Tensor]


class PlaneInputError(ValueError):
    """States that do not fit together (names, shapes, dtypes), or directions that span no plane.

    ``tensor`` is the offending tensor's name when there is one, ``kind`` is ``"mismatch"``
    (the states disagree) or ``"degenerate"`` (d1 or d2 is zero, or they are collinear).
    """

    def __init__(self, message: str, *, tensor: Optional[str] = None, kind: str = "mismatch"):
        self.tensor = tensor
        self.kind = kind
        self.reason = message
        super().__init__(f"tensor '{tensor}': {message}" if tensor is not None else message)


@dataclass(frozen=True)
class Plane:
    """A 2-D affine plane in parameter space.

    Attributes:
        origin: θ_a, name → float64 tensor (the plane's (0, 0)).
        d1: θ_b − θ_a, name → float64 tensor of the same shape (the x direction).
        d2: θ_end − θ_b, name → float64 tensor (the y direction).
        gram: 2×2 float64 tensor [[d1·d1, d1·d2], [d1·d2, d2·d2]] (on the CPU; squared weight units).
        names: the tensors the plane spans, in order; every state projected or produced uses exactly these.
    """

    origin: dict[str, torch.Tensor] = field(repr=False)
    d1: dict[str, torch.Tensor] = field(repr=False)
    d2: dict[str, torch.Tensor] = field(repr=False)
    gram: torch.Tensor
    names: tuple[str, ...]

    @property
    def cos_angle(self) -> float:
        """cos of the angle between d1 and d2 (0 when orthogonal)."""
        g = self.gram
        return float(g[0, 1] / torch.sqrt(g[0, 0] * g[1, 1]))


@dataclass(frozen=True)
class PlanePoint:
    """A state's place relative to a :class:`Plane`.

    Attributes:
        x: coordinate along d1 (units of θ_b − θ_a).
        y: coordinate along d2 (units of θ_end − θ_b).
        residual: ‖off-plane part of θ − θ_a‖ / ‖θ − θ_a‖, in [0, 1]; 0 when θ = θ_a or θ lies in the plane.
    """

    x: float
    y: float
    residual: float


def _floating(name: str, t: object, label: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise PlaneInputError(f"{label} holds a {type(t).__name__}, not a tensor", tensor=name)
    if not t.is_floating_point():
        raise PlaneInputError(f"{label} holds dtype {t.dtype}; the plane spans floating-point tensors only",
                              tensor=name)
    return t


def _floating_names(state: StateDict) -> list[str]:
    return [n for n, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _select_names(theta_a: StateDict, theta_b: StateDict, theta_end: StateDict,
                  names: Optional[Iterable[str]]) -> tuple[str, ...]:
    if names is not None:
        chosen = tuple(dict.fromkeys(names))
        if not chosen:
            raise PlaneInputError("names is empty")
        return chosen
    chosen = tuple(_floating_names(theta_a))
    if not chosen:
        raise PlaneInputError("θ_a holds no floating-point tensors")
    for label, state in (("θ_b", theta_b), ("θ_end", theta_end)):
        other = _floating_names(state)
        missing = [n for n in chosen if n not in state]
        if missing:
            raise PlaneInputError(f"missing from {label} ({len(missing)} tensors missing)", tensor=missing[0])
        extra = [n for n in other if n not in theta_a]
        if extra:
            raise PlaneInputError(f"in {label} but not in θ_a ({len(extra)} such tensors)", tensor=extra[0])
    return chosen


def plane_through(theta_a: StateDict, theta_b: StateDict, theta_end: StateDict, *,
                  names: Optional[Iterable[str]] = None) -> Plane:
    """The plane through θ_a spanned by d1 = θ_b − θ_a and d2 = θ_end − θ_b.

    Args:
        theta_a, theta_b, theta_end: state dicts (name → tensor) of one architecture, any floating dtype.
        names: the tensors to span (every one must be floating-point in all three states); default:
            every floating-point tensor of θ_a, which must be exactly θ_b's and θ_end's floating-point
            tensors (integer buffers are left out).

    Returns:
        :class:`Plane` with float64 copies of θ_a, d1 and d2 (three times the model's size in float64).

    Raises:
        PlaneInputError: ``kind="mismatch"`` when a tensor is missing from a state, is not floating-point
            or has another shape (the message names it); ``kind="degenerate"`` when d1 or d2 is zero or
            they are collinear (sin² of their angle below :data:`COLLINEAR_SIN2`).

    >>> a = {"w": torch.zeros(2, 2)}
    >>> b = {"w": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    >>> end = {"w": torch.tensor([[1.0, 2.0], [0.0, 0.0]])}
    >>> plane = plane_through(a, b, end)
    >>> plane.gram.tolist()
    [[1.0, 0.0], [0.0, 4.0]]
    """
    chosen = _select_names(theta_a, theta_b, theta_end, names)
    origin: dict[str, torch.Tensor] = {}
    d1: dict[str, torch.Tensor] = {}
    d2: dict[str, torch.Tensor] = {}
    g11 = g12 = g22 = 0.0
    for name in chosen:
        tensors = []
        for label, state in (("θ_a", theta_a), ("θ_b", theta_b), ("θ_end", theta_end)):
            if name not in state:
                raise PlaneInputError(f"missing from {label}", tensor=name)
            tensors.append(_floating(name, state[name], label))
        a, b, end = tensors
        if not a.shape == b.shape == end.shape:
            raise PlaneInputError(f"shapes differ: θ_a {tuple(a.shape)}, θ_b {tuple(b.shape)}, "
                                  f"θ_end {tuple(end.shape)}", tensor=name)
        a64 = a.detach().to(torch.float64)
        b64 = b.detach().to(device=a64.device, dtype=torch.float64)
        end64 = end.detach().to(device=a64.device, dtype=torch.float64)
        u, v = b64 - a64, end64 - b64
        origin[name], d1[name], d2[name] = a64.clone(), u, v
        g11 += float(torch.sum(u * u))
        g12 += float(torch.sum(u * v))
        g22 += float(torch.sum(v * v))
    gram = torch.tensor([[g11, g12], [g12, g22]], dtype=torch.float64)
    if g11 == 0.0:
        raise PlaneInputError("d1 = θ_b − θ_a is zero: θ_a and θ_b are the same point", kind="degenerate")
    if g22 == 0.0:
        raise PlaneInputError("d2 = θ_end − θ_b is zero: θ_b and θ_end are the same point", kind="degenerate")
    sin2 = 1.0 - g12 * g12 / (g11 * g22)
    if not sin2 >= COLLINEAR_SIN2:  # also catches NaN from non-finite weights
        raise PlaneInputError(f"d1 and d2 are collinear (sin² of their angle {sin2:.3g} < {COLLINEAR_SIN2:g}); "
                              "they span no plane", kind="degenerate")
    return Plane(origin, d1, d2, gram, chosen)


def _check_state(plane: Plane, theta: StateDict, label: str) -> None:
    for name in plane.names:
        if name not in theta:
            raise PlaneInputError(f"missing from {label}", tensor=name)
        t = _floating(name, theta[name], label)
        if tuple(t.shape) != tuple(plane.origin[name].shape):
            raise PlaneInputError(f"shape {tuple(t.shape)} in {label}, {tuple(plane.origin[name].shape)} in the plane",
                                  tensor=name)


def project(plane: Plane, theta: StateDict) -> PlanePoint:
    """Least-squares plane coordinates of ``theta`` and how far off the plane it lies.

    (x, y) solves gram · (x, y) = (d1·v, d2·v) with v = θ − θ_a (tensors of ``plane.names``
    only; other entries of ``theta`` are ignored). ``residual`` is ‖v − x·d1 − y·d2‖ / ‖v‖,
    computed tensor by tensor (not as ‖v‖² − projected², which cancels for near-plane points).

    Raises:
        PlaneInputError: a tensor of the plane missing from ``theta``, not floating-point or of another shape.

    >>> a = {"w": torch.zeros(3)}
    >>> plane = plane_through(a, {"w": torch.tensor([1.0, 0, 0])}, {"w": torch.tensor([1.0, 1, 0])})
    >>> p = project(plane, {"w": torch.tensor([1.0, 2.0, 2.0])})  # off-plane part (0, 0, 2): norm 2 of 3
    >>> round(p.x, 12), round(p.y, 12), round(p.residual, 12)
    (1.0, 2.0, 0.666666666667)
    """
    _check_state(plane, theta, "θ")
    b1 = b2 = vv = 0.0
    diffs: dict[str, torch.Tensor] = {}
    for name in plane.names:
        origin = plane.origin[name]
        v = theta[name].detach().to(device=origin.device, dtype=torch.float64) - origin
        diffs[name] = v
        b1 += float(torch.sum(plane.d1[name] * v))
        b2 += float(torch.sum(plane.d2[name] * v))
        vv += float(torch.sum(v * v))
    if vv == 0.0:
        return PlanePoint(0.0, 0.0, 0.0)
    xy = torch.linalg.solve(plane.gram, torch.tensor([b1, b2], dtype=torch.float64))
    x, y = float(xy[0]), float(xy[1])
    off = 0.0
    for name, v in diffs.items():
        r = v - x * plane.d1[name] - y * plane.d2[name]
        off += float(torch.sum(r * r))
    return PlanePoint(x, y, (off / vv) ** 0.5)


def point_on(plane: Plane, x: float, y: float, *, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The state θ_a + x·d1 + y·d2 (computed in float64, returned in ``dtype``), one tensor per ``plane.names``.

    >>> plane = plane_through({"w": torch.zeros(2)}, {"w": torch.ones(2)}, {"w": torch.tensor([1.0, 3.0])})
    >>> point_on(plane, 1.0, 0.5)["w"].tolist()
    [1.0, 2.0]
    """
    x, y = float(x), float(y)
    return {name: (plane.origin[name] + x * plane.d1[name] + y * plane.d2[name]).to(dtype) for name in plane.names}
