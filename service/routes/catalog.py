"""GET/PUT /v1/banners (the catalog) and PUT /v1/staff (the staff directory)."""
from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException

from recommender.contracts._json import parse_unique
from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.errors import ErrorCollector
from service.engine import RankingEngine

from ..deps import get_engine, require_admin, require_client
from ..schemas import BannersResponse, PutResponse, StaffBatch

router = APIRouter(prefix="/v1", tags=["catalog"])


def parse_banners(objects: list) -> list:
    """Validate with the banners file contract; errors name the item and the field."""
    errors = ErrorCollector("body", max_errors=len(objects) + 1)
    banners = parse_unique(enumerate(objects), banner_from_dict, "banner_id", errors, place="item")
    if errors.errors:
        raise HTTPException(422, [{"loc": ["body", e.line, e.field], "msg": e.message} for e in errors.errors])
    return banners


@router.get("/banners", response_model=BannersResponse, summary="the current catalog")
def get_banners(engine: RankingEngine = Depends(get_engine), _: str = Depends(require_client)):
    return BannersResponse(version=engine.catalog_version, banners=[banner_to_dict(b) for b in engine.catalog])


@router.put("/banners", response_model=PutResponse, summary="replace the catalog (admin)")
def put_banners(body: list[dict] = Body(..., description="banner objects, as in banners.json"),
                engine: RankingEngine = Depends(get_engine), _: str = Depends(require_admin)):
    banners = parse_banners(body)
    return PutResponse(version=engine.put_catalog(banners), count=len(banners))


@router.put("/staff", response_model=PutResponse, summary="insert or update staff profiles (admin)")
def put_staff(body: StaffBatch, engine: RankingEngine = Depends(get_engine), _: str = Depends(require_admin)):
    rows = [(s.staff_id, s.attributes()) for s in body.staff]
    return PutResponse(version=engine.put_staff(rows), count=len(rows))
