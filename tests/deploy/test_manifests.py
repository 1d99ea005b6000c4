"""deploy/: the kustomize base and overlays, the prometheus-adapter rules and the KServe
runtime. Rendered with `kubectl kustomize`, validated strictly against the Kubernetes
OpenAPI schemas (kubernetes-validate), then checked for what kerve relies on."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.deploy.tools import DEPLOY, KUSTOMIZE_TARGETS, by_kind, load_yaml_docs, missing, render

# The oldest Kubernetes minor still in common support, and the newest schemas bundled.
K8S_VERSIONS = ("1.30.0", "latest")
UID = 10001
ADAPTER_RULES = DEPLOY / "overlays" / "scaled" / "prometheus-adapter-rules.yaml"


def validator():
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate", "pip install 'kubernetes-validate>=1.30' (the test extra)")
    return kubernetes_validate


def validate_strict(docs: list[dict], version: str) -> list[str]:
    """Every error of `kubernetes-validate --strict` for these resources (built-in kinds
    only: an unknown kind is an error too)."""
    kv = validator()
    if version == "latest":
        version = kv.latest_version()
    errors = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kv.validate(doc, version, strict=True)
        except (kv.ValidationError, kv.SchemaNotFoundError) as exc:
            errors.append(f"{name}: {exc}")
    return errors


def env_of(container: dict, configmaps: dict[str, dict]) -> dict[str, object]:
    """A container's environment: envFrom ConfigMaps first, then `env` (values, or the
    valueFrom dicts), as the kubelet resolves it."""
    env: dict[str, object] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names ConfigMap {name!r}, not rendered"
        env.update(configmaps[name]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- every overlay ----------------------------------------------------------------------


@pytest.mark.parametrize("target", KUSTOMIZE_TARGETS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_renders_and_validates_strictly(target, version):
    docs = render(target)
    assert docs, f"deploy/{target} renders nothing"
    assert validate_strict(docs, version) == []


def test_strict_validation_catches_a_misspelt_field():
    """The check above means something: a typo in a container is an error."""
    deployment = copy.deepcopy(by_kind(render("base"), "Deployment")["kerve"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    errors = validate_strict([deployment], "latest")
    assert errors and "readOnlyRootFilesytem" in errors[0]


@pytest.mark.parametrize("target", KUSTOMIZE_TARGETS)
def test_every_pod_is_probed_scraped_limited_and_unprivileged(target):
    docs = render(target)
    configmaps = by_kind(docs, "ConfigMap")
    deployments = by_kind(docs, "Deployment")
    assert "kerve" in deployments
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        pod = template["spec"]
        where = f"deploy/{target}: Deployment {name}"
        annotations = template["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", where
        assert annotations.get("prometheus.io/port") == "8502", where
        assert annotations.get("prometheus.io/path") == "/metrics", where

        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == UID, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        volumes = {v["name"]: v for v in pod["volumes"]}

        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where

        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": 8500, "metrics": 8502}, where
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": 8500}, f"{where}: {probe}"
        startup = container["startupProbe"]
        assert startup["failureThreshold"] * startup["periodSeconds"] >= 600, (
            f"{where}: the startup probe must allow 10 minutes for loading models")

        resources = container["resources"]
        for key in ("cpu", "memory"):
            assert key in resources["requests"] and key in resources["limits"], where

        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
        tokens = volumes[mounts["/etc/kerve/tokens"]]["secret"]
        assert tokens["secretName"] == "kerve-tokens", where
        assert [i["path"] for i in tokens["items"]] == ["tokens.yaml"], where

        env = env_of(container, configmaps)
        assert env["KERVE_TOKENS_FILE"] == "/etc/kerve/tokens/tokens.yaml", where
        assert env["KERVE_DATA_DIR"] == "/var/lib/kerve", where
        assert mounts["/var/lib/kerve"] == "data", where
        assert env["KERVE_HOST"] == "0.0.0.0", where
        assert (env["KERVE_PORT"], env["KERVE_METRICS_PORT"]) == ("8500", "8502"), where


@pytest.mark.parametrize("target", KUSTOMIZE_TARGETS)
def test_services_pdbs_and_autoscalers_point_at_pods(target):
    docs = render(target)
    deployments = by_kind(docs, "Deployment")
    pods = {name: d["spec"]["template"] for name, d in deployments.items()}
    services = by_kind(docs, "Service")
    assert {"kerve", "kerve-headless"} <= set(services)
    assert services["kerve-headless"]["spec"]["clusterIP"] == "None"
    for name, service in services.items():
        selected = [p for p in pods.values()
                    if selects(service["spec"]["selector"], p["metadata"]["labels"])]
        assert selected, f"Service {name} selects no pods"
        for port in service["spec"]["ports"]:
            for pod in selected:
                names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
                assert port["targetPort"] in names, f"Service {name}: {port}"
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        assert any(selects(pdb["spec"]["selector"]["matchLabels"], p["metadata"]["labels"])
                   for p in pods.values()), f"PodDisruptionBudget {name} selects no pods"
    for name, hpa in by_kind(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, name


def test_base_scales_on_cpu():
    (hpa,) = by_kind(render("base"), "HorizontalPodAutoscaler").values()
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_one_node_is_one_pod_on_a_volume():
    docs = render("overlays/one-node")
    (deployment,) = by_kind(docs, "Deployment").values()
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert not by_kind(docs, "HorizontalPodAutoscaler"), "SQLite allows one writer"
    container = spec["template"]["spec"]["containers"][0]
    assert env_of(container, by_kind(docs, "ConfigMap"))["KERVE_ROLE"] == "all"
    data = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}["data"]
    assert set(data) == {"name", "persistentVolumeClaim"}
    assert data["persistentVolumeClaim"]["claimName"] in by_kind(docs, "PersistentVolumeClaim")
    assert spec["template"]["spec"]["securityContext"]["fsGroup"] == UID


def test_scaled_splits_registry_and_gpu_inference():
    docs = render("overlays/scaled")
    configmaps = by_kind(docs, "ConfigMap")
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"kerve", "kerve-registry"}
    envs = {name: env_of(d["spec"]["template"]["spec"]["containers"][0], configmaps)
            for name, d in deployments.items()}
    for name, env in envs.items():
        assert env["KERVE_BLOB_URL"] == "s3://kerve/models", name
        assert env["KERVE_S3_ENDPOINT"], name
        for var, key in (("KERVE_REGISTRY_URL", "registry-url"),
                         ("AWS_ACCESS_KEY_ID", "aws-access-key-id"),
                         ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key")):
            assert env[var] == {"secretKeyRef": {"name": "kerve-store", "key": key}}, (
                f"{name}: {var} must come from the Secret")
    assert envs["kerve"]["KERVE_ROLE"] == "inference"
    assert envs["kerve"]["KERVE_MAX_CONNECTION_AGE"] == "300"
    assert envs["kerve-registry"]["KERVE_ROLE"] == "registry"
    assert "KERVE_MAX_CONNECTION_AGE" not in envs["kerve-registry"], "uploads are long"

    def limits(name):
        return deployments[name]["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"]

    assert limits("kerve")["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in limits("kerve-registry")
    assert 1 <= deployments["kerve-registry"]["spec"]["replicas"] <= 2
    assert "kerve-registry" in by_kind(docs, "Service")


def test_scaled_autoscales_on_the_queue_time_the_adapter_serves():
    (hpa,) = by_kind(render("overlays/scaled"), "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kerve"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    rules = adapter_rules()
    assert name in rules, f"the HPA's metric {name!r} is not among the adapter's {list(rules)}"


def adapter_rules() -> dict[str, dict]:
    (configmap,) = load_yaml_docs(ADAPTER_RULES)
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    return {rule["name"]["as"]: rule for rule in config["rules"]}


def test_adapter_rules_derive_queue_time_from_the_histogram():
    docs = load_yaml_docs(ADAPTER_RULES)
    assert [d["kind"] for d in docs] == ["ConfigMap"]
    assert validate_strict(docs, "latest") == []
    rules = adapter_rules()
    p90 = rules["kerve_queue_duration_seconds_p90"]
    assert "kerve_queue_duration_seconds_bucket" in p90["seriesQuery"]
    assert "histogram_quantile(0.9" in p90["metricsQuery"]
    avg = rules["kerve_queue_duration_seconds_avg"]
    assert "kerve_queue_duration_seconds_sum" in avg["seriesQuery"]
    assert "kerve_queue_duration_seconds_count" in avg["metricsQuery"]
    for name, rule in rules.items():
        query = rule["metricsQuery"]
        for template in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert template in query, f"{name}: {template} missing"
        assert query.count("(") == query.count(")"), name
        overrides = rule["resources"]["overrides"]
        assert overrides["pod"] == {"resource": "pod"}, name
        assert overrides["namespace"] == {"resource": "namespace"}, name


# --- KServe -----------------------------------------------------------------------------

# The spec fields of KServe's ServingRuntime CRD (v1alpha1; config/crd/full in
# kserve/kserve at aaac4e29), to catch misspelt ones: the API server would drop them.
SERVING_RUNTIME_SPEC = {
    "affinity", "annotations", "builtInAdapter", "containers", "disabled", "grpcDataEndpoint",
    "grpcEndpoint", "hostIPC", "httpDataEndpoint", "imagePullSecrets", "labels", "multiModel",
    "nodeSelector", "protocolVersions", "replicas", "resourceClaims", "schedulerName",
    "storageHelper", "supportedModelFormats", "tolerations", "volumes", "workerSpec"}
MODEL_FORMAT = {"name", "version", "autoSelect", "priority"}
# InferenceService predictor.model: a core/v1 Container plus these (v1beta1 ModelSpec).
MODEL_SPEC_EXTRA = {"modelFormat", "runtime", "protocolVersion", "storageUri", "storage",
                    "runtimeVersion"}


def kserve_docs(name: str) -> list[dict]:
    return load_yaml_docs(DEPLOY / "kserve" / name)


def runtime() -> dict:
    (doc,) = kserve_docs("cluster-serving-runtime.yaml")
    return doc


def as_pod(containers: list[dict], volumes: list[dict] | None = None) -> dict:
    """Containers wrapped in a Pod, so that kubernetes-validate checks them strictly."""
    spec = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def test_cluster_serving_runtime():
    doc = runtime()
    assert doc["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert doc["kind"] == "ClusterServingRuntime"
    assert doc["metadata"]["name"] == "kerve"
    spec = doc["spec"]
    assert set(spec) <= SERVING_RUNTIME_SPEC, set(spec) - SERVING_RUNTIME_SPEC
    assert spec.get("multiModel", False) is False
    formats = spec["supportedModelFormats"]
    assert all(set(f) <= MODEL_FORMAT for f in formats)
    assert {"name": "keras", "version": "3", "autoSelect": True} in [
        {k: f.get(k) for k in ("name", "version", "autoSelect")} for f in formats]
    assert {"v2", "grpc-v1"} <= set(spec["protocolVersions"])
    assert spec["annotations"]["prometheus.kserve.io/port"] == "8502"
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"

    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["image"]
    assert container["args"] == ["serve", "--model-dir", "/mnt/models",
                                 "--model-name", "{{.Name}}"]
    assert container["ports"] == [{"containerPort": 8500, "name": "h2c", "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 8500}, probe
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    if sc.get("readOnlyRootFilesystem"):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a /tmp"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert validate_strict([as_pod(spec["containers"], spec.get("volumes"))], "latest") == []


def test_inference_services_use_the_runtime():
    spec = runtime()["spec"]
    formats = {f["name"]: f.get("version") for f in spec["supportedModelFormats"]}
    docs = kserve_docs("inference-service.yaml")
    assert len(docs) >= 2, "an InferenceService, and one on the plugin image"
    images = []
    for doc in docs:
        name = doc["metadata"]["name"]
        assert doc["apiVersion"] == "serving.kserve.io/v1beta1", name
        assert doc["kind"] == "InferenceService", name
        model = doc["spec"]["predictor"]["model"]
        assert model["modelFormat"]["name"] == "keras", name
        assert model["modelFormat"].get("version", formats["keras"]) == formats["keras"], name
        assert model["runtime"] == runtime()["metadata"]["name"], name
        assert model["protocolVersion"] in spec["protocolVersions"], name
        assert model["storageUri"].startswith(("s3://", "gs://")), name
        images.append(model.get("image"))
        container = {k: v for k, v in model.items() if k not in MODEL_SPEC_EXTRA}
        container["name"] = "kserve-container"
        container.setdefault("image", spec["containers"][0]["image"])
        assert validate_strict([as_pod([container])], "latest") == [], name
    assert any(images), "one InferenceService shows an image with plugins"
