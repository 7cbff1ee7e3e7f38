"""The live loop: the inference worker thread and the per-frame processor it runs."""

from app.engine.live.worker import FrameProcessor, InferenceWorker

__all__ = ["FrameProcessor", "InferenceWorker"]
