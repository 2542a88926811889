"""The demo's tables, created on import (idempotently): what `modules` in service.toml points at."""

import pixeltable as pxt
from pixeltable.functions.video import frame_iterator

pxt.create_dir("demo", if_exists="ignore")

# Notes with a primary key and computed columns that follow the text.
notes = pxt.create_table(
    "demo.notes",
    {"id": pxt.Required[pxt.Int], "title": pxt.String, "body": pxt.String, "tag": pxt.String | None},
    primary_key="id",
    if_exists="ignore",
)
notes.add_computed_column(title_upper=notes.title.upper(), if_exists="ignore")
notes.add_computed_column(body_length=notes.body.len(), if_exists="ignore")

# Images with a computed thumbnail (a media column served as a URL).
images = pxt.create_table(
    "demo.images",
    {"id": pxt.Required[pxt.Int], "image": pxt.Image, "tag": pxt.String | None},
    primary_key="id",
    if_exists="ignore",
)
images.add_computed_column(thumbnail=images.image.resize((64, 64)), if_exists="ignore")
images.add_computed_column(width=images.image.width, if_exists="ignore")

# Videos with computed columns read from the file (its duration, a poster frame served as a URL), and a view
# with one row per second of video whose frames are computed when read.
videos = pxt.create_table(
    "demo.videos",
    {"id": pxt.Required[pxt.Int], "video": pxt.Video, "title": pxt.String | None},
    primary_key="id",
    if_exists="ignore",
)
videos.add_computed_column(duration=videos.video.get_duration(), if_exists="ignore")
videos.add_computed_column(poster=videos.video.extract_frame(timestamp=0.0), if_exists="ignore")
frames = pxt.create_view("demo.frames", videos, iterator=frame_iterator(videos.video, fps=1.0), if_exists="ignore")
