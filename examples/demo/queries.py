"""The demo's @pxt.query functions (the tables must exist first: @pxt.query evaluates its body now)."""

import pixeltable as pxt

from examples.demo.schema import frames, images, notes


@pxt.query
def note_by_id(id: int):
    return notes.where(notes.id == id).select(notes.id, notes.title, notes.body, notes.title_upper)


@pxt.query
def notes_by_tag(tag: str, limit: int = 10):
    return notes.where(notes.tag == tag).order_by(notes.id).select(notes.id, notes.title, notes.tag).limit(limit)


@pxt.query
def thumbnail(id: int):
    return images.where(images.id == id).select(images.thumbnail)


@pxt.query
def images_by_tag(tag: str):
    return images.where(images.tag == tag).order_by(images.id).select(images.id, images.image, images.thumbnail)


@pxt.query
def video_frames(id: int):
    return frames.where(frames.id == id).order_by(frames.pos).select(frames.pos, frames.frame)
