"""The randomized SVD behind the audit's angles: accuracy and time per update shape, and what it costs.

For each SmolLM2-135M update shape (q/o 576², k/v 192×576, gate/up 1536×576, down 576×1536, and the
49152×576 embedding) a seeded update with a slowly decaying σ_i = 1/i spectrum is built in float64.
Printed side by side, in one 1-thread process:

0. the audit's rule (``top_singular_basis`` at r = 16: adaptive iterations, stopping when the Ritz
   values settle within ``RITZ_TOL``) against the old fixed niter = 3, on σ_i = 1/√i, 1/i and 1/i²
   spectra at every shape: the worst angle to exact SVD over seeds 1–3 (issue 14's bound: 1°), the
   time per call and the iterations taken;
1. ``randomized_svd`` at r = 16 for block sizes q ∈ {18, 20, 24} and niter ∈ {2, 3}: the largest
   principal angle of its top-16 left/right bases to an exact float64 SVD (seeds 1–3; the issue's
   bound is 0.5°), and its time per call (float32);
2. the time of its 2·niter + 2 thin products alone (plain, unchunked), the floor of the method,
   and the rest (orthogonalization, Rayleigh–Ritz, bookkeeping);
3. the Rayleigh–Ritz step's float32 Gram path against the float64 one, over spectra on both sides of
   the cut (σ_q ≥ 3% σ₁), each with the path it takes.

    python benchmarks/bench_randomized_svd.py
"""

from __future__ import annotations

import math
import time

import torch

from spurious_diag.geometry import bases as bases_module
from spurious_diag.geometry import principal_angles, top_singular_basis
from spurious_diag.geometry.bases import _GRAM_RANGE, _rayleigh_ritz, randomized_svd

SHAPES = {"q/o": (576, 576), "k/v": (192, 576), "gate/up": (1536, 576), "down": (576, 1536), "embed": (49152, 576)}
RANK = 16


def spectrum_matrix(m: int, n: int, s: torch.Tensor, seed: int) -> torch.Tensor:
    """m×n float64 with singular values s and Haar-random factors."""
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    return (u * s[:k]) @ v.mT


def max_angle_deg(reference: tuple[torch.Tensor, torch.Tensor], u: torch.Tensor, vh: torch.Tensor) -> float:
    """Largest principal angle (degrees) of the top-r left and right bases to the exact (U, Vh)."""
    ref_u, ref_vh = reference
    left = principal_angles(ref_u[:, :RANK], u[:, :RANK].double()).max()
    right = principal_angles(ref_vh[:RANK].mT, vh[:RANK].mT.double()).max()
    return math.degrees(float(max(left, right)))


def seconds(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


SPECTRA = {"1/sqrt(i)": 0.5, "1/i": 1.0, "1/i^2": 2.0}


def exact_cases(m: int, n: int, power: float) -> list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
    """Seeds 1-3: (the float32 update, its exact top-r (U, Vh) from a float64 SVD) on σ_i = i^-power."""
    cases = []
    for seed in (1, 2, 3):
        x64 = spectrum_matrix(m, n, torch.arange(1, min(m, n) + 1, dtype=torch.float64) ** -power, seed)
        u, _, vh = torch.linalg.svd(x64, full_matrices=False)
        cases.append((x64.float(), (u[:, :RANK].clone(), vh[:RANK].clone())))
        del x64, u, vh
    return cases


def adaptive_vs_fixed() -> None:
    print(f"0. the audit's basis at r = {RANK}, q = {RANK + 4}: adaptive iterations vs fixed niter = 3")
    print("   worst angle to exact over seeds 1-3 (deg) / ms per call / iterations (seeds 1-3), float32")
    used: list[int] = []
    real = bases_module._rayleigh_ritz

    def counting(b, q, gram=None):  # the final Rayleigh-Ritz step sees the whole Krylov basis
        used.append(b.shape[0] // q - 1)
        return real(b, q, gram)

    bases_module._rayleigh_ritz = counting
    try:
        print(f"{'spectrum':<11}{'shape':<9}{'adaptive':>30}{'fixed niter=3':>26}")
        worst_all = {"adaptive": 0.0, "fixed": 0.0}
        for spectrum, power in SPECTRA.items():
            for label, (m, n) in SHAPES.items():
                cases = exact_cases(m, n, power)
                cells = []
                for mode, kwargs in (("adaptive", {}), ("fixed", {"niter": 3})):
                    used.clear()
                    worst = 0.0
                    for x, ref in cases:
                        basis = top_singular_basis(x, RANK, method="randomized", **kwargs)
                        worst = max(worst, max_angle_deg(ref, basis.U, basis.Vh))
                    iterations = list(used)
                    x = cases[0][0]
                    ms = 1e3 * seconds(lambda: top_singular_basis(x, RANK, method="randomized", **kwargs),
                                       2 if m > 10_000 else 10)
                    worst_all[mode] = max(worst_all[mode], worst)
                    its = ",".join(map(str, iterations)) if mode == "adaptive" else "3"
                    cells.append(f"{worst:.3f} / {ms:6.1f} / {its}")
                print(f"{spectrum:<11}{label:<9}{cells[0]:>30}{cells[1]:>26}", flush=True)
        for mode, worst in worst_all.items():
            print(f"  {mode}: worst angle {worst:.3f} deg (target <= 1) -> {'PASS' if worst <= 1 else 'FAIL'}")
    finally:
        bases_module._rayleigh_ritz = real


def accuracy_and_time() -> None:
    print(f"\n1. randomized_svd at r = {RANK}: worst angle to exact over seeds 1-3 (deg) / ms per call, float32")
    configs = [(18, 3), (20, 3), (24, 3), (24, 2), (32, 2)]
    print(f"{'shape':<10}" + "".join(f"{f'q={q} n={n}':>18}" for q, n in configs))
    for label, (m, n) in SHAPES.items():
        cases = exact_cases(m, n, 1.0)
        cells = []
        for q, niter in configs:
            worst = max(max_angle_deg(ref, *randomized_svd(x, q, niter=niter)[::2]) for x, ref in cases)
            x = cases[0][0]
            ms = 1e3 * seconds(lambda: randomized_svd(x, q, niter=niter), 2 if m > 10_000 else 20)
            cells.append(f"{worst:.3f} / {ms:.1f}")
        print(f"{label:<10}" + "".join(f"{c:>18}" for c in cells))


def floor() -> None:
    print("\n2. q = 20, niter = 3: the 8 thin products alone vs the whole call (ms)")
    print(f"{'shape':<10}{'products':>10}{'whole':>10}{'rest':>10}{'GF/s':>8}")
    for label, (m, n) in SHAPES.items():
        x = torch.randn(m, n, generator=torch.Generator().manual_seed(0))
        y = x if m <= n else x.mT
        block = torch.linalg.qr(torch.randn(y.shape[0], 20)).Q.mT.contiguous()
        repeat = 3 if m > 10_000 else 30
        products = 4 * seconds(lambda: (block @ y) @ y.mT, repeat)
        whole = seconds(lambda: randomized_svd(x, 20), repeat)
        flops = 8 * 2 * m * n * 20
        print(f"{label:<10}{1e3 * products:>10.2f}{1e3 * whole:>10.2f}{1e3 * (whole - products):>10.2f}"
              f"{flops / products / 1e9:>8.0f}")
    print("  (the embedding's whole call can beat its plain products: past 16 MiB it runs each Krylov step's")
    print("   two products in one pass over cache-sized column chunks)")


def rayleigh_ritz_paths() -> None:
    print("\n3. Rayleigh-Ritz on an 80x700 projection: float32 Gram path vs float64 (top-16 angles, deg)")
    spectra = {f"1/i^{p}": (lambda p: lambda i: i ** -p)(p) for p in (0.5, 0.8, 1.0, 1.1, 1.15, 1.2, 1.5, 2.0)}
    spectra.update({f"{r}^i": (lambda r: lambda i: r ** i)(r) for r in (0.8, 0.85, 0.9, 0.95)})
    k, q = 80, 20
    worst = 0.0
    for name, f in spectra.items():
        i = torch.arange(1, k + 1, dtype=torch.float64)
        b = spectrum_matrix(k, 700, f(i), seed=5).float()
        eigenvalues = torch.linalg.eigvalsh(b.double() @ b.double().mT).flip(0)
        path = "float32" if eigenvalues[q - 1] >= _GRAM_RANGE * eigenvalues[0] else "float64"
        s, e, right = _rayleigh_ritz(b, q)
        wide = b.double()
        ref_e = torch.linalg.eigh(wide @ wide.mT).eigenvectors.flip(1)[:, :RANK]
        ref_s, ref_right = torch.linalg.svd(wide, full_matrices=False)[1:]
        angle = math.degrees(float(max(principal_angles(e[:, :RANK].double(), ref_e).max(),
                                       principal_angles(right[:RANK].mT.double(), ref_right[:RANK].mT).max())))
        sv = float(((s[:RANK].double() - ref_s[:RANK]).abs() / ref_s[:RANK]).max())
        if path == "float32":
            worst = max(worst, angle)
        ratio = float(eigenvalues[q - 1] / eigenvalues[0])
        print(f"  {name:<10} λ_q/λ_1 = {ratio:.1e}  {path} path: {angle:.5f} deg, singular values within {sv:.1e}")
    print(f"  largest difference where the float32 path is taken: {worst:.5f} deg")


def main() -> None:
    torch.set_num_threads(1)
    adaptive_vs_fixed()
    accuracy_and_time()
    floor()
    rayleigh_ritz_paths()


if __name__ == "__main__":
    main()
