"""The live loop: the inference worker thread, the per-frame processor it runs, and the
live stages the processor is made of (`stages/`)."""

from app.engine.live.worker import FrameProcessor, InferenceWorker

__all__ = ["FrameProcessor", "InferenceWorker"]
