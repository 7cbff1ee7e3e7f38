"""Frame sources (camera, video, image, folder) and the thread that reads them; cv2, no torch/Qt."""

from app.capture.images import IMAGE_EXTENSIONS, ImageError, downscale_to, read_image, to_rgb8
from app.capture.sources import (
    CameraSource,
    FolderSource,
    ImageSource,
    Source,
    SourceError,
    VideoSource,
    open_source,
)
from app.capture.thread import CaptureThread

__all__ = [
    "IMAGE_EXTENSIONS",
    "CameraSource",
    "CaptureThread",
    "FolderSource",
    "ImageError",
    "ImageSource",
    "Source",
    "SourceError",
    "VideoSource",
    "downscale_to",
    "open_source",
    "read_image",
    "to_rgb8",
]
