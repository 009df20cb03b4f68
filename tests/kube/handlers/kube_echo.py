"""The handler the Kubernetes end-to-end tests deploy: a plain function, no import of Troupe."""


def handle(payload):
    return {"echo": payload, "by": "kube_echo"}
