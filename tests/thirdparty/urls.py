"""A third-party site's URLs: a PixeltableRouter built in Python, beside an unrelated API and a plain view.

Tables and query functions are passed as objects, not as path strings.
"""

import pydantic
from django.http import HttpRequest, HttpResponse
from django.urls import path
from ninja import NinjaAPI

from pxtserve import PixeltableRouter
from tests.pxt_app import queries
from tests.pxt_app.schema import images, items

router = PixeltableRouter()
router.add_insert_route(
    items, path="/items", inputs=["id", "name", "score", "tag"], outputs=["id", "name", "name_upper", "score_double"]
)
router.add_update_route(items, path="/items/update", inputs=["score"], outputs=["id", "score", "score_double"])
router.add_delete_route(items, path="/items/delete")
router.add_query_route(path="/items/by-tag", query=queries.items_by_tag)
router.add_query_route(path="/items/one", query=queries.item_by_id, one_row=True, method="get")
router.add_insert_route(images, path="/images", inputs=["id", "image", "tag"], outputs=["id", "thumb"])
router.add_query_route(path="/images/thumb", query=queries.image_thumb, one_row=True, method="get")


class ItemCard(pydantic.BaseModel):
    id: int
    title: str
    score: float | None


@router.insert_route(items, path="/items/card", inputs=["id", "name", "score"], outputs=["id", "name_upper", "score"])
def item_card(*, id: int, name_upper: str, score: float | None) -> ItemCard:
    return ItemCard(id=id, title=f"#{id} {name_upper}", score=score)


class Rescored(pydantic.BaseModel):
    id: int
    doubled: float | None
    rescored: bool = True


@router.update_route(items, path="/items/rescore", inputs=["score"], outputs=["id", "score_double"])
def rescored(*, id: int, score_double: float | None) -> Rescored:
    return Rescored(id=id, doubled=score_double)


# the same, as a background job: the request answers with a job URL, the job's result is the function's model
@router.update_route(
    items, path="/items/rescore-later", inputs=["score"], outputs=["id", "score_double"], background=True
)
def rescored_later(*, id: int, score_double: float | None) -> Rescored:
    return Rescored(id=id, doubled=score_double)


class ImageCard(pydantic.BaseModel):
    id: int
    thumbnail: str


# multipart: the image is an uploaded file, the other inputs are form fields
@router.insert_route(images, path="/images/card", inputs=["id"], uploadfile_inputs=["image"], outputs=["id", "thumb"])
def image_card(*, id: int, thumb: str) -> ImageCard:
    return ImageCard(id=id, thumbnail=thumb)


pxt_api = NinjaAPI(title="Third-party site: Pixeltable", urls_namespace="thirdparty-pxt")
pxt_api.add_router("/pxt", router)

# an API of the site that has nothing to do with Pixeltable
other_api = NinjaAPI(title="Third-party site: other", urls_namespace="thirdparty-other")


@other_api.get("/ping")
def ping(request: HttpRequest) -> dict[str, bool]:
    return {"pong": True}


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("third-party home", content_type="text/plain")


urlpatterns = [
    path("api/", pxt_api.urls),
    path("other/", other_api.urls),
    path("", home, name="home"),
]
