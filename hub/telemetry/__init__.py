"""GPU telemetry history (issue 18): the recorder buffers every sample the hub receives and
writes them in batches; the downsampler folds them into hourly rows and prunes by age; the
GetGpuUsage mixin serves them (`hubctl usage`)."""

from hub.telemetry.api import GpuUsageApi
from hub.telemetry.downsample import Downsampler
from hub.telemetry.policy import DEFAULT_RETENTION, BadDuration, Retention, duration
from hub.telemetry.recorder import TelemetryRecorder

__all__ = [
    "DEFAULT_RETENTION",
    "BadDuration",
    "Downsampler",
    "GpuUsageApi",
    "Retention",
    "TelemetryRecorder",
    "duration",
]
