"""Tasks, the model garden, datasets, model versions, predictions and downloads (/api/v1/)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from verticals.api import filters
from verticals.api.base import CallerAPIView, CatalogViewSet, ProjectScopedViewSet
from verticals.api.errors import RequestTooLarge
from verticals.api.params import MAX_INT, content_length, whole_number
from verticals.api.serializers import (
    GenerationBodySerializer,
    PredictBodySerializer,
    StrictCharField,
)
from verticals.api.streaming import event_stream, sse
from verticals.registry import services, storage
from verticals.registry.models import BaseModel, Dataset, DatasetVersion, ModelVersion
from verticals.registry.runners import Train
from verticals.sdk import discovery
from verticals.sdk.errors import ServiceError
from verticals.serving import service as serving


class UploadInvalid(exceptions.APIException):
    """An upload the platform refuses; `details.problems` lists the first ones by line or file."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_upload"

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.details = {"problems": problems or []}


def _predict_too_large(length: int | None = None) -> RequestTooLarge:
    limit = settings.SERVING_MAX_BODY_BYTES
    size = f"{length} bytes" if length is not None else f"more than {limit} bytes"
    return RequestTooLarge(
        limit,
        f"The request has {size}; a predict call takes at most {limit} bytes "
        "(SERVING_MAX_BODY_BYTES). Send fewer or smaller inputs per call, or predict a whole "
        "dataset with a batch_predict job.",
    )


class PredictJSONParser(BaseParser):
    """The JSON of a predict call, read up to SERVING_MAX_BODY_BYTES: base64 images make bodies far
    larger than the DATA_UPLOAD_MAX_MEMORY_SIZE that Django allows other routes (DRF's own JSON
    parser reads through `request.body`, which enforces that one)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.SERVING_MAX_BODY_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            # a body longer than its Content-Length said (the view checked that one)
            raise _predict_too_large()
        return JSONParser().parse(io.BytesIO(body), media_type, parser_context)


PREDICT_PARSERS = [PredictJSONParser, MultiPartParser]


def refuse_oversized(request) -> None:
    """Refuse a body over the upload limit before it is read (and written to temporary files)."""
    length = content_length(request)
    limit = settings.REGISTRY_MAX_UPLOAD_BYTES
    if length > limit + 64 * 1024:  # room for the multipart envelope and the other fields
        raise RequestTooLarge(
            limit,
            f"The upload has {length} bytes; uploads take at most {limit} bytes "
            "(REGISTRY_MAX_UPLOAD_BYTES).",
        )


def uploaded_file(request, field: str = "file"):
    files = request.FILES.getlist(field)
    if not files:
        raise exceptions.ValidationError(
            {field: [f"Attach the file as multipart/form-data in the field '{field}'."]}
        )
    if len(files) > 1:
        raise exceptions.ValidationError({field: ["Attach one file (a .zip holds many)."]})
    return files[0]


def rejected(exc: services.UploadRejected):
    if isinstance(exc, services.UploadTooLarge):
        return RequestTooLarge(settings.REGISTRY_MAX_UPLOAD_BYTES, exc.message_text)
    return UploadInvalid(exc.message_text, exc.problems)


# --- tasks and the model garden ---------------------------------------------------------------


def train_params_schema(task) -> dict:
    """The whole params schema of a train job for this task: core's parameters and the task's."""
    core = Train.params_schema
    return {
        "type": "object",
        "properties": {**core["properties"], **task.params_schema.get("properties", {})},
        "required": core["required"] + list(task.params_schema.get("required", [])),
        "additionalProperties": False,
    }


def task_dict(task) -> dict:
    plugin = discovery.plugin_of(task.name)
    return {
        "name": task.name,
        "domain": task.domain,
        "title": task.title,
        "description": task.description,
        "plugin": plugin.name if plugin else None,
        "dataset": task.dataset.describe(),
        "architectures": [
            {
                "name": a.name,
                "title": a.title,
                "description": a.description,
                "families": list(a.families),
                "requires_base": a.requires_base,
            }
            for a in task.architectures
        ],
        "default_architecture": task.default_architecture,
        "params_schema": train_params_schema(task),
        "input_schema": task.input_schema,
        "output_schema": task.output_schema,
        "metrics": list(task.metrics),
        "primary_metric": task.primary_metric,
        "optimizations": list(task.optimizations),
        "meters": dict(task.meters),
        "streams": task.streams,
        "playground": task.playground,
        "max_batch": task.max_batch,
        "jobs": ["train", "evaluate", "batch_predict"],
    }


class TaskListView(CallerAPIView):
    """The tasks enabled for the caller's tenant, with their dataset, params and input/output schemas."""

    def required_action(self) -> str | None:
        return "task.view"

    @extend_schema(
        responses=inline_serializer(
            "TaskList", {"results": serializers.ListField(child=serializers.DictField())}
        )
    )
    def get(self, request):
        tasks = discovery.enabled_tasks(self.caller.tenant)
        return Response({"count": len(tasks), "results": [task_dict(t) for t in tasks.values()]})


class BaseModelSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    tasks = serializers.SerializerMethodField()

    class Meta:
        model = BaseModel
        fields = [
            "id",
            "name",
            "title",
            "description",
            "family",
            "architecture",
            "labels",
            "tasks",
            "size_bytes",
            "files",
            "sha256",
            "source",
            "license",
            "created_at",
        ]
        read_only_fields = fields

    def get_tasks(self, base) -> list[str]:
        return services.tasks_for_base(base)


class BaseModelViewSet(mixins.ListModelMixin, CatalogViewSet):
    """The model garden: pretrained models every tenant may fine-tune (train with `base_model`)."""

    model = BaseModel
    serializer_class = BaseModelSerializer
    actions = {"list": "task.view"}
    filter_backends = []


# --- datasets -----------------------------------------------------------------------------------


class DatasetVersionSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "version",
            "source_name",
            "source_bytes",
            "sha256",
            "rows",
            "labels",
            "stats",
            "split_seed",
            "split_fractions",
            "created_at",
        ]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    project = serializers.CharField(source="project.public_id", read_only=True)
    latest_version = serializers.SerializerMethodField()
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "project",
            "name",
            "task",
            "description",
            "latest_version",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    @staticmethod
    def _latest(dataset):
        return dataset.versions.order_by("-version").first()

    def get_latest_version(self, dataset) -> dict | None:
        latest = self._latest(dataset)
        return DatasetVersionSerializer(latest).data if latest else None


class DatasetDetailSerializer(DatasetSerializer):
    versions = DatasetVersionSerializer(many=True, read_only=True)

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["versions"]
        read_only_fields = fields


class UploadFieldsSerializer(serializers.Serializer):
    """The form fields of a dataset upload (the file travels in `file`)."""

    task = StrictCharField(max_length=64, required=False)
    name = StrictCharField(max_length=200, required=False, allow_blank=True)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    seed = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False, default=0)
    validation_fraction = serializers.FloatField(required=False, allow_null=True, default=None)
    test_fraction = serializers.FloatField(required=False, allow_null=True, default=None)


DATASET_UPLOAD = inline_serializer(
    "DatasetUpload",
    {
        "file": serializers.FileField(
            help_text="CSV/JSONL (text tasks) or a .zip (image tasks); see the task's `dataset`."
        ),
        "task": serializers.CharField(
            help_text="The task (GET /api/v1/tasks/); not needed for a new version."
        ),
        "name": serializers.CharField(
            required=False, help_text="The dataset's name (default: the file's)."
        ),
        "description": serializers.CharField(required=False),
        "seed": serializers.IntegerField(
            required=False,
            min_value=0,
            max_value=MAX_INT,
            help_text="Seed of the train/validation/test split (default 0).",
        ),
        "validation_fraction": serializers.FloatField(required=False, help_text="Default 0.1."),
        "test_fraction": serializers.FloatField(required=False, help_text="Default 0.1."),
    },
)


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Datasets of a project: validated uploads, split and counted, in immutable versions."""

    model = Dataset
    serializer_class = DatasetSerializer
    lookup_url_kwarg = "dataset_id"
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    actions = {
        "list": "dataset.view",
        "retrieve": "dataset.view",
        "create": "dataset.create",
        "versions": "dataset.create",
        "destroy": "dataset.delete",
        "download": "dataset.download",
    }
    filterset_class = filters.DatasetFilter
    ordering_fields = ["created_at", "name"]

    def scope_queryset(self, queryset):
        return super().scope_queryset(queryset).select_related("project", "created_by")

    def get_serializer_class(self):
        return DatasetDetailSerializer if self.action == "retrieve" else DatasetSerializer

    def _upload(self, request, dataset=None) -> DatasetVersion:
        refuse_oversized(request)
        fields = UploadFieldsSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        data = fields.validated_data
        if dataset is None and not data.get("task"):
            raise exceptions.ValidationError(
                {"task": ["Name the task the dataset is for (see /api/v1/tasks/)."]}
            )
        upload = uploaded_file(request)
        try:
            return services.dataset_upload(
                project=self.get_project(),
                caller=self.caller,
                upload=upload,
                task=data.get("task", ""),
                dataset=dataset,
                name=data.get("name", ""),
                description=data.get("description", ""),
                seed=data["seed"],
                validation_fraction=data["validation_fraction"],
                test_fraction=data["test_fraction"],
            )
        except services.UploadRejected as exc:
            raise rejected(exc) from None

    @extend_schema(
        request={"multipart/form-data": DATASET_UPLOAD},
        responses={
            201: DatasetDetailSerializer,
            400: OpenApiResponse(
                description="The upload breaks the task's schema: `details.problems` lists where."
            ),
        },
    )
    def create(self, request, project_id=None):
        """Upload a dataset (multipart); answers the dataset with its first version's statistics."""
        version = self._upload(request)
        return Response(
            DatasetDetailSerializer(version.dataset).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request={"multipart/form-data": DATASET_UPLOAD}, responses={201: DatasetVersionSerializer}
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def versions(self, request, project_id=None, dataset_id=None):
        """Upload the next version of this dataset (same task); earlier versions stay as they are."""
        version = self._upload(request, dataset=self.get_object())
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, project_id=None, dataset_id=None):
        """Delete the dataset and every version's files (model versions trained on it stay)."""
        services.dataset_delete(dataset=self.get_object(), caller=self.caller)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "version",
                {"type": "integer", "minimum": 1, "maximum": MAX_INT},
                OpenApiParameter.QUERY,
                required=False,
                description="Which version (default: the latest).",
            )
        ],
        responses={
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description=(
                    "The file as it was uploaded, with the type its name says (text/csv, application/zip, …)."
                ),
            )
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def download(self, request, project_id=None, dataset_id=None):
        """The file that was uploaded for a version of this dataset."""
        dataset = self.get_object()
        versions = dataset.versions.all()
        wanted = whole_number(
            request.query_params.get("version"), name="version", low=1, high=MAX_INT
        )
        if wanted is not None:
            versions = versions.filter(version=wanted)
        version = versions.order_by("-version").first()
        if version is None:
            raise exceptions.NotFound("This dataset has no such version.")
        handle = storage.open_stored(version.storage_prefix, f"source/{version.source_name}")
        return FileResponse(handle, as_attachment=True, filename=version.source_name)


# --- model versions ------------------------------------------------------------------------------


class ModelVersionSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    project = serializers.CharField(source="project.public_id", read_only=True)
    lineage = serializers.SerializerMethodField()
    predictable = serializers.BooleanField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "project",
            "name",
            "version",
            "task",
            "architecture",
            "source",
            "labels",
            "metrics",
            "params",
            "size_bytes",
            "sha256",
            "predictable",
            "lineage",
            "created_at",
        ]
        read_only_fields = fields

    def get_lineage(self, model) -> dict:
        dsv = model.dataset_version
        return {
            "dataset_version": {
                "id": dsv.public_id,
                "dataset": dsv.dataset.public_id,
                "name": dsv.dataset.name,
                "version": dsv.version,
            }
            if dsv
            else None,
            "job": model.job.public_id if model.job_id and model.job else None,
            "parent": {
                "id": model.parent.public_id,
                "name": model.parent.name,
                "version": model.parent.version,
            }
            if model.parent_id and model.parent
            else None,
            "base_model": {"id": model.base_model.public_id, "name": model.base_model.name}
            if model.base_model_id
            else None,
        }


class ModelVersionDetailSerializer(ModelVersionSerializer):
    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + ["report", "files", "config"]
        read_only_fields = fields


class PredictParametersSerializer(serializers.Serializer):
    top_k = serializers.IntegerField(
        min_value=1, max_value=1000, required=False, help_text="Labels per output."
    )


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    """Model versions of a project (trained, fine-tuned, imported), their metrics and lineage; predict."""

    model = ModelVersion
    serializer_class = ModelVersionSerializer
    lookup_url_kwarg = "model_id"
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    actions = {
        "list": "model.view",
        "retrieve": "model.view",
        "create": "model.import",
        "destroy": "model.delete",
        "download": "model.download",
        "predict": "model.predict",
    }
    filterset_class = filters.ModelVersionFilter
    ordering_fields = ["created_at", "name", "version"]

    def scope_queryset(self, queryset):
        queryset = super().scope_queryset(queryset)
        if self.action in ("predict", "download"):
            # The hot path reads the model's own row only: no lineage joins, no report.
            return queryset.defer("report", "params", "config")
        return queryset.select_related(
            "project", "job", "parent", "base_model", "dataset_version__dataset"
        )

    def get_serializer_class(self):
        return ModelVersionDetailSerializer if self.action == "retrieve" else ModelVersionSerializer

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "ModelImport",
                {
                    "file": serializers.FileField(
                        help_text="A .zip or .tar.gz of a Hugging Face or torchvision model directory "
                        "(config.json + model.safetensors; pickles are refused)."
                    ),
                    "task": serializers.CharField(),
                    "name": serializers.CharField(required=False),
                },
            )
        },
        responses={201: ModelVersionDetailSerializer},
    )
    def create(self, request, project_id=None):
        """Import a pretrained model (safetensors only; never code from the archive)."""
        refuse_oversized(request)
        task = request.data.get("task")
        if not isinstance(task, str) or not task:
            raise exceptions.ValidationError(
                {"task": ["Name the task the model is for (see /api/v1/tasks/)."]}
            )
        name = request.data.get("name") or ""
        if not isinstance(name, str) or len(name) > 200:
            raise exceptions.ValidationError({"name": ["Give a name of at most 200 characters."]})
        try:
            version = services.model_import(
                project=self.get_project(),
                caller=self.caller,
                task=task,
                upload=uploaded_file(request),
                name=name,
            )
        except services.UploadRejected as exc:
            raise rejected(exc) from None
        return Response(ModelVersionDetailSerializer(version).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, project_id=None, model_id=None):
        services.model_delete(model=self.get_object(), caller=self.caller)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def download(self, request, project_id=None, model_id=None):
        """The model's files as a .zip (safetensors weights, config, tokenizer/processor files)."""
        model = self.get_object()
        spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as bundle:
            for entry in model.files:
                with (
                    storage.open_stored(model.storage_prefix, entry["name"]) as source,
                    bundle.open(entry["name"], "w") as sink,
                ):
                    for block in iter(lambda: source.read(1024 * 1024), b""):
                        sink.write(block)
        spool.seek(0)
        return FileResponse(
            spool,
            as_attachment=True,
            filename=f"{model.name}-v{model.version}.zip",
            content_type="application/zip",
        )

    @extend_schema(
        request={
            "application/json": inline_serializer(
                "PredictRequest",
                {
                    "inputs": serializers.JSONField(
                        help_text="One input, or a list of inputs (see the task's input_schema)."
                    ),
                    "parameters": PredictParametersSerializer(required=False),
                },
            ),
            "multipart/form-data": inline_serializer(
                "PredictUpload",
                {
                    "inputs": serializers.ListField(
                        child=serializers.FileField(), help_text="One or more files (images)."
                    ),
                    "top_k": serializers.IntegerField(required=False),
                },
            ),
        },
        responses={
            200: OpenApiResponse(
                description="One input: the task's output (e.g. [{label, score}] by descending "
                "score). A list of inputs: a list of outputs, in order."
            ),
            400: OpenApiResponse(
                description="An input is the wrong type, empty, too long, a corrupt image, or "
                "images over the pixel limits (per image, per call)."
            ),
            409: OpenApiResponse(
                description="The model cannot predict (no head yet, or its task is unavailable)."
            ),
            413: OpenApiResponse(description="The body is larger than SERVING_MAX_BODY_BYTES."),
            503: OpenApiResponse(
                description="The model process stopped during the call (e.g. out of memory); retry."
            ),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        filter_backends=[],
        pagination_class=None,
        parser_classes=PREDICT_PARSERS,
    )
    def predict(self, request, project_id=None, model_id=None):
        """Predict with this model version: one input or a list (Hugging Face pipeline output shapes)."""
        length = content_length(request)
        if length > settings.SERVING_MAX_BODY_BYTES:
            raise _predict_too_large(length)
        model = self.get_object()
        with serving.reading_body(length):
            try:
                with form_fields_too_large():
                    task = serving.task_of(model)
                    if task.streams:
                        return _generation_response(request, model, self.caller)
                    single, inputs, parameters = _predict_inputs(request)
                    outputs = serving.predict(
                        model_version=model,
                        inputs=inputs,
                        options=parameters,
                        single=single,
                        caller=self.caller,
                    )
            finally:
                _drop_body(request)
        return Response(outputs[0] if single else outputs)


class BarePredictView(ModelVersionViewSet):
    """`…/predict` without the trailing slash, as integrators often write it (the schema lists the
    route with the slash once)."""

    schema = None
    filter_backends = []  # as the predict action declares for the routed view
    pagination_class = None
    parser_classes = PREDICT_PARSERS


@contextmanager
def form_fields_too_large():
    """413 for a multipart predict form whose fields are too large to read, saying how to send
    it. (Serving's own failures carry their status: api.errors answers them.)"""
    try:
        yield
    except RequestDataTooBig:
        # multipart form fields (not files) past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        raise RequestTooLarge(
            message=f"The form fields of this multipart call hold more than "
            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; upload images as files in `inputs`, "
            f"or send JSON (up to {settings.SERVING_MAX_BODY_BYTES} bytes)."
        ) from None


def _generation_response(request, model, caller):
    """Predict with a generation model: {"inputs", "parameters", "stream"}. Without `stream`, the
    whole text per input; with it, server-sent events as the text grows (Text Generation
    Inference's shape: {"token": {"text"}, "generated_text": null}, the last one with the whole
    text and `details`)."""
    if not isinstance(request.data, dict) or "inputs" not in request.data:
        raise exceptions.ValidationError(
            {
                "inputs": [
                    'Send {"inputs": a prompt, {"messages": [...]} or a list, '
                    '"parameters": {...}, "stream": false}.'
                ]
            }
        )
    # Only the names: the inputs (up to SERVING_MAX_BODY_BYTES) are checked by serving, and a
    # field's validators would copy them (str() of a list of images).
    GenerationBodySerializer().refuse_unknown_fields(request.data)
    raw, parameters, stream = (
        request.data["inputs"],
        request.data.get("parameters") or {},
        request.data.get("stream", False),
    )
    if not isinstance(parameters, dict):
        raise exceptions.ValidationError(
            {"parameters": ['Give an object, e.g. {"max_tokens": 64}.']}
        )
    if not isinstance(stream, bool):
        raise exceptions.ValidationError({"stream": ["Give true or false."]})
    if not stream:
        single = not isinstance(raw, list)
        outputs = serving.complete(
            model=model, caller=caller, raw_inputs=[raw] if single else raw, options=parameters
        )
        return Response(outputs[0] if single else outputs)
    if isinstance(raw, list):
        raise exceptions.ValidationError(
            {"inputs": ["A stream takes one input; send a list without `stream`."]}
        )
    generation = serving.generate(model=model, caller=caller, raw_input=raw, options=parameters)
    return event_stream(
        request, _tgi_events(generation), cancel=generation.cancel, close=generation.close
    )


def _tgi_events(generation):
    text = []
    try:
        for event in generation:
            text.append(event.text)
            body = {"token": {"text": event.text}, "generated_text": None}
            if event.finished:
                body["generated_text"] = "".join(text)
                body["details"] = {
                    "finish_reason": event.finish_reason,
                    "prompt_tokens": generation.prompt_tokens,
                    "generated_tokens": event.completion_tokens,
                }
                if event.error:
                    body["error"] = {"code": "generation_failed", "message": event.error}
            yield sse(body)
    except ServiceError as exc:  # e.g. the inference process stopped midway (inference_restarted)
        yield sse({"error": {"code": exc.code, "message": exc.message}})


def _drop_body(request) -> None:
    """Let a predict call's parsed body go when the view returns. DRF's request, its view and the
    response refer to one another (the parser and renderer contexts), a cycle that only a full
    garbage collection frees, and a web process with torch loaded runs one rarely: each 30 MB
    body of base64 images would stay resident until then."""
    for parsed in (request.data, request.FILES):
        try:
            parsed.clear()
        except AttributeError:
            # an immutable QueryDict (a form without files): small, by Django's own limit
            pass


def _predict_inputs(request) -> tuple[bool, list, dict]:
    """(one input?, the inputs, the parameters) of a JSON or multipart predict request."""
    if request.FILES:
        files = request.FILES.getlist("inputs") or [
            f for name in request.FILES for f in request.FILES.getlist(name)
        ]
        inputs = []
        for upload in files:
            serving.check_file_size(upload.name, upload.size)
            inputs.append(upload.read())
        raw_parameters = (
            {"top_k": request.data["top_k"]} if request.data.get("top_k") not in (None, "") else {}
        )
        single = len(inputs) == 1
    else:
        if not isinstance(request.data, dict) or "inputs" not in request.data:
            raise exceptions.ValidationError(
                {
                    "inputs": [
                        'Send {"inputs": <one input or a list>} as JSON, or files as multipart.'
                    ]
                }
            )
        # Only the names (see _generation_response).
        PredictBodySerializer().refuse_unknown_fields(request.data)
        raw = request.data["inputs"]
        single = not isinstance(raw, list)
        inputs = [raw] if single else raw
        raw_parameters = request.data.get("parameters") or {}
        if not isinstance(raw_parameters, dict):
            raise exceptions.ValidationError({"parameters": ['Give an object, e.g. {"top_k": 3}.']})
    parameters = PredictParametersSerializer(data=raw_parameters)
    parameters.is_valid(raise_exception=True)
    unknown = sorted(set(raw_parameters) - set(parameters.fields))
    if unknown:
        raise exceptions.ValidationError(
            {f"parameters.{unknown[0]}": ["Unknown parameter; known: top_k."]}
        )
    return single, inputs, dict(parameters.validated_data)
