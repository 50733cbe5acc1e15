"""rxpipe: machine-learning pipelines as reactive streams.

Pipcook's plugin chain (collect → access → process → model → train → evaluate →
deploy), where every plugin is an RxPY operator over batches, feeding a TensorFlow
training loop. Importing rxpipe does not import TensorFlow; the plugins that need it
import it when they run.

Example:
    >>> import rxpipe
    >>> from rxpipe.operators import access, collect
    >>> pipeline = rxpipe.Pipeline(collect.digits(), access.batch(1000), name="peek")
    >>> [batch.size for batch in pipeline.collect()]
    [1000, 797]
"""

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec, Split
from rxpipe.config import PipelineConfig, PluginSpec, load_config
from rxpipe.context import RunContext, SkippedSample, StageCounts, current_run
from rxpipe.errors import (
    AccountingError,
    BatchError,
    BufferOverflowError,
    BundleError,
    ConfigError,
    PipelineCancelled,
    PredictionInputError,
    QualityGateError,
    RxpipeError,
    SkipLimitError,
    StageError,
    TrainingError,
    UnknownPluginError,
)
from rxpipe.events import (
    ArtifactSaved,
    BatchesDropped,
    CacheRebuilt,
    EpochEnded,
    EvaluationCompleted,
    Event,
    RunCompleted,
    RunFailed,
    RunStarted,
    SamplesSkipped,
    StageCompleted,
    StageStalled,
    StageStarted,
    ThroughputSnapshot,
    TrainProgress,
)
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.pipeline import Pipeline
from rxpipe.registry import plugin, registry
from rxpipe.result import RunResult
from rxpipe.stage import Operator, PluginKind, Stage

__version__ = "0.1.0"

__all__ = [
    "AccountingError",
    "ArtifactSaved",
    "Batch",
    "BatchError",
    "BatchesDropped",
    "BufferOverflowError",
    "BundleError",
    "CacheRebuilt",
    "ConfigError",
    "DatasetMetadata",
    "EpochEnded",
    "EvaluationCompleted",
    "Event",
    "FeatureSpec",
    "ModelPlan",
    "Operator",
    "Pipeline",
    "PipelineCancelled",
    "PipelineConfig",
    "PluginKind",
    "PluginSpec",
    "PredictionInputError",
    "QualityGateError",
    "RunCompleted",
    "RunContext",
    "RunFailed",
    "RunResult",
    "RunStarted",
    "RxpipeError",
    "SamplesSkipped",
    "SkipLimitError",
    "SkippedSample",
    "Split",
    "Stage",
    "StageCompleted",
    "StageCounts",
    "StageError",
    "StageStalled",
    "StageStarted",
    "ThroughputSnapshot",
    "TrainProgress",
    "TrainedModel",
    "TrainingError",
    "UnknownPluginError",
    "__version__",
    "current_run",
    "load_config",
    "plugin",
    "registry",
]
