"""Query functions the tests serve."""

import pixeltable as pxt

from tests.pxt_app.schema import images, items

NOT_A_QUERY = 42


@pxt.query
def item_by_id(id: int):
    return items.where(items.id == id).select(items.id, items.name, items.name_upper)


@pxt.query
def items_by_tag(tag: str, limit: int = 10):
    return items.where(items.tag == tag).order_by(items.id).select(items.id, items.name, items.tag).limit(limit)


@pxt.query
def image_thumb(id: int):
    return images.where(images.id == id).select(images.thumb)


@pxt.query
def images_by_tag(tag: str):
    return images.where(images.tag == tag).order_by(images.id).select(images.id, images.thumb)
