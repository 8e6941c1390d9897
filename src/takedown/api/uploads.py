from __future__ import annotations

from fastapi import UploadFile

from takedown.errors import MediaTooLarge


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file, refusing it as soon as it passes ``max_bytes``."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaTooLarge(
            f"The file is larger than the limit of {max_bytes} bytes.", limit=max_bytes
        )
    return data
