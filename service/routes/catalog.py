"""GET/PUT /v1/banners (the catalog) and PUT /v1/staff (the staff directory)."""
from __future__ import annotations

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recommender.contracts import parse_unique
from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.domain import Banner
from recommender.errors import ErrorCollector

from ..deps import Admin, Client, Engine
from ..schemas import ADMIN_ERRORS, BANNER_EXAMPLE, UNAUTHORIZED, PutResponse, StaffBatch

CATALOG_VERSION_HEADER = "X-Catalog-Version"

router = APIRouter(prefix="/v1", tags=["catalog"])


def parse_banners(objects: list) -> list[Banner]:
    """Validate with the banners file contract; errors name the item and the field."""
    errors = ErrorCollector("body", max_errors=len(objects) + 1)
    banners = parse_unique(enumerate(objects), banner_from_dict, "banner_id", errors, place="item")
    if errors.errors:
        raise RequestValidationError([{"loc": ("body", e.line, e.field), "msg": e.message, "type": "value_error"}
                                      for e in errors.errors])
    return banners


@router.get("/banners", response_model=list[dict], responses={**UNAUTHORIZED, 200: {
    "description": "the catalog in the banners.json contract (a saved copy is a valid banners.json); its version "
                   "in the X-Catalog-Version header",
    "headers": {CATALOG_VERSION_HEADER: {"description": "the version PUT /v1/banners answered",
                                         "schema": {"type": "integer"}}},
    "content": {"application/json": {"example": [BANNER_EXAMPLE]}}}}, summary="the current catalog")
def get_banners(engine: Engine, _: Client):
    return JSONResponse([banner_to_dict(b) for b in engine.catalog],
                        headers={CATALOG_VERSION_HEADER: str(engine.directory.catalog_version)})


@router.put("/banners", response_model=PutResponse, responses=ADMIN_ERRORS, summary="replace the catalog (admin)")
def put_banners(engine: Engine, _: Admin,
                body: list[dict] = Body(..., description="banner objects, as in banners.json",
                                        openapi_examples={"catalog": {"summary": "a catalog of one banner",
                                                                      "value": [BANNER_EXAMPLE]}})):
    banners = parse_banners(body)
    return PutResponse(version=engine.put_catalog(banners), count=len(banners))


@router.put("/staff", response_model=PutResponse, responses=ADMIN_ERRORS,
            summary="insert or update staff profiles (admin)")
def put_staff(body: StaffBatch, engine: Engine, _: Admin):
    rows = [(s.staff_id, s.attributes()) for s in body.staff]
    return PutResponse(version=engine.put_staff(rows), count=len(rows))
