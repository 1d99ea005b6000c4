import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PartKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PART_KIND_UNSPECIFIED: _ClassVar[PartKind]
    ARCHITECTURE: _ClassVar[PartKind]
    WEIGHTS: _ClassVar[PartKind]
    KERAS_ARCHIVE: _ClassVar[PartKind]
    EXAMPLES: _ClassVar[PartKind]
PART_KIND_UNSPECIFIED: PartKind
ARCHITECTURE: PartKind
WEIGHTS: PartKind
KERAS_ARCHIVE: PartKind
EXAMPLES: PartKind

class PartInfo(_message.Message):
    __slots__ = ("kind", "size", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: PartKind
    size: int
    sha256: str
    def __init__(self, kind: _Optional[_Union[PartKind, str]] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "parts", "aliases", "description", "tags", "base", "producer")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ProducerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    name: str
    parts: _containers.RepeatedCompositeFieldContainer[PartInfo]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    description: str
    tags: _containers.ScalarMap[str, str]
    base: str
    producer: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[PartInfo, _Mapping]]] = ..., aliases: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., base: _Optional[str] = ..., producer: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("kind", "data")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    kind: PartKind
    data: bytes
    def __init__(self, kind: _Optional[_Union[PartKind, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: UploadChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("inputs", "outputs")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class Blob(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "status", "status_message", "created", "architecture", "weights", "weights_format", "signature", "layer_classes", "custom_objects", "keras_version", "tensorflow_version", "parameter_count", "description", "tags", "aliases", "warnings", "examples", "created_by", "producer", "producer_sources", "plugin_modules", "load_warnings", "memory_estimate")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ProducerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ProducerSourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    LAYER_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    KERAS_VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_SOURCES_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_MODULES_FIELD_NUMBER: _ClassVar[int]
    LOAD_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    status: str
    status_message: str
    created: _timestamp_pb2.Timestamp
    architecture: Blob
    weights: Blob
    weights_format: str
    signature: Signature
    layer_classes: _containers.RepeatedScalarFieldContainer[str]
    custom_objects: _containers.RepeatedScalarFieldContainer[str]
    keras_version: str
    tensorflow_version: str
    parameter_count: int
    description: str
    tags: _containers.ScalarMap[str, str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    examples: Blob
    created_by: str
    producer: _containers.ScalarMap[str, str]
    producer_sources: _containers.ScalarMap[str, str]
    plugin_modules: _containers.RepeatedCompositeFieldContainer[PluginModule]
    load_warnings: _containers.RepeatedScalarFieldContainer[str]
    memory_estimate: MemoryEstimate
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., status_message: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., architecture: _Optional[_Union[Blob, _Mapping]] = ..., weights: _Optional[_Union[Blob, _Mapping]] = ..., weights_format: _Optional[str] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ..., layer_classes: _Optional[_Iterable[str]] = ..., custom_objects: _Optional[_Iterable[str]] = ..., keras_version: _Optional[str] = ..., tensorflow_version: _Optional[str] = ..., parameter_count: _Optional[int] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., aliases: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., examples: _Optional[_Union[Blob, _Mapping]] = ..., created_by: _Optional[str] = ..., producer: _Optional[_Mapping[str, str]] = ..., producer_sources: _Optional[_Mapping[str, str]] = ..., plugin_modules: _Optional[_Iterable[_Union[PluginModule, _Mapping]]] = ..., load_warnings: _Optional[_Iterable[str]] = ..., memory_estimate: _Optional[_Union[MemoryEstimate, _Mapping]] = ...) -> None: ...

class MemoryEstimate(_message.Message):
    __slots__ = ("weights_bytes", "activation_bytes_fixed", "activation_bytes_per_row", "overhead_bytes", "rows", "total_bytes", "note", "load_bytes")
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_FIXED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    LOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    weights_bytes: int
    activation_bytes_fixed: int
    activation_bytes_per_row: int
    overhead_bytes: int
    rows: int
    total_bytes: int
    note: str
    load_bytes: int
    def __init__(self, weights_bytes: _Optional[int] = ..., activation_bytes_fixed: _Optional[int] = ..., activation_bytes_per_row: _Optional[int] = ..., overhead_bytes: _Optional[int] = ..., rows: _Optional[int] = ..., total_bytes: _Optional[int] = ..., note: _Optional[str] = ..., load_bytes: _Optional[int] = ...) -> None: ...

class PluginModule(_message.Message):
    __slots__ = ("module", "version", "version_source", "sha256", "custom_objects")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    module: str
    version: str
    version_source: str
    sha256: str
    custom_objects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, module: _Optional[str] = ..., version: _Optional[str] = ..., version_source: _Optional[str] = ..., sha256: _Optional[str] = ..., custom_objects: _Optional[_Iterable[str]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "versions", "aliases", "default_version", "serving_version", "states")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class StatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[int]
    aliases: _containers.ScalarMap[str, int]
    default_version: int
    serving_version: int
    states: _containers.ScalarMap[int, str]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[int]] = ..., aliases: _Optional[_Mapping[str, int]] = ..., default_version: _Optional[int] = ..., serving_version: _Optional[int] = ..., states: _Optional[_Mapping[int, str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("tags", "layer_classes", "custom_objects")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LAYER_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, str]
    layer_classes: _containers.RepeatedScalarFieldContainer[str]
    custom_objects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Mapping[str, str]] = ..., layer_classes: _Optional[_Iterable[str]] = ..., custom_objects: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "versions")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model", "versions", "writes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    model: Model
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    writes: _containers.RepeatedCompositeFieldContainer[Write]
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[Write, _Mapping]]] = ...) -> None: ...

class Write(_message.Message):
    __slots__ = ("at", "action", "version", "alias", "actor")
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    action: str
    version: int
    alias: str
    actor: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: int
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("name", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DeleteModelVersionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteModelVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownloadModelVersionRequest(_message.Message):
    __slots__ = ("name", "version", "alias", "include_examples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    alias: str
    include_examples: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., include_examples: _Optional[bool] = ...) -> None: ...

class DownloadModelVersionResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ModelVersion
    chunk: UploadChunk
    def __init__(self, header: _Optional[_Union[ModelVersion, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ...) -> None: ...

class DiffVersionsRequest(_message.Message):
    __slots__ = ("name", "a", "b")
    NAME_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    name: str
    a: str
    b: str
    def __init__(self, name: _Optional[str] = ..., a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class ConfigChange(_message.Message):
    __slots__ = ("key", "a", "b")
    KEY_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    key: str
    a: str
    b: str
    def __init__(self, key: _Optional[str] = ..., a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class LayerChange(_message.Message):
    __slots__ = ("layer", "change", "class_a", "class_b", "config")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    CLASS_A_FIELD_NUMBER: _ClassVar[int]
    CLASS_B_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    layer: str
    change: str
    class_a: str
    class_b: str
    config: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    def __init__(self, layer: _Optional[str] = ..., change: _Optional[str] = ..., class_a: _Optional[str] = ..., class_b: _Optional[str] = ..., config: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ...) -> None: ...

class WeightChange(_message.Message):
    __slots__ = ("variable", "shape_a", "shape_b", "in_a", "in_b")
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_A_FIELD_NUMBER: _ClassVar[int]
    SHAPE_B_FIELD_NUMBER: _ClassVar[int]
    IN_A_FIELD_NUMBER: _ClassVar[int]
    IN_B_FIELD_NUMBER: _ClassVar[int]
    variable: str
    shape_a: _containers.RepeatedScalarFieldContainer[int]
    shape_b: _containers.RepeatedScalarFieldContainer[int]
    in_a: bool
    in_b: bool
    def __init__(self, variable: _Optional[str] = ..., shape_a: _Optional[_Iterable[int]] = ..., shape_b: _Optional[_Iterable[int]] = ..., in_a: _Optional[bool] = ..., in_b: _Optional[bool] = ...) -> None: ...

class SignatureChange(_message.Message):
    __slots__ = ("side", "name", "a", "b")
    SIDE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    side: str
    name: str
    a: str
    b: str
    def __init__(self, side: _Optional[str] = ..., name: _Optional[str] = ..., a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class DiffVersionsResponse(_message.Message):
    __slots__ = ("name", "version_a", "version_b", "same_architecture", "same_weights", "layers", "weights", "parameters_a", "parameters_b", "custom_objects_added", "custom_objects_removed", "signature")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_A_FIELD_NUMBER: _ClassVar[int]
    VERSION_B_FIELD_NUMBER: _ClassVar[int]
    SAME_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    SAME_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_A_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_B_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_OBJECTS_ADDED_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_OBJECTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_a: int
    version_b: int
    same_architecture: bool
    same_weights: bool
    layers: _containers.RepeatedCompositeFieldContainer[LayerChange]
    weights: _containers.RepeatedCompositeFieldContainer[WeightChange]
    parameters_a: int
    parameters_b: int
    custom_objects_added: _containers.RepeatedScalarFieldContainer[str]
    custom_objects_removed: _containers.RepeatedScalarFieldContainer[str]
    signature: _containers.RepeatedCompositeFieldContainer[SignatureChange]
    def __init__(self, name: _Optional[str] = ..., version_a: _Optional[int] = ..., version_b: _Optional[int] = ..., same_architecture: _Optional[bool] = ..., same_weights: _Optional[bool] = ..., layers: _Optional[_Iterable[_Union[LayerChange, _Mapping]]] = ..., weights: _Optional[_Iterable[_Union[WeightChange, _Mapping]]] = ..., parameters_a: _Optional[int] = ..., parameters_b: _Optional[int] = ..., custom_objects_added: _Optional[_Iterable[str]] = ..., custom_objects_removed: _Optional[_Iterable[str]] = ..., signature: _Optional[_Iterable[_Union[SignatureChange, _Mapping]]] = ...) -> None: ...

class GetAliasHistoryRequest(_message.Message):
    __slots__ = ("name", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class AliasMove(_message.Message):
    __slots__ = ("at", "from_version", "to_version", "actor")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    from_version: int
    to_version: int
    actor: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class GetAliasHistoryResponse(_message.Message):
    __slots__ = ("moves",)
    MOVES_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[AliasMove]
    def __init__(self, moves: _Optional[_Iterable[_Union[AliasMove, _Mapping]]] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("name", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class RollbackAliasResponse(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: Model
    version: int
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...
