"""Device discovery, the strategy factory and the precision policy.

Order matters and `setup_runtime()` keeps it: the precision policy is set before any model
exists, and the strategy is created before any other TensorFlow op (MultiWorkerMirroredStrategy
refuses to start once the runtime is initialised).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import keras
import tensorflow as tf

from suite.runtime.startup import cpu_flags


def cuda_compute_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible GPU; listing devices does not initialise the runtime."""
    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        caps.append(tuple(details.get("compute_capability", (0, 0))))
    return caps


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA values) below AVX512_CORE_BF16: under
# them oneDNN runs bfloat16 without bfloat16 instructions, whatever the CPU has.
ISA_CAPS_WITHOUT_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                             "AVX512_CORE_VNNI"}


def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX) that oneDNN may use, where its
    bfloat16 kernels pay (twice float32's DeepConvNet training speed on a Zen 4); without it, or
    with oneDNN's ISA capped below it, bfloat16 falls back to slow paths."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        if os.environ.get(name, "").strip().upper() in ISA_CAPS_WITHOUT_BFLOAT16:
            return False
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """'auto' -> mixed_float16 where tensor cores exist (CUDA cc >= 7.0), else float32.
    'fastest' -> the same on GPUs; on CPUs mixed_bfloat16 where the CPU has bfloat16 arithmetic
    (cpu_has_bfloat16), else float32.

    On this project's 2-core CPU mixed_float16 trained 4-7x slower than float32 (no float16
    arithmetic), so `auto` keeps CPUs at float32: the faithful recipes' numbers stay those of
    float32 everywhere, and `fastest` is the speed presets' choice.
    """
    if precision not in ("auto", "fastest"):
        return precision
    caps = cuda_compute_capabilities()
    if caps:
        return "mixed_float16" if min(caps) >= (7, 0) else "float32"
    if precision == "fastest" and cpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def cluster_tasks(environ=os.environ) -> tuple[int, str]:
    """(training tasks in this job, where that was read): TF_CONFIG's chief and workers
    (launch.local, Kubeflow's TFJob), else the tasks of this Slurm job step (srun sets
    SLURM_STEP_NUM_TASKS for each task it starts); (1, "") outside a cluster."""
    text = environ.get("TF_CONFIG")
    if text:
        cluster = _tf_config_cluster(text)
        count = sum(len(cluster.get(kind) or ()) for kind in ("chief", "worker"))
        return count, f"TF_CONFIG names {count} training tasks"
    if environ.get("SLURM_JOB_ID") and environ.get("SLURM_STEP_NUM_TASKS", "").isdigit():
        count = int(environ["SLURM_STEP_NUM_TASKS"])
        return count, f"this Slurm job step has {count} tasks"
    return 1, ""


_ADDRESS = re.compile(r"^\S+:[0-9]+$")


def _tf_config_cluster(text: str) -> dict:
    """TF_CONFIG's cluster, checked to be what TensorFlow reads: {job: ["host:port", ...]} (or
    {job: {"<index>": "host:port"}}). Anything else would crash inside the strategy, or be
    miscounted: len("127.0.0.1:1") is 11 tasks."""
    def bad(detail):
        return ValueError(f"TF_CONFIG is not a JSON object whose 'cluster' maps each job to a "
                          f'list of "host:port" addresses ({detail}): fix it, or unset it to '
                          "train on this machine alone")

    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError) as e:
        raise bad(e) from e
    if not isinstance(cluster, dict):
        raise bad(f"'cluster' is {json.dumps(cluster)}")
    for job, tasks in cluster.items():
        addresses = tasks
        if isinstance(tasks, dict) and all(index.isdigit() for index in tasks):
            addresses = list(tasks.values())
        if not (isinstance(addresses, list)
                and all(isinstance(a, str) and _ADDRESS.match(a) for a in addresses)):
            raise bad(f"job {job!r} is {json.dumps(tasks)}")
    return cluster


def make_strategy(name: str, peer_timeout_s: int = 0) -> tf.distribute.Strategy:
    """auto | one_device | mirrored | multi_worker, as in the Model Garden's factory.

    Inside a cluster of several tasks (TF_CONFIG, a Slurm step) `auto` is multi_worker, and a
    single-machine strategy is refused: every task would train its own copy into one folder.
    """
    tasks, source = cluster_tasks()
    if tasks > 1 and name in ("one_device", "mirrored"):
        raise ValueError(
            f"`strategy={name}` trains on one machine, but this process is one task of a cluster "
            f"({source}): each task would train its own copy and overwrite the others' files. "
            "Use `strategy=multi_worker` (or auto), or start one process without a launcher.")
    if name == "auto" and tasks > 1:
        name = "multi_worker"
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        from suite.runtime import multiworker_compat

        multiworker_compat.apply()
        resolver = _cluster_resolver()
        if peer_timeout_s:
            configure_heartbeat_timeout(resolver, peer_timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    raise ValueError(f"unknown `strategy={name!r}`; valid: auto, one_device, mirrored, "
                     "multi_worker")


def configure_heartbeat_timeout(resolver, seconds: int) -> None:
    """Starts the coordination service as MultiWorkerMirroredStrategy would (one standalone
    service led by the first task, over the chief and worker jobs), with a heartbeat timeout of
    `seconds` instead of TensorFlow's 10 s. The strategy configures the service itself only when
    nothing has, so this must run first, before TensorFlow's context is initialised."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    cluster = multi_worker_util.normalize_cluster_spec(resolver.cluster_spec())
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in ("chief", "worker") if job in cluster.jobs]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster),
        coordinated_jobs=jobs, heartbeat_timeout_in_ms=int(seconds * 1000))


def _cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
    """TF_CONFIG when set (launch.local, Kubeflow TFJob), else Slurm's variables."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_JOB_ID"):
        return slurm_cluster_resolver()
    raise ValueError("`strategy=multi_worker` needs a cluster: set TF_CONFIG (python -m "
                     "launch.local does it for local workers) or run inside a Slurm job "
                     "(launch/slurm.sbatch)")


def slurm_cluster_resolver(port_base: int | None = None):
    """SlurmClusterResolver for any number of tasks per node, on CPU and GPU nodes.

    Left to itself the resolver divides the node's GPUs by its tasks: on a CPU-only node with
    2 tasks that is 1 // 2 = 0 GPUs per task and it fails ("range() arg 3 must not be zero"),
    and without CUDA_VISIBLE_DEVICES it runs nvidia-smi. Here it is told one slot per task
    (so it lays out every task, task i of a node on port port_base + i), sets no
    CUDA_VISIBLE_DEVICES (the task's GPUs were chosen before CUDA started:
    suite.runtime.startup.slurm_task_devices), and reports the GPUs this task really sees, so
    a CPU-only task has a CPU replica. `port_base` defaults to $SUITE_SLURM_PORT_BASE or 8888.
    """
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm

    class TaskSlurmClusterResolver(slurm.SlurmClusterResolver):
        def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
            gpus = len(tf.config.list_physical_devices("GPU"))
            return {"GPU": gpus} if gpus else {}

    tasks = slurm.expand_tasks_per_node(os.environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))
    base = port_base or int(os.environ.get("SUITE_SLURM_PORT_BASE", "8888"))
    return TaskSlurmClusterResolver(port_base=base, gpus_per_node=max(tasks), gpus_per_task=1,
                                    auto_set_gpu=False)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """Who this process is: only the chief writes the real checkpoints, summaries and exports."""
    task_type: str | None
    task_id: int
    num_workers: int
    is_chief: bool
    address: str | None = None  # host:port of this task in a cluster (its log names it)

    @property
    def name(self) -> str:
        return "chief" if self.task_type is None else f"{self.task_type}-{self.task_id}"


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """The chief is the 'chief' task if the cluster has one, else worker 0 (Keras's convention)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return WorkerRole(None, 0, 1, True)
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    chief_type = "chief" if "chief" in spec else "worker"
    num = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    tasks = spec.get(task_type) or []
    address = tasks[task_id] if isinstance(tasks, list) and task_id < len(tasks) else None
    return WorkerRole(task_type, task_id, num, task_type == chief_type and task_id == 0, address)


@dataclasses.dataclass
class Runtime:
    strategy: tf.distribute.Strategy
    precision: str
    role: WorkerRole

    @property
    def num_replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def describe(self) -> str:
        described = {"strategy": type(self.strategy).__name__, "replicas": self.num_replicas,
                     "precision": self.precision, "worker": self.role.name}
        if self.role.address:  # which machine, for reading a cluster's interleaved logs
            described["address"] = self.role.address
        return json.dumps(described)


def setup_runtime(strategy: str, precision: str, seed: int, deterministic: bool,
                  strategy_override: tf.distribute.Strategy | None = None,
                  peer_timeout_s: int = 0) -> Runtime:
    """Policy, strategy, then seeds: the order the distributed runtime needs."""
    tf.get_logger().setLevel("WARNING")  # its INFO lines (SavedModel renames...) drown the app's
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    dist = strategy_override or make_strategy(strategy, peer_timeout_s)
    if dist.num_replicas_in_sync > 1:  # Keras 3's fit/evaluate need it over several replicas
        from suite.runtime import multiworker_compat

        multiworker_compat.apply()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return Runtime(dist, policy, worker_role(dist))
