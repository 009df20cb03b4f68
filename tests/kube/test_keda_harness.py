"""KEDA's real operator against the test API server scales a Deployment on a real
RabbitMQ queue: 0 -> 1 when a message waits, back to 0 once the queue is empty and the
cooldown has passed. No kubelet or controller-manager runs, so what is asserted is the
Deployment's spec.replicas, which KEDA writes through the scale subresource."""

import os
import time
import uuid

import pika

from kubeapi import ApiError, wait_until

# KEDA checks the trigger every POLLING_INTERVAL seconds and scales back to zero
# COOLDOWN seconds after the trigger was last active. TROUPE_KEDA_POLLING_INTERVAL
# measures another interval (KEDA's default is 30; run with -s to see the times).
POLLING_INTERVAL = int(os.environ.get("TROUPE_KEDA_POLLING_INTERVAL", "1"))
COOLDOWN = 2
# Longest wait for one scaling step: a poll, plus the cooldown, plus slack.
STEP = 2 * POLLING_INTERVAL + COOLDOWN + 25


def deployment(name):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "worker", "image": "busybox"}]}},
        },
    }


def scaled_object(name, target, amqp_url, queue):
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "pollingInterval": POLLING_INTERVAL,
            "cooldownPeriod": COOLDOWN,
            "minReplicaCount": 0,
            "maxReplicaCount": 3,
            "triggers": [{"type": "rabbitmq", "metadata": {
                "host": amqp_url, "protocol": "amqp", "queueName": queue,
                "mode": "QueueLength", "value": "1"}}],
        },
    }


def condition(obj, kind):
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == kind:
            return c
    return None


def test_keda_scales_a_deployment_from_zero_and_back_on_a_rabbitmq_queue(
        kube, keda, rabbitmq, namespace):
    queue = "keda-" + uuid.uuid4().hex[:8]
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()

        apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        kube.create(apps, deployment("worker"))
        objects = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects"
        kube.create(objects, scaled_object("worker", "worker", rabbitmq, queue))

        def replicas():
            return kube.get(f"{apps}/worker")["spec"]["replicas"]

        def ready():
            c = condition(kube.get(f"{objects}/worker"), "Ready")
            return c if c and c["status"] == "True" else None

        try:
            wait_until(ready, 30, "KEDA to mark the ScaledObject Ready")
        except AssertionError:
            raise AssertionError(f"{kube.get(f'{objects}/worker')}\n"
                                 f"operator log:\n{keda.read_text()[-4000:]}") from None
        # KEDA adopted the target and made its HPA; an empty queue keeps it at zero.
        hpa = kube.get(f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
                       "/keda-hpa-worker")
        assert hpa["spec"]["scaleTargetRef"]["name"] == "worker"
        time.sleep(2 * POLLING_INTERVAL + 1)
        assert replicas() == 0

        ch.basic_publish("", queue, b"wake up", pika.BasicProperties(delivery_mode=2))
        published = time.monotonic()
        wait_until(lambda: replicas() == 1, STEP, "KEDA to scale the Deployment to 1")
        up = time.monotonic() - published
        active = condition(kube.get(f"{objects}/worker"), "Active")
        assert active and active["status"] == "True", active

        ch.queue_purge(queue)
        purged = time.monotonic()
        wait_until(lambda: replicas() == 0, STEP, "KEDA to scale the Deployment back to 0")
        down = time.monotonic() - purged
        # Not before the cooldown: KEDA waits COOLDOWN s after the trigger was last active.
        assert down >= COOLDOWN - POLLING_INTERVAL, down
        print(f"0->1 in {up:.1f}s, 1->0 in {down:.1f}s (pollingInterval {POLLING_INTERVAL}s, "
              f"cooldownPeriod {COOLDOWN}s)")
    finally:
        try:
            conn.close()
        except pika.exceptions.AMQPError:
            pass


def test_keda_crds_validate_scaled_objects(kube, keda, namespace):
    """The installed CRDs validate: a ScaledObject without scaleTargetRef is refused by
    the API server itself (KEDA's schema), so Helm-rendered objects are checked for real."""
    bad = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
           "metadata": {"name": "bad"}, "spec": {"triggers": []}}
    try:
        kube.create(f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects", bad)
    except ApiError as e:
        assert e.status == 422, e
        assert "scaleTargetRef" in e.body, e.body
    else:
        raise AssertionError("a ScaledObject without scaleTargetRef was accepted")
