from __future__ import annotations

from fastapi import UploadFile

from takedown.config import Settings
from takedown.errors import MediaTooLarge
from takedown.media.video import is_video


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file, refusing it as soon as it passes ``max_bytes``."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaTooLarge(
            f"The file is larger than the limit of {max_bytes} bytes.", limit=max_bytes
        )
    return data


async def read_media_upload(file: UploadFile, settings: Settings) -> bytes:
    """Read an image or a video upload, each held to its own size limit.

    The larger of the two limits bounds the read; a file that is not a video is then
    held to the image limit (so a 60 MB "image" is refused as it always was)."""
    data = await read_upload(file, settings.max_media_bytes)
    limit = settings.max_video_bytes if is_video(data) else settings.max_upload_bytes
    if len(data) > limit:
        raise MediaTooLarge(f"The file is larger than the limit of {limit} bytes.", limit=limit)
    return data
