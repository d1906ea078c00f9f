#!/usr/bin/env python3
"""Badge + face (1:1 claims) against recognition (1:K) on the dev open-set protocol.

    python scripts/measure_claims.py [--faces ../shared/faces] [--profile fusion] [--shots 1]

The LFW dev open-set gallery is enrolled (``--shots``: 1 or 3 photos per person) and every probe
is one frame at a door:

- genuine claims: each mated probe claims its own person's badge;
- impostor claims: every non-mated probe (a stranger) claims every enrolled person's badge, and
  every mated probe claims every *other* enrolled person's badge (a colleague holding it);
- 1:K: each probe is searched among everyone (the service's rule: τ and margin, ``decide_frame``).

A claim compares the probe with the claimed person's templates (the nearest decides), at the 1:1
τ the service would apply to this gallery (``applied_tau_1to1``: FACEGATE_TARGET_FMR_1TO1 with the
gallery's impostors and the manifest's prior), and is denied when another enrolled person is
nearer (``decide_claim``, the service's rule); the same τ without that rule is printed beside it.
A probe without a face is denied. Encodings are the eval commands' (central face, cached under
<data_dir>/cache). Then 1:1 and 1:K are put side by side at the same stranger acceptance: τ for
each chosen on these strangers so that the same share of stranger attempts gets in, and the
genuine attempts each lets through. Changes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.evaluation.openset import read_gallery, read_probes, select  # noqa: E402
from app.evaluation.pairs import encode_images  # noqa: E402
from app.gallery.calibration import (  # noqa: E402
    applied_tau,
    applied_tau_1to1,
    impostor_sample,
    prior_model,
)
from app.gallery.matching import PersonHit, decide_frame  # noqa: E402
from app.gallery.metric import from_squared_l2  # noqa: E402
from app.settings import get_settings  # noqa: E402
from app.vision.pipeline import FacePipeline  # noqa: E402


def person_distances(
    probes: NDArray[np.float32], templates: NDArray[np.float32], starts: NDArray[np.intp], metric: str
) -> NDArray[np.float64]:
    """[probes, people]: each probe's distance to each person's nearest template."""
    p = probes.astype(np.float64)
    t = templates.astype(np.float64)
    d2 = (p * p).sum(1)[:, None] + (t * t).sum(1)[None, :] - 2.0 * p @ t.T
    return from_squared_l2(np.minimum.reduceat(d2, starts, axis=1), metric)  # type: ignore[arg-type]


def tau_for_rate(distances: NDArray[np.float64], rate: float) -> float:
    """The largest τ that lets at most floor(rate * n) of these attempts in (strictly below τ)."""
    d = np.sort(distances[~np.isnan(distances)])
    allowed = math.floor(rate * len(distances) + 1e-9)
    return float(d[allowed]) if allowed < len(d) else math.inf


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--shots", type=int, default=1)
    args = parser.parse_args()
    settings = get_settings()
    pipeline = FacePipeline.load(settings, profile=args.profile)
    metric = pipeline.profile.metric
    print(f"profile {pipeline.profile.name} ({metric}), templates {pipeline.model_version}")

    lfw = args.faces / "lfw-dev"
    gallery, probes = select(
        read_gallery(lfw / "openset_gallery.csv", args.shots), read_probes(lfw / "openset_probes.csv"), None
    )
    files = sorted({r.file for r in gallery} | {p.file for p in probes})
    emb = encode_images(pipeline, files, settings.data_dir / "cache")

    names = list(dict.fromkeys(r.identity for r in gallery))
    column = {n: i for i, n in enumerate(names)}
    rows = sorted(
        ((column[r.identity], e) for r in gallery if (e := emb[r.file]) is not None), key=lambda x: x[0]
    )
    person_col = np.array([c for c, _ in rows], dtype=np.int64)
    templates = np.stack([e for _, e in rows]).astype(np.float32)
    present, starts = np.unique(person_col, return_index=True)
    k = len(present)  # people with at least one template (the others cannot be claimed by anyone)
    col_of = {int(c): i for i, c in enumerate(present)}

    sample = impostor_sample(np.arange(1, len(rows) + 1), person_col, templates, metric=metric)
    prior = prior_model(pipeline.calibration_prior)
    ref = pipeline.profile.reference_tau
    one = applied_tau_1to1(sample, settings.target_fmr_1to1, prior, reference=ref)
    many = applied_tau(sample, settings.target_stranger_far, prior, reference=ref)
    print(
        f"gallery: {k} people, {len(rows)} templates ({args.shots} shot(s)); "
        f"1:1 tau {one.tau:.4f} ({one.source}, FMR {one.target_far:g} per claim); "
        f"1:K tau {many.tau:.4f} ({many.source}, stranger FAR {many.target_far:g} at K={k})"
    )

    mated = [p for p in probes if p.is_enrolled and column[p.true_identity] in col_of]
    strangers = [p for p in probes if not p.is_enrolled]

    def dist(ps: list) -> NDArray[np.float64]:  # type: ignore[type-arg]
        out = np.full((len(ps), k), np.nan)
        have = [i for i, p in enumerate(ps) if emb[p.file] is not None]
        if have:
            q = np.stack([emb[ps[i].file] for i in have]).astype(np.float32)  # type: ignore[misc]
            out[have] = person_distances(q, templates, starts.astype(np.intp), metric)
        return out

    dm, ds = dist(mated), dist(strangers)
    own = np.array([col_of[column[p.true_identity]] for p in mated], dtype=np.int64)
    genuine = dm[np.arange(len(mated)), own]
    colleague = dm.copy()
    colleague[np.arange(len(mated)), own] = np.nan
    colleague_claims = colleague[~np.isnan(colleague)]
    stranger_claims = ds.ravel()
    n_colleague = len(mated) * (k - 1)
    n_stranger = ds.size

    # decide_claim's rival rule: a claim is denied when another enrolled person is nearer.
    def nearest_or_tie(d: NDArray[np.float64]) -> NDArray[np.bool_]:
        filled = np.nan_to_num(d, nan=np.inf)
        return np.asarray(filled <= filled.min(axis=1, keepdims=True))

    mated_ok, stranger_ok = nearest_or_tie(dm), nearest_or_tie(ds)
    genuine_ok = mated_ok[np.arange(len(mated)), own]
    colleague_ok = mated_ok[~np.isnan(colleague)]
    stranger_ok_flat = stranger_ok.ravel()

    def granted(d: NDArray[np.float64], tau: float, ok: NDArray[np.bool_] | None = None) -> int:
        below = np.nan_to_num(d, nan=np.inf) < tau
        return int(np.sum(below if ok is None else below & ok))

    total = n_stranger + n_colleague

    def report(tau: float, rule: bool) -> tuple[int, int]:
        g = granted(genuine, tau, genuine_ok if rule else None)
        s = granted(stranger_claims, tau, stranger_ok_flat if rule else None)
        c = granted(colleague_claims, tau, colleague_ok if rule else None)
        print(f"  genuine badge holders granted: {g}/{len(mated)} = {pct(g / len(mated))}")
        print(f"  strangers claiming an enrolled badge: {s}/{n_stranger:,} = {pct(s / n_stranger, 4)}")
        print(f"  colleagues claiming another's badge: {c}/{n_colleague:,} = {pct(c / n_colleague, 4)}")
        print(f"  all impostor claims granted: {s + c}/{total:,} = {pct((s + c) / total, 4)}")
        return g, s + c

    tau1 = one.tau
    print(f"\n1:1 claims at tau {tau1:.4f} (one frame, identity only), the service's rule:")
    report(tau1, True)
    print(f"1:1 claims at tau {tau1:.4f}, distance alone (no rival rule):")
    report(tau1, False)

    # What the genuine target (98%) would cost: the τ that grants it, and the impostors it lets in.
    order = np.sort(np.where(genuine_ok, np.nan_to_num(genuine, nan=np.inf), np.inf))
    t98 = float(order[math.ceil(0.98 * len(mated)) - 1]) + 1e-9
    if math.isfinite(t98):
        print(f"the service's rule at the tau granting 98% of genuine claims ({t98:.4f}, set on the probes):")
        report(t98, True)
    else:
        print("no tau grants 98% of genuine claims under the rival rule")

    # 1:K with the service's rule (τ and margin) on each probe's two nearest people.
    def rank(d: NDArray[np.float64]) -> list[list[PersonHit]]:
        hits: list[list[PersonHit]] = []
        for row in d:
            if np.isnan(row).all():
                hits.append([])
                continue
            order = np.argsort(row)[:2]
            hits.append([PersonHit(int(j), int(j), float(row[j])) for j in order])
        return hits

    hm, hs = rank(dm), rank(ds)

    def door_1k(tau: float) -> tuple[int, int]:
        right = sum(
            1
            for h, o in zip(hm, own, strict=True)
            if h
            and (m := decide_frame(h, tau, settings.match_margin)).outcome == "match"
            and m.person_id == o
        )
        let_in = sum(1 for h in hs if h and decide_frame(h, tau, settings.match_margin).outcome == "match")
        return right, let_in

    right, let_in = door_1k(many.tau)
    print(f"\n1:K at the service's tau {many.tau:.4f}, margin {settings.match_margin:g}:")
    print(f"  enrolled people granted as themselves: {right}/{len(mated)} = {pct(right / len(mated))}")
    print(f"  strangers let in: {let_in}/{len(strangers)} = {pct(let_in / len(strangers))}")

    # Side by side at the same stranger acceptance: τ for each chosen on these strangers.
    print("\nsame stranger acceptance (share of stranger attempts let in), genuine attempts let through:")
    print("  strangers in   1:K tau   1:K genuine   1:1 tau   1:1 genuine")
    nearest = np.where(np.isnan(ds).all(axis=1), np.nan, np.nanmin(np.nan_to_num(ds, nan=np.inf), axis=1))
    for rate in (1e-2, 3e-3, 1e-3):
        if rate * len(strangers) < 1:
            continue
        t_k = tau_for_rate(nearest, rate)
        r_k, _ = door_1k(t_k)
        t_1 = tau_for_rate(stranger_claims, rate)
        g_1 = granted(genuine, t_1)
        print(
            f"  {rate:<12g}   {t_k:.4f}    {pct(r_k / len(mated)):>9}     "
            f"{t_1:.4f}    {pct(g_1 / len(mated)):>9}"
        )
    print(
        f"\n({len(mated)} genuine probes, {len(strangers)} strangers; {n_stranger:,} stranger claims and "
        f"{n_colleague:,} colleague claims; probes without a face: "
        f"{int(np.isnan(genuine).sum())} genuine, {int(np.isnan(ds).all(axis=1).sum())} strangers)"
    )


if __name__ == "__main__":
    main()
