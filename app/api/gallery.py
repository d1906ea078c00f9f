"""The enrolled gallery as a whole (admin): calibration of τ for its current size."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import AdminKey, ServicesDep
from app.services.calibration import GalleryCalibration

router = APIRouter(prefix="/v1/gallery", tags=["gallery"])


class TailModelOut(BaseModel):
    kind: str = Field(description="'normal_lower_tail': FMR(tau) = Phi((tau - mu) / sigma).")
    mu: float
    sigma: float
    tail_fraction: float = Field(description="Share of the impostor comparisons the fit used.")
    points: int
    upper: float = Field(description="The largest distance in the fitted tail.")
    r2: float = Field(description="Of the probit regression; 1 = the tail is exactly normal.")


class CurvePointOut(BaseModel):
    tau: float
    matches: int = Field(description="Impostor comparisons below tau.")
    fmr_empirical: float
    fmr_model: float | None
    fmr: float = Field(description="max(empirical, model): what the predictions use.")
    far_attempt: float = Field(description="Predicted share of stranger attempts accepted at this K.")


class RecommendationOut(BaseModel):
    target_far: float
    fmr_per_comparison: float
    tau: float | None = Field(description="The largest tau meeting the target; null: too few comparisons.")


class PersonRefOut(BaseModel):
    id: int
    name: str


class LookAlikeOut(BaseModel):
    person_a: PersonRefOut
    person_b: PersonRefOut
    distance: float
    below_tau: bool = Field(description="Either could be taken for the other: give them a second factor.")


class StrangersOut(BaseModel):
    strangers: int
    matches_at_tau: int = Field(description="Strangers whose nearest enrolled person is below tau.")
    observed_far_at_tau: float
    predicted_far_at_tau: float | None
    comparisons: int
    fmr_empirical_at_tau: float = Field(description="Per stranger-person comparison.")


class CalibrationOut(BaseModel):
    gallery_version: int
    model_version: str
    people: int
    templates: int
    comparisons: int = Field(description="Impostor comparisons (template to other person) behind the curve.")
    probes: int = Field(description="Templates compared with every other person.")
    complete: bool = Field(description="False: a deterministic subset of templates served as probes.")
    tau: float
    target_far: float
    model: TailModelOut | None
    fmr_at_tau: float | None
    far_at_tau: float | None
    max_people_at_tau: int | None = Field(description="Largest K meeting target_far at tau; null: no bound.")
    supported: bool | None
    warning: str | None
    recommended_tau: float | None
    recommendations: list[RecommendationOut]
    curve: list[CurvePointOut]
    look_alikes: list[LookAlikeOut]
    strangers: StrangersOut | None = Field(description="Only from `facegate calibrate --strangers`.")
    computed_at: datetime
    compute_ms: float


def calibration_out(result: GalleryCalibration) -> CalibrationOut:
    r = result.report
    model = None
    if r.model is not None:
        m = r.model
        model = TailModelOut(
            kind="normal_lower_tail",
            mu=m.mu,
            sigma=m.sigma,
            tail_fraction=m.tail_fraction,
            points=m.points,
            upper=m.upper,
            r2=m.r2,
        )
    chosen = r.recommendation(r.target_far)
    return CalibrationOut(
        gallery_version=result.gallery_version,
        model_version=result.model_version,
        people=r.people,
        templates=r.templates,
        comparisons=r.comparisons,
        probes=r.probes,
        complete=r.complete,
        tau=r.tau,
        target_far=r.target_far,
        model=model,
        fmr_at_tau=r.fmr_at_tau,
        far_at_tau=r.far_at_tau,
        max_people_at_tau=r.max_people_at_tau,
        supported=r.supported,
        warning=r.warning,
        recommended_tau=chosen.tau if chosen is not None else None,
        recommendations=[
            RecommendationOut(target_far=x.target_far, fmr_per_comparison=x.fmr_per_comparison, tau=x.tau)
            for x in r.recommendations
        ],
        curve=[
            CurvePointOut(
                tau=p.tau,
                matches=p.matches,
                fmr_empirical=p.fmr_empirical,
                fmr_model=p.fmr_model,
                fmr=p.fmr,
                far_attempt=p.far_attempt,
            )
            for p in r.curve
        ],
        look_alikes=[
            LookAlikeOut(
                person_a=PersonRefOut(id=p.person_a, name=result.names.get(p.person_a, "")),
                person_b=PersonRefOut(id=p.person_b, name=result.names.get(p.person_b, "")),
                distance=p.distance,
                below_tau=p.distance < r.tau,
            )
            for p in r.look_alikes
        ],
        strangers=StrangersOut.model_validate(r.strangers, from_attributes=True) if r.strangers else None,
        computed_at=result.computed_at,
        compute_ms=result.compute_ms,
    )


@router.get("/calibration", response_model=CalibrationOut)
async def calibration(
    services: ServicesDep,
    _: AdminKey,
    target_far: Annotated[
        float | None,
        Query(ge=1e-9, le=0.1, description="Default FACEGATE_TARGET_STRANGER_FAR."),
    ] = None,
) -> CalibrationOut:
    """False-match rate against tau from the enrolled people, and the tau their number calls for."""
    service = services.calibration
    # Reads every template and does O(probes x templates) arithmetic: never on the event loop.
    result = await asyncio.to_thread(service.compute, target_far)
    return calibration_out(result)
